"""Huge inputs in bounded memory: a 1 GB accounting log and a 100,000-job ``qstat -f -x -t``.

Each reading runs in a fresh process that reports its own peak resident memory (VmHWM) and the
peak before it started reading (the interpreter and Phorque's modules: the baseline).

  accounting   a --acct-mb (1024) MB log of realistic Q/S/E lines, read by
               AccountingParser.parse_file and by AccountingTailer.poll(limit=1000)
  endless      a file of the same size without a single newline (one line that never ends)
  qstat        --jobs (100,000) jobs through Torque.jobs() and a scripted qstat that streams the
               answer; once with small jobs, once with --fat-kb (10) KB of variables per job

The jobs are kept (a snapshot keeps them), so the qstat peak grows with the number of jobs; it
must not grow with the size of the XML, which the two qstat rows compare.

    python3 dev.py bench huge_inputs [--acct-mb MB] [--jobs N] [--fat-kb KB] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hostile.huge import (  # noqa: E402  (the repository root is on the path now)
    fake_qstat,
    measure_in_child,
    write_accounting,
    write_qstat,
)


def row(label: str, size: int, figures: dict) -> None:
    count = figures.get("records", figures.get("jobs"))
    extra = f", {figures['bad']} bad" if figures.get("bad") else ""
    rate = size / (1 << 20) / max(figures["seconds"], 1e-6)
    print(f"{label:<34} {size / (1 << 20):>8,.0f} MiB {count:>11,}{extra:<8} {figures['seconds']:>7.1f} s "
          f"{rate:>7,.0f} MiB/s   peak {figures['peak_mib']:>6.1f} MiB (baseline {figures['baseline_mib']:.1f})",
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acct-mb", type=int, default=1024)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--fat-kb", type=int, default=10)
    parser.add_argument("--dir", default=None, help="where to write the inputs (default: a temporary folder)")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="phorque-huge-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        acct = root / "acct" / "20261125"
        started = time.perf_counter()
        write_accounting(acct, args.acct_mb << 20)
        print(f"wrote {acct} ({acct.stat().st_size / (1 << 20):,.0f} MiB) in {time.perf_counter() - started:.1f} s")
        size = acct.stat().st_size
        row("accounting: parse_file", size, measure_in_child("parse_file", acct, timeout=3600))
        row("accounting: tailer poll(limit=1000)", size, measure_in_child("tailer", acct, timeout=3600))
        acct.unlink()

        endless = root / "endless" / "20261125"
        write_accounting(endless, args.acct_mb << 20, newlines=False)
        size = endless.stat().st_size
        row("no newline at all: parse_file", size, measure_in_child("parse_file", endless, timeout=3600))
        row("no newline at all: tailer", size, measure_in_child("tailer", endless, timeout=3600))
        endless.unlink()

        for label, variables in (("small", 100), ("fat", args.fat_kb << 10)):
            xml = root / f"qstat-{label}.xml"
            started = time.perf_counter()
            size = write_qstat(xml, args.jobs, variables)
            print(f"wrote {xml} ({size / (1 << 20):,.0f} MiB, {args.jobs:,} jobs) in "
                  f"{time.perf_counter() - started:.1f} s")
            figures = measure_in_child("qstat", fake_qstat(root / f"torque-{label}", xml), timeout=3600)
            row(f"qstat -f -x -t, {label} jobs", size, figures)
            xml.unlink()
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
