"""The replay's figures do not move when the simulator or the policies are made faster.

``replay_figures.json`` holds, for windows of two real traces under every policy and several
settings (hourly and per-second billing, FIFO and EASY, events and poll mode, a spot section with
interruptions and jobs that are not rerunnable), every figure of the JSON report, the queue and
instance curves (as a digest) and the action counts, as the simulator printed them before its
speed work. The test replays them again and compares all of it exactly.

Regenerate (only when a change of the figures is meant, and say why in the commit):
``PYTHONPATH=. python tests/replay/test_replay_figures.py``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from phorque.core.model import CloudState
from phorque.replay import ReplaySettings
from phorque.replay.sim import Simulation
from phorque.replay.swf import read_swf
from phorque.replay.trace import Trace, Window

TRACES = Path("/work/shared/traces")
EXPECTED = Path(__file__).with_name("replay_figures.json")
POLICIES = ("LocalOnly", "OnDemandPlusPlus", "OnDemand", "CostAware", "LaunchMax")

OD = CloudState(name="od", price=0.20, instance_cores=8, max_instances=16, charge_time_secs=3600,
                boot_secs=120)
SPOT = CloudState(name="spot", price=0.06, instance_cores=8, max_instances=16, charge_time_secs=3600,
                  boot_secs=120, spot=True, queues=frozenset({"batch"}), node_properties=("spot",))


def _lublin() -> Trace:
    return read_swf(TRACES / "lublin_256.swf.gz", Window("10", 3))


def _hpc2n_batch() -> Trace:
    trace = read_swf(TRACES / "HPC2N-2002-2.1-cln.swf.gz", Window("588", 3))
    return replace(trace, jobs=[replace(j, queue="batch") for j in trace.jobs])


def cases() -> dict[str, tuple[Any, ReplaySettings]]:
    """Name -> (trace reader, settings)."""
    small = ReplaySettings(local_nodes=8, local_np=8)
    spot = ReplaySettings(local_nodes=15, local_np=8, clouds=(OD, SPOT), spot_interruptions_per_hour=0.5,
                          rerunnable_fraction=0.7, seed=3)
    return {
        "lublin/hourly": (_lublin, small),
        "lublin/per-second-easy-mom": (_lublin, replace(small, scheduler="easy", mom_delay_secs=20).with_charge(0)),
        "lublin/poll": (_lublin, replace(small, mode="poll")),
        "hpc2n/spot": (_hpc2n_batch, spot),
    }


def figures(trace: Trace, settings: ReplaySettings, policy: str) -> dict[str, Any]:
    sim = Simulation(trace, settings.make_policy(policy), settings)
    result = sim.run()
    out = result.as_dict()
    out["series_sha256"] = hashlib.sha256(repr(result.series).encode()).hexdigest()
    return out


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    return json.loads(EXPECTED.read_text())


@pytest.fixture(scope="module")
def traces() -> dict[Any, Trace]:
    return {}


@pytest.mark.parametrize("case", sorted(cases()))
@pytest.mark.parametrize("policy", POLICIES)
def test_figures_are_those_of_before(expected, traces, case, policy):
    reader, settings = cases()[case]
    if reader not in traces:
        traces[reader] = reader()
    assert figures(traces[reader], settings, policy) == expected[f"{case}/{policy}"]


def main() -> int:
    out = {}
    for case, (reader, settings) in sorted(cases().items()):
        trace = reader()
        for policy in POLICIES:
            out[f"{case}/{policy}"] = figures(trace, settings, policy)
    EXPECTED.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(out)} results to {EXPECTED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
