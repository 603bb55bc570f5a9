"""Reaction latency: from `qsub` in the sandbox to the group's desired capacity rising at the moto
server, p50 and p99, with loop_sleep_secs = 120.

  events    the daemon as shipped: it watches Torque's files (and takes nudges);
  polling   file watching and nudges off: the original's way, a look every loop_sleep_secs
            (the baseline, measured in the same run).

Each job needs one new 4-core instance (the only static node has 1 core; a cloud node boots in
1 s and its job then runs for hours), so desired capacity k means job k was answered. Cloud
nodes boot fast so that the baseline is plain polling: while an instance boots, Phorque also
looks again within a few seconds to join it, which would otherwise shorten the baseline's waits. Jobs are submitted at random
times; reaction_k = first moment desired >= k minus the submit time of job k.

With `--torque` the events mode runs a second time on a real Torque 6.1.3 (`python3 dev.py torque
build`; two moms of np=2 kept busy, 2-core instances, so again every job needs a new instance),
and both are printed side by side.

    python3 dev.py bench reaction [--jobs 50] [--baseline-jobs 50] [--baseline-periods 4] [--torque]
                                  [--event-delay SECS]
"""

from __future__ import annotations

import argparse
import random
import time

from _harness import Rig, Sampler, TorqueRig, evaluation_seconds, percentile

#: The first trigger after a quiet moment is evaluated at once (no event_delay_secs wait).
TARGET_P99_SECS = 0.3


def measure(rig: Rig, *, watch: bool, jobs: int, spread: float, seed: int,
            event_delay: float | None = None) -> tuple[list[float], list[float]]:
    """The reaction to each job, and the duration of each evaluation of the daemon meanwhile."""
    rig.reset_cloud()
    conf = rig.config(watch=watch, trigger=watch, loop_sleep=120, max_instances=jobs + 5,
                      state="events" if watch else "polling", event_delay=event_delay)
    log = rig.start_daemon(conf)
    sampler = Sampler(rig)
    sampler.start()
    rng = random.Random(seed)
    submitted = []
    gaps = [rng.random() for _ in range(jobs)]
    scale = spread / sum(gaps)
    try:
        for gap in gaps:
            time.sleep(gap * scale)
            submitted.append(time.monotonic())
            rig.qsub()
        deadline = time.monotonic() + 300
        while sampler.first_reaching(jobs, submitted[0]) is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        sampler.stop()
        rig.stop_daemon()
        rig.qdel_all()
        rig.remove_cloud_nodes()
    reactions = []
    for k, at in enumerate(submitted, start=1):
        reached = sampler.first_reaching(k, at)
        if reached is not None:
            reactions.append(reached - at)
    return reactions, evaluation_seconds(log.read_text())


def _row(name: str, measured: tuple[list[float], list[float]]) -> str:
    values, evaluations = measured
    return (f"{name:<28} {len(values):>4} {percentile(values, 50):>7.2f}s {percentile(values, 99):>7.2f}s "
            f"{max(values):>7.2f}s {sum(values) / len(values):>7.2f}s   {len(evaluations):>5} "
            f"{percentile(evaluations, 50):>7.2f}s {max(evaluations):>7.2f}s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--baseline-jobs", type=int, default=50)
    ap.add_argument("--baseline-periods", type=float, default=4, help="baseline spread, in loop_sleep_secs")
    ap.add_argument("--torque", action="store_true", help="also on a real Torque, side by side")
    ap.add_argument("--event-delay", type=float, default=None,
                    help="event_delay_secs of the events runs (default: the daemon's, 0.2)")
    args = ap.parse_args()
    rig = Rig(static_np=1, boot_delay=1)
    try:
        fast = measure(rig, watch=True, jobs=args.jobs, spread=args.jobs * 1.5, seed=1,
                       event_delay=args.event_delay)
        slow = measure(rig, watch=False, jobs=args.baseline_jobs, spread=args.baseline_periods * 120, seed=2)
    finally:
        rig.close()
    real: tuple[list[float], list[float]] = ([], [])
    if args.torque:
        real_rig = TorqueRig()
        try:
            real = measure(real_rig, watch=True, jobs=args.jobs, spread=args.jobs * 1.5, seed=1,
                           event_delay=args.event_delay)
        finally:
            real_rig.close()
    delay = "" if args.event_delay is None else f", event_delay_secs = {args.event_delay:g}"
    print(f"reaction latency, qsub -> desired capacity raised at the cloud (loop_sleep_secs = 120{delay})")
    print(f"{'':<28} {'reaction':^40}   {'evaluations':^23}")
    print(f"{'mode':<28} {'n':>4} {'p50':>8} {'p99':>8} {'max':>8} {'mean':>8}   {'n':>5} {'p50':>8} {'max':>8}")
    print(_row("events, sandbox", fast))
    if real[0]:
        print(_row("events, real Torque 6.1.3", real))
    print(_row("polling (baseline), sandbox", slow))
    target = TARGET_P99_SECS
    print(f"p99 speed-up: {percentile(slow[0], 99) / percentile(fast[0], 99):.0f}x; target p99 < {target:g} s "
          f"(quiet machine): {'met' if percentile(fast[0], 99) < target else 'NOT met'}"
          + (f" (sandbox), {'met' if percentile(real[0], 99) < target else 'NOT met'} (real Torque)"
             if real[0] else ""))


if __name__ == "__main__":
    main()
