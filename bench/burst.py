"""Burst economy: 1,000 `qsub`s within 10 s against the running daemon.

Prints how many evaluations the burst caused, how many cloud calls changed capacity, and the final
desired capacity against the expected one. The baseline in the same run is the number of triggers
the daemon received (each accounting record and job file event would have been an evaluation
without coalescing).

Every job needs one core (`-l nodes=1:ppn=1`); the static node has 4 free cores and instances
have 4 cores, so the expected capacity is ceil((jobs - 4) / 4), within max_instances.

    python3 dev.py bench burst [--jobs 1000] [--seconds 10] [--workers 8]
"""

from __future__ import annotations

import argparse
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor

from _harness import Rig, Sampler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    expected = math.ceil((args.jobs - 4) / 4)
    rig = Rig(static_np=4)
    try:
        conf = rig.config(watch=True, loop_sleep=120, max_instances=expected + 50)
        log = rig.start_daemon(conf)
        start_evals = log.read_text().count("evaluation #")
        sampler = Sampler(rig, interval=0.1)
        sampler.start()
        started = time.monotonic()
        pace = args.seconds / args.jobs

        def submit(k: int) -> None:
            delay = started + k * pace - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            rig.qsub("nodes=1:ppn=1")

        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(submit, range(args.jobs)))
        submitted_in = time.monotonic() - started
        deadline = time.monotonic() + 120
        while rig.desired() < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # let the last evaluations finish
        sampler.stop()
        text = log.read_text()
        rig.stop_daemon()
        rig.qdel_all()
    finally:
        rig.close()
    evaluations = text.count("evaluation #") - start_evals
    triggers = 0
    for line in text.splitlines()[1:]:
        match = re.search(r"evaluation #\d+ \((?:(\d+) triggers: )?([^)]*)\)", line)
        if match and any(w in match.group(2) for w in ("accounting", "job file", "submit")):
            triggers += int(match.group(1) or 1)
    launches = len(re.findall(r"launch \+\d+ .* -> done", text))
    changes = len(re.findall(r"desired capacity -> ", text))
    final = sampler.samples[-1][1] if sampler.samples else 0
    print(f"burst: {args.jobs} qsubs submitted in {submitted_in:.1f} s ({args.workers} at a time)")
    print(f"  file/nudge triggers received      {triggers:>6}   (baseline: one evaluation each)")
    print(f"  evaluations                       {evaluations:>6}")
    print(f"  capacity-changing cloud calls     {changes:>6}   (launch actions done: {launches})")
    print(f"  final desired capacity            {final:>6}   expected {expected}")
    print(f"  coalescing: {triggers / max(1, evaluations):.0f} triggers per evaluation")


if __name__ == "__main__":
    main()
