"""How fast Phorque reads Torque's accounting log, against plain Python line iteration.

Writes a realistic accounting file (default 1,000,000 lines: Q, S, E, D, A and a few R records of
jobs with varied ids, array sub-jobs, multi-node exec_host ranges, Torque 6 -L requests), then
times, each the best of --repeat runs:

  (a) baseline         ``for line in open(path)``, counting lines
  (b) parser, header   ``AccountingParser.parse_file``: time, type, job id of every line
      parse_line        ``parse_line`` called on each line of ``for line in f``
      parser + fields   as (b), and ``record.fields`` tokenized for every record
  (c) tailer            ``AccountingTailer.poll(limit=1000)`` until the file is read

and prints lines per second with the ratio to the baseline.

    python3 dev.py bench accounting [--lines N] [--repeat R] [--dir DIR]
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from phorque.adapters.torque.accounting import (
    AccountingParser,
    format_line,
    format_text,
    parse_line,
)
from phorque.adapters.torque.tailer import AccountingTailer

SERVER = "torque01.hpc.example.org"
QUEUES = ("batch", "short", "long", "gpu", "route")
START = time.mktime((2026, 11, 24, 0, 0, 0, 0, 0, -1))


def _exec_host(rng: random.Random, nodes: int, ppn: int) -> str:
    first = rng.randrange(1, 400)
    hosts = [f"node{first + i:04d}.hpc.example.org" for i in range(nodes)]
    if ppn == 1:
        return "+".join(f"{h}/{rng.randrange(32)}" for h in hosts)
    low = rng.choice((0, 0, 8, 16))
    slots = f"{low}-{low + ppn - 1}" if rng.random() < 0.85 else f"{low},{low + 2}-{low + ppn}"
    return "+".join(f"{h}/{slots}" for h in hosts)


def _job_lines(rng: random.Random, number: int, when: float) -> Iterator[tuple[float, str, str, str]]:
    """(time, type, job id, text) of one job's life, in order."""
    job_id = f"{number}.{SERVER}"
    if rng.random() < 0.15:
        job_id = f"{number}[{rng.randrange(1, 500)}].{SERVER}"
    user = f"u{rng.randrange(1, 900):04d}"
    queue = rng.choice(QUEUES)
    nodes = rng.choice((1, 1, 1, 2, 4, 8))
    ppn = rng.choice((1, 4, 8, 16, 32))
    walltime = rng.choice(("00:30:00", "01:00:00", "04:00:00", "24:00:00", "72:00:00"))
    yield when, "Q", job_id, f"queue={queue}"
    fate = rng.random()
    if fate < 0.10:
        yield when + rng.randrange(5, 3600), "D", job_id, f"requestor={user}@login{rng.randrange(1, 4)}.hpc.example.org"
        return
    if fate < 0.11:
        yield when + rng.randrange(5, 600), "A", job_id, ""
        return
    start = when + rng.randrange(1, 7200)
    head = [
        ("user", user), ("group", f"g{user[1:3]}"), ("jobname", rng.choice(("STDIN", "run.sh", "sim/step_3", "vasp", f"job{number}"))),
        ("queue", queue), ("ctime", int(when)), ("qtime", int(when)), ("etime", int(when) + 1),
        ("start_count", 1), ("start", int(start)), ("owner", f"{user}@login1.hpc.example.org"),
        ("exec_host", _exec_host(rng, nodes, ppn)),
        ("Resource_List.nodes", f"{nodes}:ppn={ppn}"), ("Resource_List.neednodes", f"{nodes}:ppn={ppn}"),
        ("Resource_List.nodect", nodes), ("Resource_List.walltime", walltime),
        ("Resource_List.mem", rng.choice(("4gb", "16gb", "5120mb", "143425316860b"))),
        ("Resource_List.nice", 0),
    ]
    if rng.random() < 0.2:
        head.append(("Resource_Request_2.0", " ".join(
            f"-L tasks={nodes}:lprocs={ppn}:usecores:memory=4GB" for _ in range(rng.randrange(1, 3)))))
    text = format_text(head) + " "
    yield start, "S", job_id, text
    if fate < 0.115:
        yield start + 30, "R", job_id, ""
        yield start + 60, "S", job_id, text
    elapsed = rng.randrange(10, 20000)
    killed = fate > 0.95
    if killed:
        yield start + elapsed - 1, "D", job_id, f"requestor={user}@login1.hpc.example.org"
    slots = nodes * ppn
    tail = [
        ("session", rng.randrange(1000, 99999)), ("total_execution_slots", slots),
        ("unique_node_count", nodes), ("end", int(start + elapsed)),
        ("Exit_status", 271 if killed else rng.choice((0, 0, 0, 1, -3))),
        ("resources_used.cput", elapsed * slots), ("resources_used.energy_used", 0),
        ("resources_used.mem", f"{rng.randrange(1000, 9999999)}kb"),
        ("resources_used.vmem", f"{rng.randrange(1000, 9999999)}kb"),
        ("resources_used.walltime", f"{elapsed // 3600:02d}:{elapsed % 3600 // 60:02d}:{elapsed % 60:02d}"),
    ]
    yield start + elapsed, "E", job_id, text + format_text(tail)


def write_log(path: Path, count: int, seed: int = 42) -> int:
    """Write ``count`` lines in time order, as pbs_server would; returns the file's size."""
    rng = random.Random(seed)
    clock = START
    number = 100000
    pending: list[tuple[float, int, str, str, str]] = []  # a heap of future events
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        buffer: list[str] = []
        while written < count:
            # A job arrives every ~2 s on average, in bursts: an array or a script's loop of qsubs.
            clock += rng.expovariate(1 / 2.0)
            for _ in range(rng.choice((1, 1, 1, 1, 2, 5))):
                number += 1
                for when, rtype, job_id, text in _job_lines(rng, number, clock):
                    heapq.heappush(pending, (when, number, rtype, job_id, text))
            while pending and pending[0][0] <= clock and written < count:
                when, _, rtype, job_id, text = heapq.heappop(pending)
                buffer.append(format_line(when, rtype, job_id, text))
                written += 1
            if len(buffer) >= 10000:
                out.writelines(buffer)
                buffer.clear()
        out.writelines(buffer)
    return path.stat().st_size


def baseline(path: Path) -> int:
    n = 0
    with open(path, encoding="utf-8") as stream:
        for _line in stream:
            n += 1
    return n


def parser_header(path: Path) -> int:
    n = 0
    for _record in AccountingParser().parse_file(path):
        n += 1
    return n


def parse_line_each(path: Path) -> int:
    n = 0
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            parse_line(line)
            n += 1
    return n


def parser_fields(path: Path) -> int:
    n = 0
    for record in AccountingParser().parse_file(path):
        record.fields  # noqa: B018 - tokenizing is what is timed
        n += 1
    return n


def tailer(path: Path) -> int:
    tail = AccountingTailer(str(path.parent), from_start=True)
    n = 0
    while batch := tail.poll(limit=1000):
        n += len(batch)
    return n


def best_rate(run: Callable[[Path], int], path: Path, repeat: int, expected: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        n = run(path)
        best = min(best, time.perf_counter() - began)
        if n != expected:
            sys.exit(f"{run.__name__} read {n} lines, expected {expected}")
    return expected / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", help="where to write the log (default: a temporary directory)")
    args = parser.parse_args(argv)
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="phorque-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "20261124"
    try:
        began = time.perf_counter()
        size = write_log(path, args.lines)
        print(f"wrote {args.lines:,} lines, {size / 2**20:.0f} MiB ({size / args.lines:.0f} bytes a "
              f"line) in {time.perf_counter() - began:.1f} s to {path}")
        rows = [
            ("(a) baseline: for line in file", baseline),
            ("(b) parser, header only", parser_header),
            ("    parse_line per line", parse_line_each),
            ("    parser + fields of every record", parser_fields),
            ("(c) tailer, poll(limit=1000)", tailer),
        ]
        base = None
        for label, run in rows:
            rate = best_rate(run, path, args.repeat, args.lines)
            base = base or rate
            print(f"{label:38s} {rate:>12,.0f} lines/s   {rate / base:5.2f} x baseline", flush=True)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak resident memory {peak:.0f} MiB; Python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs")
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
