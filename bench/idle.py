"""An idle daemon's cost: CPU seconds per minute with nothing to do, watching Torque's files
against polling only (the baseline, in the same run).

A sandbox cluster with no jobs, a moto server and the daemon; after its first evaluation the
daemon is left alone for --seconds and its own CPU time (user + system, from /proc) is read
before and after. The watcher once read the accounting log again for each opening of it (its
own reads included) and kept a core busy; watching should cost about what polling costs.

    python3 dev.py bench idle [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _harness import Rig


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle(rig: Rig, *, watch: bool, seconds: float) -> tuple[float, int]:
    """CPU seconds per minute, and the evaluations during the idle time."""
    conf = rig.config(watch=watch, trigger=watch, loop_sleep=3600, state="watch" if watch else "poll")
    log = rig.start_daemon(conf)
    assert rig.daemon is not None
    before, evaluations = cpu_seconds(rig.daemon.pid), log.read_text().count("evaluation #")
    time.sleep(seconds)  # the measurement itself: the daemon is meant to sit idle this long
    used = cpu_seconds(rig.daemon.pid) - before
    evaluations = log.read_text().count("evaluation #") - evaluations
    rig.stop_daemon()
    return used * 60 / seconds, evaluations


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    rig = Rig(static_np=4)
    try:
        watching = idle(rig, watch=True, seconds=args.seconds)
        polling = idle(rig, watch=False, seconds=args.seconds)
    finally:
        rig.close()
    print(f"idle daemon, {args.seconds:g} s with no jobs: CPU seconds per minute, evaluations")
    print(f"  watching files and nudges   {watching[0]:7.3f} s/min   {watching[1]} evaluation(s)")
    print(f"  polling only (baseline)     {polling[0]:7.3f} s/min   {polling[1]} evaluation(s)")


if __name__ == "__main__":
    main()
