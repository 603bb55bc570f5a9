"""Burst economy: 1,000 `qsub`s within 10 s against the running daemon.

Prints how many evaluations the burst caused, how many cloud calls changed capacity, and the final
desired capacity against the expected one. The baseline in the same run is the number of triggers
the daemon received (each accounting record and job file event would have been an evaluation
without coalescing).

Every job needs one core (`-l nodes=1:ppn=1`); the static node has 4 free cores and instances
have 4 cores, so the expected capacity is ceil((jobs - 4) / 4), within max_instances.

With `--torque` the same burst runs a second time on a real Torque 6.1.3 (`python3 dev.py torque
build`; two moms of np=2, so again 4 static cores, and 2-core instances), printed side by side.

    python3 dev.py bench burst [--jobs 1000] [--seconds 10] [--workers 8] [--torque]
"""

from __future__ import annotations

import argparse
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor

from _harness import Rig, Sampler, TorqueRig


def run(rig, jobs: int, seconds: float, workers: int) -> dict:
    expected = math.ceil((jobs - 4) / rig.instance_cores)
    conf = rig.config(watch=True, loop_sleep=120, max_instances=expected + 50)
    log = rig.start_daemon(conf)
    start_evals = log.read_text().count("evaluation #")
    sampler = Sampler(rig, interval=0.1)
    sampler.start()
    started = time.monotonic()
    pace = seconds / jobs

    def submit(k: int) -> None:
        delay = started + k * pace - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        rig.qsub("nodes=1:ppn=1")

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(submit, range(jobs)))
    submitted_in = time.monotonic() - started
    deadline = time.monotonic() + 300
    while rig.desired() < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # let the last evaluations finish
    sampler.stop()
    text = log.read_text()
    rig.stop_daemon()
    rig.qdel_all()
    triggers = 0
    for line in text.splitlines()[1:]:
        match = re.search(r"evaluation #\d+ \((?:(\d+) triggers: )?([^)]*)\)", line)
        if match and any(w in match.group(2) for w in ("accounting", "job file", "submit")):
            triggers += int(match.group(1) or 1)
    evaluations = text.count("evaluation #") - start_evals
    return {"submitted_in": submitted_in, "triggers": triggers, "evaluations": evaluations,
            "changes": len(re.findall(r"desired capacity -> ", text)),
            "launches": len(re.findall(r"launch \+\d+ .* -> done", text)),
            "final": sampler.samples[-1][1] if sampler.samples else 0, "expected": expected}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--torque", action="store_true", help="also on a real Torque, side by side")
    args = ap.parse_args()
    results = {}
    for name, make in (("sandbox", lambda: Rig(static_np=4)),
                       ("real Torque", lambda: TorqueRig(fill=False))):
        if name == "real Torque" and not args.torque:
            continue
        rig = make()
        try:
            results[name] = run(rig, args.jobs, args.seconds, args.workers)
        finally:
            rig.close()
    names = list(results)
    print(f"burst: {args.jobs} qsubs, {args.workers} at a time, paced over {args.seconds:g} s")
    print(f"  {'':<34}" + "".join(f"{n:>14}" for n in names))
    rows = (("submitted in (s)", "submitted_in", "{:.1f}"),
            ("file/nudge triggers received", "triggers", "{}"),
            ("evaluations", "evaluations", "{}"),
            ("capacity-changing cloud calls", "changes", "{}"),
            ("launch actions done", "launches", "{}"),
            ("final desired capacity", "final", "{}"),
            ("expected desired capacity", "expected", "{}"))
    for label, key, fmt in rows:
        print(f"  {label:<34}" + "".join(f"{fmt.format(results[n][key]):>14}" for n in names))
    print("  (baseline: without coalescing, every trigger would have been an evaluation)")


if __name__ == "__main__":
    main()
