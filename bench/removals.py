"""Removing nodes from a real pbs_server: `qmgr -c "delete node"` holds for at least 2 s there.

Creates N nodes on the private real Torque (`python3 dev.py torque build`), removes them with
the executor as the daemon does (several at once), and again one after the other (the baseline,
as before), and prints both times.

    python3 dev.py bench removals [--nodes 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from phorque.act import executor as executor_module  # noqa: E402
from phorque.act.executor import Executor  # noqa: E402
from phorque.adapters.state import StateStore  # noqa: E402
from phorque.adapters.torque.commands import Torque  # noqa: E402
from phorque.core.model import Snapshot  # noqa: E402
from phorque.core.plan import Action, Kind, Plan  # noqa: E402
from torquebed.cluster import Cluster  # noqa: E402


def remove(cluster: Cluster, names: list[str], workers: int) -> float:
    for name in names:
        cluster.add_alias(name)
        cluster.qmgr(f"create node {name} np=2")
    torque = Torque(str(cluster.build.prefix), timeout=120)
    plan = Plan(actions=tuple(Action(Kind.REMOVE, node=n, reason="bench") for n in names))
    snap = Snapshot(now=time.time(), jobs=(), nodes=(), clouds=(), owned=(), memory={})
    executor_module.REMOVE_WORKERS = workers
    started = time.monotonic()
    outcomes = Executor(torque, {}, {}, StateStore(":memory:"), snap.now, lambda c, e: None).apply(plan, snap)
    took = time.monotonic() - started
    assert all(o.status == "done" for o in outcomes), outcomes
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=7)
    args = ap.parse_args()
    cluster = Cluster.find()
    started_here = not cluster.running()
    if started_here:
        cluster.start(moms=2, np=2)
    try:
        side = remove(cluster, [f"rm{n}.bench" for n in range(args.nodes)], workers=8)
        one = remove(cluster, [f"rm{n}.bench" for n in range(args.nodes)], workers=1)
    finally:
        if started_here:
            cluster.stop()
    print(f"removing {args.nodes} nodes from a real pbs_server (qmgr delete node, 2 s or more each)")
    print(f"  side by side (the executor)   {side:6.1f} s")
    print(f"  one after the other (before)  {one:6.1f} s")
    print(f"  {one / side:.1f}x; launches of the same evaluation no longer wait for either: removals run last")


if __name__ == "__main__":
    main()
