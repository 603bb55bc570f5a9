"""Standard Workload Format traces (the Parallel Workloads Archive's ``.swf`` / ``.swf.gz``).

Each job line has 18 whitespace-separated numbers; ``-1`` means unknown. What a replay uses:

* field 2, submit time: seconds after the header's ``UnixStartTime`` (0 when there is none);
* field 4, run time: how long the job really runs in the replay (a line without one is skipped);
* field 5, allocated processors (else field 8, requested processors): the job's cores, taken
  anywhere on the cluster, several per node, like a Torque ``procs=N`` request;
* field 9, requested time: the walltime. A trace without it (synthetic models) gets
  ``walltime_factor`` x run time, at least ``MIN_WALLTIME`` seconds;
* field 10, requested memory, in KB per processor: the job's memory, each of its cores needing
  that much (rounded up to whole MiB) on the node it lands on, like ``pmem``: the job becomes one
  spread part whose ``mem_mb`` is per core. ``-1`` (or 0) means none asked. Field 7, the memory
  the job really used, is not a request and is not read;
* field 3, wait time: what the original scheduler achieved, kept for comparison only;
* field 15, queue number, becomes the job's queue name.

Header comments ``; MaxProcs:`` (else ``; MaxNodes:``) give the machine size and
``; UnixStartTime:`` the epoch of time 0.
"""

from __future__ import annotations

import gzip
import math
import os
from collections import Counter

from phorque.core.model import Chunk
from phorque.replay.trace import Trace, TraceJob, Window

FIELDS = 18
MIN_WALLTIME = 60
KB_PER_MIB = 1024


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(text) from None
        return int(value)


def _open(path: str):
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _header(line: str, header: dict[str, str]) -> None:
    key, sep, value = line[1:].partition(":")
    if sep and key.strip() and key.strip() not in header:
        header[key.strip()] = value.strip()


def _header_int(header: dict[str, str], *keys: str) -> int | None:
    for key in keys:
        try:
            value = int(float(header.get(key, "").split()[0]))
        except (ValueError, IndexError):
            continue
        if value > 0:
            return value
    return None


def read_swf(path: str | os.PathLike[str], window: Window | None = None,
             walltime_factor: float = 2.0) -> Trace:
    """The jobs of an SWF trace submitted inside ``window``. Malformed and incomplete lines are
    counted in ``problems`` and skipped. Raises OSError if the file cannot be read."""
    path = os.fspath(path)
    window = window or Window()
    header: dict[str, str] = {}
    problems: Counter[str] = Counter()
    jobs: list[TraceJob] = []
    origin = 0.0
    begin: float | None = None
    end = math.inf  # set with begin, from the window, before either is read
    last = None
    made_up = 0
    with_memory = 0
    # Parts are frozen values: jobs of the same size and memory share one (reading is quicker).
    shared: dict[tuple[int, int], tuple[Chunk, ...]] = {}
    with _open(path) as stream:
        for line in stream:
            if line.startswith(";"):
                if begin is None:
                    _header(line, header)
                continue
            parts = line.split()
            if not parts:
                continue
            if begin is None:
                origin = float(_header_int(header, "UnixStartTime") or 0)
                begin, end = window.bounds(origin)
            if len(parts) != FIELDS:
                problems[f"lines without {FIELDS} fields"] += 1
                continue
            try:
                number = _number(parts[0])
                submit = origin + _number(parts[1])
                wait = _number(parts[2])
                run = _number(parts[3])
                allocated = _number(parts[4])
                requested = _number(parts[7])
                req_time = _number(parts[8])
                req_mem = _number(parts[9])
                queue = _number(parts[14])
            except ValueError:
                problems["lines with a field that is not a number"] += 1
                continue
            if submit < begin:
                continue
            if submit >= end:
                break  # lines are in submit order
            if submit < origin:
                problems["jobs with no submit time"] += 1
                continue
            if run < 0:
                problems["jobs with no run time"] += 1
                continue
            cores = allocated if allocated > 0 else requested
            if cores <= 0:
                problems["jobs with no processor count"] += 1
                continue
            if req_time > 0:
                walltime = req_time
            else:
                walltime = max(MIN_WALLTIME, math.ceil(run * walltime_factor))
                made_up += 1
            chunks: tuple[Chunk, ...] = ()
            if req_mem > 0:
                key = (cores, -(-req_mem // KB_PER_MIB))
                chunks = shared.get(key) or shared.setdefault(
                    key, (Chunk(count=cores, ppn=1, spread=True, mem_mb=key[1]),))
                with_memory += 1
            last = submit
            jobs.append(TraceJob(id=f"{number}.swf", submit=float(submit), run_secs=float(run),
                                 cores=cores, walltime_secs=walltime, chunks=chunks,
                                 queue=str(queue) if queue >= 0 else "",
                                 original_wait=float(wait) if wait >= 0 else None))
    if begin is None:
        origin = float(_header_int(header, "UnixStartTime") or 0)
        begin, end = window.bounds(origin)
    # Archive logs are sorted by submit time; a stable sort keeps a stray line harmless.
    jobs.sort(key=lambda j: j.submit)
    stop = end if math.isfinite(end) else (last if last is not None else begin)
    name = os.path.basename(path)
    trace = Trace(name=name, jobs=jobs, start=begin, end=max(stop, begin),
                  max_cores=_header_int(header, "MaxProcs", "MaxNodes"), problems=problems)
    if with_memory:
        trace.notes.append(f"{with_memory:,} jobs ask for memory (field 10, per processor)")
    if made_up:
        trace.notes.append(f"{made_up:,} jobs had no requested time (field 9): walltime = "
                           f"{walltime_factor:g} x run time, at least {MIN_WALLTIME} s")
    return trace
