"""Torque accounting logs as a workload: jobs rebuilt from their Q, S, E, D and A records.

* submit: the Q record's time (else the job's ``ctime``, ``qtime`` or ``etime``);
* cores and shape: ``Resource_List`` by Torque's rule (``procs`` + count x ppn of ``nodes``;
  Torque 6 ``-L`` requests; 1 when neither is given), from the E record (else the S record);
  each part of the shape carries the memory, GPUs and node properties its nodes need, from
  ``Resource_List.mem``/``pmem``/``vmem``/``pvmem``/``nodes``/``gres`` and the ``-L`` request
  (:func:`phorque.adapters.torque.resources.job_chunks`);
* run time: the E record's ``end`` - ``start`` (the last start, after a rerun);
* walltime: ``Resource_List.walltime``; the original wait (start - submit) is kept for comparison.

A job is replayed only when it has an E record. Jobs that never got one are counted by reason and
skipped: deleted (D) or aborted (A) before they started (their size is unknown), started but not
ended when the log stops, still queued when the log stops. Malformed lines are counted too.
The machine size, when not given, is read from ``exec_host``: every host seen, with as many
cores as its highest slot number + 1, except the former cloud nodes of a site that already
bursts (:mod:`phorque.replay.hosts`: by name, or all but the hosts ``static`` names), which are
set aside in :attr:`Trace.former_cloud_nodes`. Their jobs are replayed like any other.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from phorque.adapters.torque.resources import job_chunks
from phorque.replay.hosts import some, split_hosts
from phorque.replay.trace import Trace, TraceJob, Window

if TYPE_CHECKING:  # imported where it is used, when a log is read
    from phorque.adapters.torque.accounting import Record


@dataclass
class _Seen:
    queued: float | None = None
    started: Record | None = None   # the last S record
    ended: Record | None = None     # the E record
    deleted: bool = False


def accounting_files(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The files to read: each file given, and every file in each directory given, by name
    (Torque names them YYYYMMDD, so name order is time order). Raises OSError for a path that
    does not exist."""
    out: list[str] = []
    for path in (os.fspath(p) for p in paths):
        if os.path.isdir(path):
            out.extend(os.path.join(path, name) for name in sorted(os.listdir(path))
                       if os.path.isfile(os.path.join(path, name)) and not name.startswith("."))
        elif os.path.exists(path):
            out.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return out


def _records(files: list[str], parser) -> Iterator:
    for name in files:
        yield from parser.parse_file(name)


def _max_slot(exec_host: str, hosts: dict[str, int]) -> None:
    for entry in exec_host.split("+"):
        host, _, spec = entry.strip().partition("/")
        if not host:
            continue
        top = 0
        for piece in spec.split(","):
            for number in piece.split("-"):
                if number.strip().isdigit():
                    top = max(top, int(number))
        hosts[host] = max(hosts.get(host, 0), top + 1)


def read_accounting(paths: Iterable[str | os.PathLike[str]], window: Window | None = None,
                    static: tuple[str, ...] | None = None) -> Trace:
    """The jobs of Torque accounting logs submitted inside ``window`` (days are counted from the
    first submit). Bad lines and incomplete jobs are counted in ``problems``. The machine is the
    hosts of ``exec_host`` less the former cloud nodes: those matching none of the ``static``
    patterns when given, else those named as cloud instances. Raises ValueError when ``static``
    matches no host."""
    from phorque.adapters.torque.accounting import AccountingParser

    paths = list(paths)
    files = accounting_files(paths)
    parser = AccountingParser("accounting log")
    seen: dict[str, _Seen] = {}
    hosts: dict[str, int] = {}
    for rec in _records(files, parser):
        job = seen.get(rec.job_id)
        if job is None:
            job = seen[rec.job_id] = _Seen()
        kind = rec.type
        if kind == "Q":
            if job.queued is None:
                job.queued = rec.time
        elif kind in ("S", "E"):
            if kind == "S":
                job.started = rec
            else:
                job.ended = rec
            exec_host = rec.exec_host
            if exec_host:
                _max_slot(exec_host, hosts)
        elif kind in ("D", "A"):
            job.deleted = True
    problems: Counter[str] = Counter()
    if parser.bad:
        problems["malformed lines"] += parser.bad
    jobs: list[TraceJob] = []
    for job_id, job in seen.items():
        built = _build(job_id, job, problems)
        if built is not None:
            jobs.append(built)
    jobs.sort(key=lambda j: j.submit)
    origin = jobs[0].submit if jobs else 0.0
    begin, end = (window or Window()).bounds(origin)
    kept = [j for j in jobs if begin <= j.submit < end]
    last = kept[-1].submit if kept else begin
    name = os.path.basename(os.path.normpath(os.fspath(paths[0]))) if paths else "accounting"
    if len(paths) > 1:
        name += f" (+{len(paths) - 1})"
    set_aside = split_hosts(hosts, static)
    if static is not None and hosts and len(set_aside) == len(hosts):
        raise ValueError(f"--local-nodes {','.join(static)}: no host of the log matches (its hosts: "
                         f"{some(sorted(hosts))})")
    machine = {h: n for h, n in hosts.items() if h not in set_aside}
    return Trace(name=name, jobs=kept, start=begin, end=end if end != float("inf") else last,
                 max_cores=sum(machine.values()) or None, nodes=len(machine) or None,
                 node_cores=max(machine.values(), default=0) or None, problems=problems,
                 hosts=len(hosts), former_cloud_nodes=dict(sorted(set_aside.items())))


def _build(job_id: str, job: _Seen, problems: Counter[str]) -> TraceJob | None:
    rec = job.ended
    if rec is None:
        if job.started is not None:
            problems["jobs started but not ended when the log stops"] += 1
        elif job.deleted:
            problems["jobs deleted or aborted before they started"] += 1
        else:
            problems["jobs still queued when the log stops"] += 1
        return None
    started = job.started
    start = rec.start if rec.start is not None else (started.start if started is not None else None)
    end = rec.end if rec.end is not None else rec.time
    if start is None:
        problems["E records without a start time"] += 1
        return None
    if end < start:
        problems["E records that end before they start"] += 1
        return None
    submit = job.queued
    for candidate in (rec.get("ctime"), rec.get("qtime"), rec.get("etime")):
        if submit is not None:
            break
        if candidate and candidate.isdigit():
            submit = float(candidate)
    if submit is None:
        problems["jobs with no submit time"] += 1
        return None
    source = rec if rec.resources else (started if started is not None else rec)
    resources = source.resources
    request2 = source.get("Resource_Request_2.0")
    cores = source.cores or 1
    chunks = job_chunks(resources, request2)
    # Single cores anywhere is what an empty shape means; a spread shape that asks for memory,
    # GPUs or properties must be kept to say so.
    if all(c.spread and not (c.mem_mb or c.gpus or c.properties) for c in chunks):
        chunks = ()
    walltime = rec.walltime_secs if rec.walltime_secs is not None else (
        started.walltime_secs if started is not None else None)
    return TraceJob(id=job_id, submit=submit, run_secs=end - start, cores=cores,
                    walltime_secs=walltime, chunks=chunks, queue=rec.queue or "",
                    original_wait=max(0.0, start - submit))
