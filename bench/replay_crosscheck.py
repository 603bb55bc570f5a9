"""Is the replay's mean wait and cost right? ``phorque-replay`` against an independent simulator.

    python3 dev.py bench replay_crosscheck [--window LABEL ...]

Replays windows of three traces (KTH-SP2, days 0-45, on 64 local cores; HPC2N, days 588-595, on
120; lublin_256, days 0-25, on 256) under LocalOnly, OnDemand and OnDemandPlusPlus (default
clouds, billed per hour and per second) and LaunchMax (default clouds, and two small clouds of 2
instances each) with
:func:`phorque.replay.sim.Simulation`, and again with ``tests/replay/reference_sim.py``, a
simulator written from the README's model that shares no code with the replay or the policies.
Prints, per case, both mean waits, costs and instance-hours with their relative differences, the
jobs whose start differs, and the time each took (reading the trace, then simulating). Exit
status 1 when a figure differs by more than 1%.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.replay import crosscheck as x  # noqa: E402
from tests.replay import reference_sim as ref  # noqa: E402

TOLERANCE = 0.01


def cases(labels: list[str] | None) -> list[x.Case]:
    out = []
    for w in x.WINDOWS:
        if labels and not any(label.lower() in w.label.lower() for label in labels):
            continue
        out += [x.Case(w, ref.LOCAL_ONLY), x.Case(w, ref.ON_DEMAND), x.Case(w, ref.ON_DEMAND, x.PER_SECOND),
                x.Case(w, ref.ODPP), x.Case(w, ref.ODPP, x.PER_SECOND),
                x.Case(w, ref.LAUNCH_MAX), x.Case(w, ref.LAUNCH_MAX, x.SMALL)]
    return out


def _pct(rel: float) -> str:
    return f"{rel:.3%}" if rel != float("inf") else "inf"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", nargs="*", help="only the windows whose label contains one of these")
    args = parser.parse_args(argv)
    header = ("| trace | policy | clouds | jobs | mean wait replay / ref (s) | diff | cost replay / ref | diff "
              "| inst-h replay / ref | diff | jobs moved | replay read + run (s) | ref read + run (s) |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    worst = 0.0
    totals = [0.0, 0.0, 0.0, 0.0]
    for case in cases(args.window):
        row = x.compare(case)
        r, f = row.replay, row.reference
        rels = [row.wait_rel] + ([row.cost_rel, row.hours_rel] if case.policy != ref.LOCAL_ONLY else [])
        worst = max(worst, *rels)
        totals = [a + b for a, b in zip(totals, (row.replay_read_secs, row.replay_secs,
                                                 row.reference_read_secs, row.reference_secs), strict=True)]
        print(f"| {case.window.label} | {case.policy} | {case.clouds.label} | {row.jobs_replay:,} "
              f"| {r.mean_wait_secs:,.2f} / {f.mean_wait:,.2f} | {_pct(row.wait_rel)} "
              f"| {r.cost:,.2f} / {f.cost:,.2f} | {_pct(row.cost_rel)} "
              f"| {r.instance_hours:,.2f} / {f.instance_hours:,.2f} | {_pct(row.hours_rel)} "
              f"| {len(row.moved)} "
              f"| {row.replay_read_secs:.2f} + {row.replay_secs:.2f} "
              f"| {row.reference_read_secs:.2f} + {row.reference_secs:.2f} |", flush=True)
    print(f"\ntotal time: replay {totals[0]:.1f} s reading + {totals[1]:.1f} s simulating; "
          f"reference {totals[2]:.1f} s reading + {totals[3]:.1f} s simulating")
    print(f"largest relative difference: {_pct(worst)} (tolerance {TOLERANCE:.0%})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
