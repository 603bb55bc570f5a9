"""Torque's resource arithmetic: ``nodes=`` specs, cores per job, durations.

Follows pbs_server (src/server/resc_def_all.c): ``procct = procs + count_proc(nodes)``, where
``count_proc`` sums ``count x ppn`` over the ``+`` parts and a part that names a host counts one
node; with neither ``nodes`` nor ``procs`` a job needs one core. Torque 6 ``-L`` requests
(``Resource_Request_2.0``) count ``tasks x lprocs``. ``ncpus`` alone is not expanded by
pbs_server (no ``nodes`` default is added), but the schedulers (pbs_sched, Maui, Moab) treat it
as that many cores on one node, so a job whose request is only ``ncpus=N`` needs N cores.

Shapes (what each node of a part needs besides cores):

* sizes (``mem``, ``pmem``, ``vmem``, ``pvmem``, ``-L memory``) are Torque's size values
  (src/lib/Libattr/attr_fn_size.c ``to_size``): a number, an optional multiplier ``k m g t p e``
  (powers of 1024) and an optional ``b`` (bytes, the default) or ``w`` (words), in any case.
  Torque counts a word as ``sizeof(int)``, 4 bytes, in pbs_server's comparisons
  (``normalize_size``) and in the mom's limits (``mm_getsize``): so does :data:`WORD_BYTES`. The
  number is read as ``strtol(..., 0)`` reads it (``0x`` hexadecimal, a leading ``0`` octal);
  pbs_server prints every size back in decimal with a lower-case suffix (``1536MB`` becomes
  ``1536mb``, ``1048576`` becomes ``1048576b``). Phorque keeps MiB, rounded up.
* each node of a ``nodes=`` part needs the larger of the job's ``mem`` shared out by the node's
  share of the job's cores (rounded up), ``pmem`` x ``ppn``, ``vmem`` shared out likewise and
  ``pvmem`` x ``ppn``; a spread part (``procs=N``, ``-L`` tasks) carries the same per core.
* ``gpus=N`` in a part is per node; the words of a part that are neither ``key=value`` nor a
  GPU mode (``exclusive_process``, ...) are node properties (``2:ppn=4:ib``, ``1:bigmem:ppn=8``).
* ``-L`` parts give ``memory`` and ``gpus`` per task and ``feature`` as a property.
* ``gres`` (Moab's generic resources; pbs_server stores them and neither it nor pbs_sched
  acts on them) is ``name[:count]`` or ``name=count`` entries joined by ``+``, ``%`` or ``,``;
  an entry whose name starts with ``gpu`` (``gpu:2``, ``gpus:2``, ``GPU=1``) counts as that many
  GPUs for the whole job, and they are placed on the job's first node.
A value that is absent (or unreadable) means none asked: 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

from phorque.core.model import Chunk

_DURATION_RE = re.compile(r"^\s*(\d+(?::\d+){0,3})(?:\.\d*)?\s*$")
# Bounded: Torque uses atoi(), and int() refuses numbers of thousands of digits.
_LEADING_INT_RE = re.compile(r"^(\d{1,18})")
_TASKS_RE = re.compile(r"(?:^|:)tasks=(\d{1,9})")
_LPROCS_RE = re.compile(r"(?:^|:)lprocs=(\d{1,9}|all)")

#: Bytes in a word of a ``w`` size, as Torque 6.1.3 counts them (``sizeof(int)``).
WORD_BYTES = 4
MIB = 1 << 20
_SIZE_RE = re.compile(r"\s*(0[xX][0-9a-fA-F]{1,16}|[0-9]{1,20})([kmgtpeKMGTPE]?)([bwBW]?)\s*")
_SHIFTS = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
#: Words of a ``nodes=`` part that name a GPU mode, not a node property.
GPU_MODES = frozenset({"exclusive", "exclusive_thread", "exclusive_process", "default", "shared",
                       "reseterr"})
_GRES_SPLIT = re.compile(r"[+%,]")


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
def parse_size_mb(text: str) -> int:
    """MiB (rounded up) of a Torque size: ``64gb``, ``4096MB``, ``1048576`` (bytes), ``2mw``.

    Raises ValueError for anything Torque's ``to_size`` would refuse."""
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a Torque size: {text!r}")
    digits, multiplier, unit = match.groups()
    if digits[:2] in ("0x", "0X"):
        number = int(digits, 16)
    elif len(digits) > 1 and digits[0] == "0":
        number = int(digits, 8)  # raises for 08 or 09, which strtol stops at too
    else:
        number = int(digits)
    size = number << _SHIFTS[multiplier.lower()]
    if unit in ("w", "W"):
        size *= WORD_BYTES
    return -(-size // MIB)


def size_mb(text: str | None) -> int:
    """:func:`parse_size_mb`, with 0 (none asked) for a value that is absent or unreadable."""
    if not text:
        return 0
    try:
        return parse_size_mb(text)
    except ValueError:
        return 0


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
        gpus = 0
        properties: list[str] = []
        for item in fields[1:]:
            key, equals, value = item.partition("=")
            key = key.strip()
            if key == "ppn":
                ppn = _leading_int(value.strip()) or 0
            elif key == "gpus":
                gpus = _leading_int(value.strip()) or 0
            elif not equals and key and key.lower() not in GPU_MODES and key not in properties:
                properties.append(key)
        chunks.append(Chunk(count=count, ppn=ppn, host=host, gpus=gpus,
                            properties=tuple(properties)))
    return tuple(chunks)


def count_proc(spec: str) -> int:
    """Cores of a ``nodes=`` value by Torque's ``count_proc``."""
    return sum(c.count * c.ppn for c in parse_nodes(spec))


def count_nodes(spec: str) -> int:
    """``nodect`` of a ``nodes=`` value by Torque's ``ctnodes``."""
    return sum(c.count for c in parse_nodes(spec))


def count_gpus(spec: str) -> int:
    """GPUs of a ``nodes=`` value: ``count x gpus`` summed over its parts."""
    return sum(c.count * c.gpus for c in parse_nodes(spec))


def gres_gpus(gres: str | None) -> int:
    """GPUs among a ``gres`` value's entries (``gpu:2``, ``gpus:2``, ``gpu=2+tape:1``).

    An entry counts when its name starts with ``gpu`` in any case; an entry without a count is
    one, as Moab reads it."""
    if not gres:
        return 0
    total = 0
    for entry in _GRES_SPLIT.split(gres):
        name, _, count = entry.strip().replace("=", ":", 1).partition(":")
        if name.strip().lower().startswith("gpu"):
            count = count.strip()
            total += (_leading_int(count) or 0) if count else 1
    return total


@dataclass(frozen=True, slots=True)
class Task:
    """One ``-L`` part: ``tasks`` tasks of ``lprocs`` cores, with per-task memory and GPUs."""

    tasks: int
    lprocs: int
    mem_mb: int = 0
    gpus: int = 0
    features: tuple[str, ...] = ()


def _request2_parts(text: str) -> list[Task]:
    """The ``-L`` parts; ``lprocs=all`` (a whole node) counts as 1 core."""
    parts = []
    for part in text.split("-L"):
        part = part.strip()
        if not part:
            continue
        tasks_match = _TASKS_RE.search(part)
        lprocs_match = _LPROCS_RE.search(part)
        tasks = int(tasks_match.group(1)) if tasks_match else 1
        lprocs = lprocs_match.group(1) if lprocs_match else "1"
        mem = gpus = 0
        features: list[str] = []
        for item in part.split(":"):
            key, _, value = item.strip().partition("=")
            if key == "memory":
                mem = size_mb(value.strip())
            elif key == "gpus":
                gpus = _leading_int(value.strip()) or 0
            elif key == "feature" and value.strip():
                features.append(value.strip())
        parts.append(Task(tasks, int(lprocs) if lprocs.isdigit() else 1, mem, gpus, tuple(features)))
    return parts


def request2_cores(text: str) -> int:
    """Cores of a Torque 6 ``-L`` request: the sum of ``tasks x lprocs`` over its parts."""
    return sum(t.tasks * t.lprocs for t in _request2_parts(text))


@dataclass(frozen=True, slots=True)
class Asks:
    """A job's whole request besides cores: sizes in MiB as Torque's ``Resource_List`` holds
    them (``mem`` and ``vmem`` for the job, ``pmem`` and ``pvmem`` per process; ``-L memory`` x
    tasks counts as the job's ``mem``) and its GPUs in all (``nodes`` parts, ``gres``, ``-L``).
    0 means none asked."""

    mem_mb: int = 0
    pmem_mb: int = 0
    vmem_mb: int = 0
    pvmem_mb: int = 0
    gpus: int = 0


def job_asks(resources: Mapping[str, str], request2: str | None = None) -> Asks:
    """The :class:`Asks` of a job's ``Resource_List`` (and ``Resource_Request_2.0``)."""
    nodes = resources.get("nodes")
    tasks = _request2_parts(request2) if request2 else []
    mem = size_mb(resources.get("mem"))
    gpus = (count_gpus(nodes) if nodes else 0) + gres_gpus(resources.get("gres"))
    gpus += sum(t.tasks * t.gpus for t in tasks)
    return Asks(mem_mb=max(mem, sum(t.tasks * t.mem_mb for t in tasks)),
                pmem_mb=size_mb(resources.get("pmem")), vmem_mb=size_mb(resources.get("vmem")),
                pvmem_mb=size_mb(resources.get("pvmem")), gpus=gpus)


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


def _task_chunk(task: Task) -> Chunk:
    """A ``-L`` part as a chunk: spread (several tasks may share a node) with per-core memory
    and GPUs; when its GPUs per task cannot be shared out whole among its cores (``lprocs=4``,
    ``gpus=1``), one task per node, so that a node is never asked for fewer GPUs than a task
    needs."""
    per_core_mem = -(-task.mem_mb // task.lprocs) if task.lprocs else task.mem_mb
    if task.gpus % max(task.lprocs, 1) == 0:
        return Chunk(count=task.tasks, ppn=task.lprocs, spread=True, mem_mb=per_core_mem,
                     gpus=task.gpus // max(task.lprocs, 1), properties=task.features)
    return Chunk(count=task.tasks, ppn=task.lprocs, mem_mb=task.mem_mb, gpus=task.gpus,
                 properties=task.features)


def _with_memory(chunk: Chunk, asks: Asks, cores: int) -> Chunk:
    """``chunk`` with the memory each of its nodes needs (each core, for a spread part)."""
    share = 1 if chunk.spread else chunk.ppn

    def shared(total: int) -> int:
        return -(-total * share // cores)

    mem = max(shared(asks.mem_mb), asks.pmem_mb * share, shared(asks.vmem_mb), asks.pvmem_mb * share)
    return replace(chunk, mem_mb=max(chunk.mem_mb, mem)) if mem else chunk


def _gpus_on_first_node(chunks: list[Chunk], gpus: int) -> list[Chunk]:
    """The job-wide GPUs of ``gres`` added to the first node (or core) of the first part."""
    first = chunks[0]
    placed = replace(first, count=1, gpus=first.gpus + gpus)
    rest = [replace(first, count=first.count - 1)] if first.count > 1 else []
    return [placed, *rest, *chunks[1:]]


def job_chunks(resources: Mapping[str, str], request2: str | None = None) -> tuple[Chunk, ...]:
    """A job's node shape for packing: its ``nodes=`` parts plus ``procs`` spread anywhere, each
    with the memory, GPUs and properties its nodes need (see the module's notes)."""
    nodes = resources.get("nodes")
    chunks = list(parse_nodes(nodes)) if nodes else []
    procs = _procs(resources)
    if procs:
        chunks.append(Chunk(count=procs, ppn=1, spread=True))
    if not chunks and request2:
        chunks = [_task_chunk(t) for t in _request2_parts(request2)]
    if not chunks and _ncpus(resources):
        # ncpus alone: that many cores on one node, as the schedulers place it.
        chunks = [Chunk(count=1, ppn=_ncpus(resources))]
    chunks = [c for c in chunks if c.count > 0 and c.ppn > 0] or [Chunk(count=1, ppn=1, spread=True)]
    asks = job_asks(resources)  # -L memory is already per task in its chunks
    cores = job_cores(resources, request2)
    if asks.mem_mb or asks.pmem_mb or asks.vmem_mb or asks.pvmem_mb:
        chunks = [_with_memory(c, asks, cores) for c in chunks]
    extra = gres_gpus(resources.get("gres"))
    if extra:
        chunks = _gpus_on_first_node(chunks, extra)
    return tuple(chunks)


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


#: Requests longer than this are not kept by :func:`job_request`'s cache.
CACHED_REQUEST_CHARS = 512
#: The ``Resource_List`` entries a job's request is read from (:func:`job_request`).
REQUEST_KEYS = ("nodes", "procs", "ncpus", "mem", "pmem", "vmem", "pvmem", "gres")


@dataclass(frozen=True)
class Request:
    """What a job asks for, read once per distinct request (see :func:`job_request`)."""

    cores: int
    chunks: tuple[Chunk, ...]
    asks: Asks


def job_request(resources: Mapping[str, str], request2: str | None = None) -> Request:
    """:func:`job_cores`, :func:`job_chunks` and :func:`job_asks` together. A queue of 100,000
    jobs holds a few dozen distinct requests: each is read once, not once per job. A long
    request (a user's own text) is read without being kept."""
    values = tuple(map(resources.get, REQUEST_KEYS))
    if sum(map(len, filter(None, values))) + len(request2 or "") > CACHED_REQUEST_CHARS:
        return _request.__wrapped__(values, request2)
    return _request(values, request2)


@lru_cache(maxsize=8192)
def _request(values: tuple[str | None, ...], request2: str | None) -> Request:
    resources = {k: v for k, v in zip(REQUEST_KEYS, values, strict=True) if v is not None}
    return Request(job_cores(resources, request2), job_chunks(resources, request2),
                   job_asks(resources, request2))
