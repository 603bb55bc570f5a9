"""Writes the saved snapshots of ``tests/cases/``: one situation each, planned by a real policy.

    PYTHONPATH=. python -m tests.make_cases [NAME ...]

Each file pins the plan its policy gave when it was written: ``tests/test_snapshot_cases.py``
fails when a policy now decides otherwise. Writing a case again pins the new plan, so read the
``git diff`` of the file before committing it: the saved plan is what an administrator expects
on that situation, or the case is wrong. ``phorque-evaluate --snapshot FILE`` shows a case's
plan with a configured policy, and how it differs from the saved one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from phorque.adapters.snapshot_file import document, write_saved
from phorque.core.model import Chunk, Health, Job, Stage
from phorque.policy.base import Policy
from phorque.policy.policies import CostAware, OnDemand, OnDemandPlusPlus
from phorque.policy.view import drain_note
from tests.builders import NOW, cloud, cloud_node, inst, job, node, owned, snapshot

CASES_DIR = Path(__file__).parent / "cases"

Case = tuple[str, Policy, object]


def cheapest_cloud() -> Case:
    return ("One queued 4-core job, no free core, two clouds: one 4-core instance is launched on the "
            "cheaper cloud.",
            CostAware(price_per_hour=10.0),
            snapshot(jobs=[job("1.srv", nodes=((1, 4),)), job("2.srv", "R", cores=4, hosts=("s1",))],
                     nodes=[node("s1", 4, state="job-exclusive", jobs=("2.srv",), used=4)],
                     clouds=[cloud("cheap", price=0.05), cloud("dear", price=0.2)]))


def budget_stops_launch() -> Case:
    busy = tuple(inst(f"i-{k}", dns=f"h{k}") for k in range(2))
    return ("Two busy instances at 0.1 an hour spend 0.2 of price_per_hour 0.25: a third would spend "
            "0.3, so the queued job waits and the note says why.",
            OnDemand(price_per_hour=0.25),
            snapshot(jobs=[job("1.srv", nodes=((1, 4),)),
                           job("2.srv", "R", cores=4, hosts=("h0",)), job("3.srv", "R", cores=4, hosts=("h1",))],
                     nodes=[cloud_node(f"h{k}", "hotel", state="job-exclusive", jobs=(f"{k + 2}.srv",))
                            for k in range(2)],
                     clouds=[cloud("hotel", price=0.1, instances=busy)],
                     owned=[owned(f"i-{k}", "hotel", f"h{k}", stage=Stage.BUSY) for k in range(2)]))


def max_instances_spill() -> Case:
    return ("16 queued cores, no free core: the cheap cloud takes its max_instances=2 (8 cores), the "
            "other 8 cores go to the next cloud.",
            OnDemand(price_per_hour=None),
            snapshot(jobs=[job(f"{k}.srv", nodes=((1, 4),)) for k in range(1, 5)],
                     clouds=[cloud("cheap", price=0.05, max_instances=2), cloud("dear", price=0.2)]))


def idle_near_boundary() -> Case:
    # Launched 3540 s ago on a 3600 s period: 60 s of paid time left, within the 120 s margin.
    return ("An idle instance 60 s before its next billing period (scale_in_margin_secs 120): it is "
            "drained, terminated and its node removed.",
            CostAware(price_per_hour=10.0, scale_in_margin_secs=120),
            snapshot(nodes=[node("s1", 4), cloud_node("h1", "hotel")],
                     clouds=[cloud("hotel", instances=(inst("i-h1", dns="h1", age=3540),))],
                     owned=[owned("i-h1", "hotel", "h1", idle_for=900, age=3540)]))


def idle_mid_period() -> Case:
    return ("An idle instance 1800 s before its next billing period: its time is paid, it is kept "
            "(the policy wakes up again at its drain moment).",
            CostAware(price_per_hour=10.0, scale_in_margin_secs=120),
            snapshot(nodes=[node("s1", 4), cloud_node("h1", "hotel")],
                     clouds=[cloud("hotel", instances=(inst("i-h1", dns="h1", age=1800),))],
                     owned=[owned("i-h1", "hotel", "h1", idle_for=900, age=1800)]))


def backoff_skipped() -> Case:
    cheap = cloud("cheap", price=0.05, health=Health.BACKOFF)
    cheap = _replace(cheap, backoff_until=NOW + 300, error="RequestLimitExceeded")
    return ("The cheaper cloud is backed off for 300 s after failures: the queued job's instance is "
            "launched on the next cloud, and the note says when the cheap one is tried again.",
            CostAware(price_per_hour=10.0),
            snapshot(jobs=[job("1.srv", nodes=((1, 4),))],
                     clouds=[cheap, cloud("dear", price=0.2)]))


def never_runnable() -> Case:
    return ("A job asks for one node with 64 cores; the largest instance of any cloud has 8: nothing "
            "is launched for it and the note names it (the 2-core job beside it gets its instance).",
            CostAware(price_per_hour=10.0),
            snapshot(jobs=[job("1.srv", nodes=((1, 64),)), job("2.srv", nodes=((1, 2),))],
                     clouds=[cloud("small", price=0.05, cores=4), cloud("big", price=0.4, cores=8)]))


def booting_joins() -> Case:
    up = inst("i-new", dns="ip-10-0-0-7.ec2.internal", age=90)
    return ("An instance launched 90 s ago runs with a DNS name and has no Torque node yet: it joins "
            "as a node with the cloud's instance_cores; the queued job waits for it, nothing more is "
            "launched.",
            CostAware(price_per_hour=10.0),
            snapshot(jobs=[job("1.srv", nodes=((1, 4),))],
                     clouds=[cloud("hotel", instances=(up,))],
                     owned=[owned("i-new", "hotel", None, stage=Stage.BOOTING, joined=False, age=90)]))


def drained_put_back() -> Case:
    draining = _replace(cloud_node("h1", "hotel"), note=drain_note("idle before its charge boundary"))
    draining = _replace(draining, state=frozenset({"offline"}))
    return ("A node being drained (offline with Phorque's note, still idle, its period paid for 1200 s "
            "more) and a job queued that fits on it: the node is put back instead of a launch.",
            CostAware(price_per_hour=10.0),
            snapshot(jobs=[job("1.srv", nodes=((1, 4),))],
                     nodes=[draining],
                     clouds=[cloud("hotel", instances=(inst("i-h1", dns="h1", age=2400),))],
                     owned=[owned("i-h1", "hotel", "h1", stage=Stage.DRAINING, idle_for=600, age=2400)]))


def odpp_multiplier() -> Case:
    static = (node("s1", 4), node("s2", 4), node("s3", 2, state="down"))
    return ("OnDemandPlusPlus, the original's arithmetic: 20 queued cores - (8 free + 2 down) = 10 "
            "cores, ceil(10 / 2) = 5 instances, times multiplier 2 = 10.",
            OnDemandPlusPlus(price_per_hour=None, multiplier=2),
            snapshot(jobs=[job("1.srv", cores=20)], nodes=static,
                     clouds=[cloud("hotel", price=0.0, cores=2, max_instances=12)]))


def _ending_soon(walltime_aware: bool) -> Case:
    # The node's only job ends in 60 s, before a new instance would boot (boot_secs 120).
    ending = Job(id="2.srv", state="R", queue="batch", cores=4, chunks=(Chunk(1, 4),),
                 walltime_secs=3600, remaining_secs=60, exec_hosts=("s1",), started_at=NOW - 3540)
    snap = snapshot(jobs=[job("1.srv", nodes=((1, 4),)), ending],
                    nodes=[node("s1", 4, state="job-exclusive", jobs=("2.srv",), used=4)],
                    clouds=[cloud("hotel", boot=120)])
    if walltime_aware:
        return ("CostAware walltime_aware (the default): the only node's job ends in 60 s, before an "
                "instance would boot (120 s), so the queued job waits for that node: no launch.",
                CostAware(price_per_hour=10.0, walltime_aware=True), snap)
    return ("The same snapshot with walltime_aware = false: the running job's cores are not counted "
            "free, and one instance is launched for the queued job.",
            CostAware(price_per_hour=10.0, walltime_aware=False), snap)


def _replace(value, **changes):
    import dataclasses

    return dataclasses.replace(value, **changes)


CASES: dict[str, Callable[[], Case]] = {
    "cheapest_cloud": cheapest_cloud,
    "budget_stops_launch": budget_stops_launch,
    "max_instances_spill": max_instances_spill,
    "idle_near_boundary": idle_near_boundary,
    "idle_mid_period": idle_mid_period,
    "backoff_skipped": backoff_skipped,
    "never_runnable": never_runnable,
    "booting_joins": booting_joins,
    "drained_put_back": drained_put_back,
    "odpp_multiplier": odpp_multiplier,
    "walltime_aware_waits": lambda: _ending_soon(True),
    "walltime_unaware_launches": lambda: _ending_soon(False),
}


def write(name: str) -> Path:
    description, policy, snap = CASES[name]()
    assert isinstance(policy, Policy)
    path = CASES_DIR / f"{name}.json"
    write_saved(str(path), document(snap, policy, policy.plan(snap), description))  # type: ignore[arg-type]
    path.chmod(0o644)
    return path


def main(argv: list[str]) -> int:
    CASES_DIR.mkdir(exist_ok=True)
    for name in argv or sorted(CASES):
        if name not in CASES:
            print(f"no case {name!r} (cases: {', '.join(sorted(CASES))})", file=sys.stderr)
            return 2
        print(write(name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
