"""How fast the replay simulator is: the whole HPC2N log (202,876 jobs, 3.5 years) under one
policy, with LocalOnly in the same run as the baseline (the event loop, the scheduler and the
snapshots, with a policy that decides nothing).

    python3 dev.py bench replay_speed [--policy NAME ...] [--days D] [--local-nodes N --local-np M]

Default: CostAware and LocalOnly on the log's own machine size (240 cores as 30 nodes x 8), the
replay's default clouds, hourly billing. Prints, per policy, the simulator's run time, the events
(submits, job ends, boots) and evaluations it handled, and their rates (per second of run time).
The machine's load average is printed too: on a shared machine the CPU time is the steadier
figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from phorque.replay import ReplaySettings
from phorque.replay.sim import Simulation
from phorque.replay.swf import read_swf
from phorque.replay.trace import Window

ROOT = Path(__file__).resolve().parent.parent
TRACES = Path(os.environ.get("PHORQUE_TRACES", ROOT.parent.parent / "shared" / "traces"))
if not TRACES.exists():
    TRACES = Path("/work/shared/traces")
HPC2N = TRACES / "HPC2N-2002-2.1-cln.swf.gz"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="replay simulator speed on the whole HPC2N log")
    parser.add_argument("--policy", nargs="+", default=["LocalOnly", "CostAware"])
    parser.add_argument("--days", type=float, help="only the first D days")
    parser.add_argument("--local-nodes", type=int)
    parser.add_argument("--local-np", type=int)
    parser.add_argument("--charge", type=int, default=3600)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    trace = read_swf(HPC2N, Window(None, args.days))
    read_secs = time.perf_counter() - began
    settings = ReplaySettings(local_nodes=args.local_nodes, local_np=args.local_np).with_charge(args.charge)
    print(f"read {trace.name}: {len(trace.jobs):,} jobs in {read_secs:.2f} s "
          f"({len(trace.jobs) / read_secs:,.0f} jobs/s)", flush=True)
    print(f"{'policy':<18} {'jobs':>8} {'events':>9} {'evaluations':>11} {'run time':>9} {'cpu time':>9} "
          f"{'events/s':>9} {'evals/s':>8} {'cost':>10} {'mean wait':>10}")
    for name in args.policy:
        sim = Simulation(trace, settings.make_policy(name), settings)
        result = sim.run()
        secs = result.sim_secs
        print(f"{name:<18} {result.jobs:>8,} {result.events:>9,} {result.evaluations:>11,} {secs:>8.1f}s "
              f"{result.cpu_secs:>8.1f}s "
              f"{result.events / secs:>9,.0f} {result.evaluations / secs:>8,.0f} {result.cost:>10,.0f} "
              f"{result.mean_wait_secs:>9,.0f}s", flush=True)
    print(f"local cluster {sim.local_nodes} x {sim.local_np} cores; cpu count {os.cpu_count()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
