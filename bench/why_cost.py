"""What explaining the queue costs (``phorque-status --why``, the reaction-time metric), next to
the CostAware plan it explains, in one run: 1,000, 10,000 and 100,000 queued jobs of 1 to 8
cores on 2,000 busy nodes, one cloud with room for 500 instances.

  plan          CostAware's plan of the snapshot (the baseline);
  explain       one sentence for every queued job (phorque-status);
  launches only the walk the daemon makes after a launch, to time reactions: it stops once the
                plan's new instances are taken.

    python3 dev.py bench why_cost [--sizes 1000,10000,100000] [--nodes 2000]
"""

from __future__ import annotations

import argparse
import time

from phorque.core.model import Job, Node
from phorque.policy.policies import CostAware
from phorque.policy.why import WhyKind, explain
from tests import builders as b


def best_of(repeat: int, work) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--nodes", type=int, default=2000)
    args = parser.parse_args()
    nodes = [Node(name=f"n{i:05d}", np=8, state=frozenset({"job-exclusive"}), jobs=("r",) * 8,
                  used_slots=8) for i in range(args.nodes)]
    print(f"{'queued':>8} {'plan s':>8} {'explain s':>10} {'x plan':>7} {'launches only s':>16} "
          f"{'launching':>10}")
    for size in (int(s) for s in args.sizes.split(",")):
        jobs = [Job(id=f"{i}.srv", state="Q", queue="batch", cores=1 + i % 8, walltime_secs=3600,
                    queued_at=float(i)) for i in range(size)]
        snap = b.snapshot(jobs=jobs, nodes=nodes, clouds=[b.cloud("hotel", cores=8, max_instances=500)])
        policy = CostAware(scale_in_margin_secs=60)
        plan = policy.plan(snap)
        repeat = 3 if size <= 10000 else 1
        t_plan = best_of(repeat, lambda snap=snap, policy=policy: policy.plan(snap))
        whys: dict = {}
        t_all = best_of(repeat, lambda snap=snap, plan=plan, whys=whys: whys.update(explain(snap, plan, None)))
        t_short = best_of(repeat, lambda snap=snap, plan=plan: explain(snap, plan, None, launches_only=True))
        launching = sum(1 for w in whys.values() if w.kind == WhyKind.LAUNCHING)
        print(f"{size:>8} {t_plan:>8.3f} {t_all:>10.3f} {t_all / t_plan:>7.2f} {t_short:>16.3f} "
              f"{launching:>10}")


if __name__ == "__main__":
    main()
