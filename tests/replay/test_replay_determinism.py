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


EXACT = ("jobs", "started", "unstarted", "never_run", "killed_at_walltime", "peak_instances", "truncated")
CLOSE = ("mean_wait_secs", "p95_wait_secs", "mean_bounded_slowdown", "cost", "instance_hours",
         "paid_utilization", "local_utilization")


@pytest.mark.parametrize("charge", [3600, 0])
def test_skipping_idle_periodic_evaluations_keeps_the_figures(lublin_days, charge):
    # Exact, but for this: an evaluation that is skipped does not move the policy's relative
    # wake-ups (the lifecycle's "look again in 15 s" while instances boot), so later wake-up
    # evaluations can fall a few seconds apart between the two runs (figures within 1 %).
    base = ReplaySettings(local_nodes=8, local_np=8).with_charge(charge)
    for policy in POLICIES:
        fast = replay(lublin_days, policy, base).as_dict()
        full = replay(lublin_days, policy, ReplaySettings(**{**base.__dict__, "skip_idle": False})).as_dict()
        assert full["evaluations"] > fast["evaluations"], policy
        assert {k: fast[k] for k in EXACT} == {k: full[k] for k in EXACT}, policy
        for key in CLOSE:
            assert fast[key] == pytest.approx(full[key], rel=1e-2, abs=1e-3), (policy, key)


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
