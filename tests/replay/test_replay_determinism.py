"""The simulator is deterministic, and skipping idle periodic evaluations keeps the figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from phorque.replay import ReplaySettings, replay
from phorque.replay.swf import read_swf
from phorque.replay.trace import Window

TRACES = Path("/work/shared/traces")
LUBLIN = TRACES / "lublin_256.swf.gz"
POLICIES = ("LocalOnly", "OnDemandPlusPlus", "OnDemand", "CostAware", "LaunchMax")


@pytest.fixture(scope="module")
def lublin_days():
    # A short real window, on a cluster small enough that the clouds are used.
    return read_swf(LUBLIN, Window("10", 3))


@pytest.mark.parametrize("charge", [3600, 0])
def test_skipping_idle_periodic_evaluations_keeps_the_figures(lublin_days, charge):
    # Exact: a reconciliation is skipped only when it would see nothing new and no instance
    # boots (the lifecycle's "look again in 15 s" while one boots counts from each evaluation,
    # so there every evaluation moves the next look).
    base = ReplaySettings(local_nodes=8, local_np=8).with_charge(charge)
    for policy in POLICIES:
        fast = replay(lublin_days, policy, base)
        full = replay(lublin_days, policy, ReplaySettings(**{**base.__dict__, "skip_idle": False}))
        assert full.evaluations > fast.evaluations, policy
        a, b = fast.as_dict(), full.as_dict()
        del a["evaluations"], b["evaluations"]
        assert a == b, policy


def test_same_input_same_figures(lublin_days):
    settings = ReplaySettings(local_nodes=8, local_np=8, scheduler="easy")
    for policy in ("CostAware", "OnDemandPlusPlus"):
        one = replay(lublin_days, policy, settings)
        two = replay(lublin_days, policy, settings)
        assert one.as_dict() == two.as_dict()
        assert one.series == two.series
        assert one.cost > 0


@pytest.mark.parametrize("policy", POLICIES)
def test_observing_only_changed_instances_gives_the_same_records(lublin_days, policy):
    from phorque.replay.sim import Simulation

    settings = ReplaySettings(local_nodes=8, local_np=8, scheduler="easy").with_charge(0)
    runs = []
    for incremental in (True, False):
        sim = Simulation(lublin_days, settings.make_policy(policy), settings, incremental_observe=incremental)
        result = sim.run()
        runs.append((result.as_dict(), sim.owned.records))
    assert runs[0] == runs[1]
