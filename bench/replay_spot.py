"""Spot capacity in the replay: what a spot section saves, and what its interruptions cost in
wait and lost work, on a real trace.

    python3 dev.py bench replay_spot [--trace FILE] [--start DAY] [--days D] [--policy NAME]
                                     [--rates R ...] [--rerunnable-fraction F] [--seed N]

The workload is a window of the HPC2N log (default: 14 days from day 588), every job in queue
``batch`` (the log has no queue numbers). The cluster: 15 static nodes of 8 cores, and clouds
billed per hour with a 120 s boot:

* ``od``: on-demand, 0.20/h, 8 cores, at most 64, serving every queue;
* ``spot``: ``market = spot``, 0.06/h (0.3 x on-demand), 8 cores, at most 64, serving queue
  ``batch`` (its nodes carry the ``spot`` property).

Replayed in one run under one policy (CostAware by default): the on-demand section alone, then
both sections with every running spot instance taken back at ``--rates`` interruptions per
instance-hour (default 0, 0.05, 0.2 and 1; seeded, the same every run). Prints per run: the cost
(and each section's part), the mean and p95 wait, the interruptions, the jobs requeued and lost,
and the work lost in core-hours.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from phorque.core.model import CloudState
from phorque.replay import ReplaySettings
from phorque.replay.report import duration
from phorque.replay.sim import Simulation
from phorque.replay.swf import read_swf
from phorque.replay.trace import Trace, Window

ROOT = Path(__file__).resolve().parent.parent
TRACES = Path(os.environ.get("PHORQUE_TRACES", ROOT.parent.parent / "shared" / "traces"))
if not TRACES.exists():
    TRACES = Path("/work/shared/traces")
HPC2N = TRACES / "HPC2N-2002-2.1-cln.swf.gz"

QUEUE = "batch"
OD = CloudState(name="od", price=0.20, instance_cores=8, max_instances=64, charge_time_secs=3600,
                boot_secs=120)
SPOT = CloudState(name="spot", price=0.06, instance_cores=8, max_instances=64, charge_time_secs=3600,
                  boot_secs=120, spot=True, queues=frozenset({QUEUE}), node_properties=("spot",))
RATES = (0.0, 0.05, 0.2, 1.0)


def in_queue(trace: Trace) -> Trace:
    """Every job of the trace in queue ``batch``, the queue the spot section serves."""
    return replace(trace, jobs=[replace(j, queue=QUEUE) for j in trace.jobs])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="spot sections at several interruption rates against "
                                                 "on-demand alone")
    parser.add_argument("--trace", default=str(HPC2N), help="an SWF trace (default HPC2N)")
    parser.add_argument("--start", default="588", help="window start, days after the log's start")
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--policy", default="CostAware")
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES),
                        help="interruptions per instance-hour")
    parser.add_argument("--rerunnable-fraction", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    trace = in_queue(read_swf(args.trace, Window(args.start, args.days)))
    base = ReplaySettings(local_nodes=15, local_np=8, seed=args.seed,
                          rerunnable_fraction=args.rerunnable_fraction)
    print(trace.describe())
    print(f"local 15 x 8 cores; policy {args.policy}; billed per hour, boot 120 s; od {OD.price:g}/h, "
          f"spot {SPOT.price:g}/h (queue {QUEUE}), 8 cores, at most 64 each; "
          f"{args.rerunnable_fraction:.0%} of the jobs rerunnable; seed {args.seed}")
    head = (f"{'clouds':<11} {'rate/h':>6} {'cost':>8} {'od':>8} {'spot':>7} {'mean wait':>10} "
            f"{'p95 wait':>9} {'interrupted':>11} {'requeued':>8} {'lost jobs':>9} {'lost core-h':>11} "
            f"{'run time':>8}")
    print(head)
    print("-" * len(head))
    runs = [("od alone", (OD,), 0.0)] + [("od + spot", (OD, SPOT), rate) for rate in args.rates]
    for label, clouds, rate in runs:
        settings = replace(base, clouds=clouds, spot_interruptions_per_hour=rate)
        began = time.perf_counter()
        r = Simulation(trace, settings.make_policy(args.policy), settings).run()
        spent = {name: c["cost"] for name, c in r.clouds.items()}
        rate_text = f"{rate:g}" if len(clouds) > 1 else "-"
        print(f"{label:<11} {rate_text:>6} {r.cost:>8,.1f} {spent.get('od', 0):>8,.1f} "
              f"{spent.get('spot', 0):>7,.1f} {duration(r.mean_wait_secs):>10} {duration(r.p95_wait_secs):>9} "
              f"{r.interruptions:>11,} {r.requeued:>8,} {r.lost_jobs:>9,} {r.lost_core_hours:>11,.1f} "
              f"{time.perf_counter() - began:>7.1f}s", flush=True)
        if r.started != r.jobs:
            print(f"{'':<11} {r.jobs - r.started:,} jobs never started")
    print("wait: from submit to the last start (a requeued job waits again, and its lost run counts); "
          "lost core-h: cores x the time each interrupted job had run")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
