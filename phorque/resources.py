"""Torque's resource arithmetic: ``nodes=`` specs, cores per job, durations.

Follows pbs_server (src/server/resc_def_all.c): ``procct = procs + count_proc(nodes)``, where
``count_proc`` sums ``count x ppn`` over the ``+`` parts and a part that names a host counts one
node; with neither ``nodes`` nor ``procs`` a job needs one core. Torque 6 ``-L`` requests
(``Resource_Request_2.0``) count ``tasks x lprocs``. ``ncpus`` alone is not expanded by
pbs_server (no ``nodes`` default is added), but the schedulers (pbs_sched, Maui, Moab) treat it
as that many cores on one node, so a job whose request is only ``ncpus=N`` needs N cores.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from phorque.model import Chunk

_DURATION_RE = re.compile(r"^\s*(\d+(?::\d+){0,3})(?:\.\d*)?\s*$")
# Bounded: Torque uses atoi(), and int() refuses numbers of thousands of digits.
_LEADING_INT_RE = re.compile(r"^(\d{1,18})")
_TASKS_RE = re.compile(r"(?:^|:)tasks=(\d{1,9})")
_LPROCS_RE = re.compile(r"(?:^|:)lprocs=(\d{1,9}|all)")


@lru_cache(maxsize=4096)
def parse_duration(text: str) -> int:
    """Seconds from ``S``, ``MM:SS``, ``HH:MM:SS`` or ``D:HH:MM:SS`` (fractions dropped).

    Raises ValueError for anything else.
    """
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    parts = [int(p) for p in match.group(1).split(":")]
    multipliers = {1: (1,), 2: (60, 1), 3: (3600, 60, 1), 4: (86400, 3600, 60, 1)}[len(parts)]
    return sum(p * m for p, m in zip(parts, multipliers, strict=True))


def duration_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError:
        return None


def format_hms(seconds: float | int) -> str:
    """``HH:MM:SS`` as Torque prints walltimes (hours may exceed 99)."""
    secs = max(0, int(seconds))
    return f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


def _leading_int(token: str) -> int | None:
    # Torque uses atoi() here, so a host name that starts with digits counts as a number.
    match = _LEADING_INT_RE.match(token)
    return int(match.group(1)) if match else None


@lru_cache(maxsize=4096)
def parse_nodes(spec: str) -> tuple[Chunk, ...]:
    """The parts of a ``nodes=`` value, e.g. ``2:ppn=8+n1:ppn=2#excl``."""
    spec = spec.split("#", 1)[0].strip()
    chunks: list[Chunk] = []
    for part in spec.split("+"):
        part = part.strip()
        if not part:
            continue
        fields = part.split(":")
        head = fields[0].strip()
        number = _leading_int(head)
        if number is not None:
            count, host = number, None
        else:
            count, host = 1, head or None
        ppn = 1
        for item in fields[1:]:
            key, _, value = item.partition("=")
            if key.strip() == "ppn":
                ppn = _leading_int(value.strip()) or 0
        chunks.append(Chunk(count=count, ppn=ppn, host=host))
    return tuple(chunks)


def count_proc(spec: str) -> int:
    """Cores of a ``nodes=`` value by Torque's ``count_proc``."""
    return sum(c.count * c.ppn for c in parse_nodes(spec))


def count_nodes(spec: str) -> int:
    """``nodect`` of a ``nodes=`` value by Torque's ``ctnodes``."""
    return sum(c.count for c in parse_nodes(spec))


def count_gpus(spec: str) -> int:
    total = 0
    for part in spec.split("#", 1)[0].split("+"):
        fields = part.split(":")
        count = _leading_int(fields[0].strip()) or 1
        for item in fields[1:]:
            key, _, value = item.partition("=")
            if key.strip() == "gpus":
                total += count * (_leading_int(value.strip()) or 0)
    return total


def _request2_parts(text: str) -> list[tuple[int, int]]:
    """``(tasks, lprocs)`` of each ``-L`` part; ``lprocs=all`` (a whole node) counts as 1."""
    parts = []
    for part in text.split("-L"):
        part = part.strip()
        if not part:
            continue
        tasks_match = _TASKS_RE.search(part)
        lprocs_match = _LPROCS_RE.search(part)
        tasks = int(tasks_match.group(1)) if tasks_match else 1
        lprocs = lprocs_match.group(1) if lprocs_match else "1"
        parts.append((tasks, int(lprocs) if lprocs.isdigit() else 1))
    return parts


def request2_cores(text: str) -> int:
    """Cores of a Torque 6 ``-L`` request: the sum of ``tasks x lprocs`` over its parts."""
    return sum(tasks * lprocs for tasks, lprocs in _request2_parts(text))


def _procs(resources: Mapping[str, str]) -> int:
    raw = resources.get("procs")
    if raw is None:
        return 0
    return _leading_int(raw.strip()) or 0


def _ncpus(resources: Mapping[str, str]) -> int:
    raw = resources.get("ncpus")
    if raw is None:
        return 0
    return _leading_int(raw.strip()) or 0


def job_cores(resources: Mapping[str, str], request2: str | None = None) -> int:
    """Cores a job needs, from its ``Resource_List`` (and ``Resource_Request_2.0``)."""
    nodes = resources.get("nodes")
    cores = _procs(resources) + (count_proc(nodes) if nodes else 0)
    if cores == 0 and request2:
        cores = request2_cores(request2)
    if cores == 0:
        cores = _ncpus(resources)
    return cores if cores > 0 else 1


def job_chunks(resources: Mapping[str, str], request2: str | None = None) -> tuple[Chunk, ...]:
    """A job's node shape for packing: its ``nodes=`` parts plus ``procs`` spread anywhere."""
    nodes = resources.get("nodes")
    chunks = list(parse_nodes(nodes)) if nodes else []
    procs = _procs(resources)
    if procs:
        chunks.append(Chunk(count=procs, ppn=1, spread=True))
    if not chunks and request2:
        chunks = [Chunk(count=t, ppn=p, spread=True) for t, p in _request2_parts(request2)]
    if not chunks and _ncpus(resources):
        # ncpus alone: that many cores on one node, as the schedulers place it.
        chunks = [Chunk(count=1, ppn=_ncpus(resources))]
    chunks = [c for c in chunks if c.count > 0 and c.ppn > 0]
    return tuple(chunks) or (Chunk(count=1, ppn=1, spread=True),)


def count_slots(exec_host: str) -> tuple[int, int]:
    """``(total_execution_slots, unique_node_count)`` of an ``exec_host`` value.

    Slots are ``N``, ``N-M`` or comma lists of those; a new node is counted only when the host
    differs from the previous entry, as Torque does.
    """
    slots = nodes = 0
    previous = None
    for entry in exec_host.split("+"):
        host, _, spec = entry.strip().partition("/")
        if not host:
            continue
        if host != previous:
            nodes += 1
            previous = host
        slots += count_slot_spec(spec)
    return slots, nodes


def count_slot_spec(spec: str) -> int:
    """Slots in ``0``, ``0-31`` or ``1-3,5-7``; an empty spec is one slot."""
    total = 0
    for piece in spec.split(","):
        piece = piece.strip()
        if not piece:
            continue
        low, dash, high = piece.partition("-")
        # isdecimal, not isdigit: int() rejects digits such as "²" that isdigit accepts.
        if dash and low.isdecimal() and high.isdecimal() and len(low) < 10 and len(high) < 10:
            total += max(0, int(high) - int(low) + 1)
        else:
            total += 1
    return total or 1
