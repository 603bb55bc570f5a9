"""Which slots (and GPUs) of which nodes a job gets. Pure: no I/O, no clock.

A ``nodes=`` request takes, for each ``+`` part, ``count`` distinct nodes with at least ``ppn``
free slots and ``gpus`` free GPUs each (and the part's properties, or the named host);
``procs=N`` then takes N slots anywhere, filling nodes in order. Nodes are tried in their
configured order (first fit), and each node hands out its lowest free slots and GPUs, so
``exec_host`` reads ``n1/0-3+n2/0-3`` as Torque 6 writes it.

A part is read as pbs_server's ``proplist`` reads it (node_manager.c): after the count or name,
``:``-separated words, of which ``ppn=``, ``gpus=`` and ``mics=`` are numbers and every other
``=`` is refused; once a part has said ``gpus=``, the words ``exclusive_thread``,
``exclusive``, ``exclusive_process``, ``default``, ``shared`` and ``reseterr`` set the GPU mode
instead of naming properties. Memory plays no part: pbs_server's node allocation never looks
at ``mem``/``pmem``/``vmem``, and pbs_sched (fifo) checks ``mem`` only against a server or
queue ``resources_available``/``resources_max`` limit (none is set) or when load balancing
(off by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: ``enum gpmodeit`` (pbs_nodes.h): the values ``gpu_flags`` carries.
GPU_NORMAL, GPU_EXCLUSIVE_THREAD, GPU_EXCLUSIVE_PROCESS = 0, 1, 3
#: pbs_server built without NVML (as here): a job that names no mode gets exclusive_thread.
DEFAULT_GPU_MODE = GPU_EXCLUSIVE_THREAD
GPU_MODE_WORDS = {"exclusive_thread": GPU_EXCLUSIVE_THREAD, "exclusive": GPU_EXCLUSIVE_THREAD,
                  "exclusive_process": GPU_EXCLUSIVE_PROCESS, "default": GPU_NORMAL,
                  "shared": GPU_NORMAL}
#: ``gpu_flags`` adds this when the job asked for ``reseterr``.
GPU_RESET_FLAG = 1000


class BadNodeSpec(ValueError):
    """A ``nodes=`` part pbs_server's ``proplist`` refuses."""


class FreeNode:
    """A usable node as the scheduler sees it: its name, properties, free slot numbers and
    free GPU numbers."""

    __slots__ = ("name", "properties", "free", "gpus")

    def __init__(self, name: str, properties: Iterable[str], free: Iterable[int],
                 gpus: Iterable[int] = ()):
        self.name = name
        self.properties = frozenset(properties)
        self.free = sorted(free)
        self.gpus = sorted(gpus)

    def __repr__(self) -> str:
        return f"FreeNode({self.name!r}, {sorted(self.properties)!r}, {self.free!r}, {self.gpus!r})"


class Part:
    """One ``+`` part of a ``nodes=`` request."""

    __slots__ = ("count", "ppn", "host", "properties", "gpus", "gpu_mode", "gpu_reset")

    def __init__(self, count: int, ppn: int, host: str | None, properties: Sequence[str],
                 gpus: int = 0, gpu_mode: int | None = None, gpu_reset: bool = False):
        self.count = count
        self.ppn = ppn
        self.host = host
        self.properties = frozenset(properties)
        self.gpus = gpus
        self.gpu_mode = gpu_mode  # None: the part did not say gpus=
        self.gpu_reset = gpu_reset

    def __repr__(self) -> str:
        return (f"Part({self.count}, {self.ppn}, {self.host!r}, {sorted(self.properties)!r},"
                f" gpus={self.gpus})")

    def accepts(self, node: FreeNode) -> bool:
        # A part that names something other than a count names a host, or (as in Torque,
        # when no node has that name) a property.
        if self.host is not None and self.host != node.name and self.host not in node.properties:
            return False
        return self.properties <= node.properties


def _number(text: str) -> int:
    """``number()`` of node_manager.c: digits only."""
    if not text.isdigit():
        raise BadNodeSpec(text)
    return int(text)


def parse_part(text: str) -> Part:
    """One part (``2:ppn=8:gpus=2:ib``, ``n1:ppn=2``, ``bigmem``)."""
    words = text.split(":")
    head = words[0].strip()
    count, host = (int(head), None) if head.isdigit() else (1, head or None)
    ppn, gpus, mode, reset = 1, 0, None, False
    props: list[str] = []
    for word in (w.strip() for w in words[1:]):
        if not word:
            continue
        key, eq, value = word.partition("=")
        if eq:
            if key == "ppn":
                ppn = _number(value)
            elif key == "gpus":
                gpus, mode, reset = _number(value), DEFAULT_GPU_MODE, False
            elif key == "mics":
                _number(value)
            else:
                raise BadNodeSpec(word)
        elif mode is not None and word.lower() in GPU_MODE_WORDS:
            mode = GPU_MODE_WORDS[word.lower()]
        elif mode is not None and word.lower() == "reseterr":
            reset = True
        else:
            props.append(word)
    return Part(count, ppn, host, props, gpus, mode, reset)


def parse_parts(spec: str) -> list[Part]:
    """The parts of a ``nodes=`` value, with properties and GPUs (``2:bigmem:ppn=8``)."""
    return [parse_part(p.strip()) for p in spec.split("#", 1)[0].split("+") if p.strip()]


def gpu_flags(parts: Sequence[Part]) -> int | None:
    """``gpu_flags`` of a job given GPUs: the mode the last part with ``gpus=`` left (a global
    that each ``gpus=`` resets in pbs_server), plus 1000 for ``reseterr``."""
    found = None
    for part in parts:
        if part.gpu_mode is not None:
            found = part.gpu_mode + (GPU_RESET_FLAG if part.gpu_reset else 0)
    return found


@dataclass
class Placement:
    """Slots and GPUs per node, in the order the hosts were chosen (the order of
    ``exec_host``)."""

    slots: dict[str, list[int]]
    gpus: dict[str, list[int]] = field(default_factory=dict)


def place(parts: Sequence[Part], procs: int, nodes: Sequence[FreeNode]) -> Placement | None:
    """Slots and GPUs per node for a request, or None when it does not fit now."""
    taken: dict[str, list[int]] = {}
    gpus: dict[str, list[int]] = {}

    def left(node: FreeNode) -> int:
        return len(node.free) - len(taken.get(node.name, ()))

    # Larger parts first, so that a small part does not take the only node a large one fits.
    order = sorted(range(len(parts)), key=lambda i: (-parts[i].ppn, -parts[i].gpus))
    chosen: list[list[str]] = [[] for _ in parts]
    for i in order:
        part = parts[i]
        for _ in range(part.count):
            node = next((n for n in nodes if n.name not in taken and left(n) >= part.ppn
                         and len(n.gpus) >= part.gpus and part.accepts(n)), None)
            if node is None:
                return None
            taken[node.name] = node.free[: part.ppn]
            if part.gpus:
                gpus[node.name] = node.gpus[: part.gpus]
            chosen[i].append(node.name)
    result: dict[str, list[int]] = {}
    for names in chosen:  # exec_host follows the order of the request's parts
        for name in names:
            result[name] = list(taken[name])
    remaining = procs
    for node in nodes:
        if remaining <= 0:
            break
        have = result.get(node.name, [])
        spare = [s for s in node.free if s not in have][:remaining]
        if spare:
            result[node.name] = sorted(have + spare)
            remaining -= len(spare)
    if remaining > 0:
        return None
    return Placement(result, {name: gpus[name] for name in result if name in gpus})


def exec_gpus(placement: Placement) -> str | None:
    """Torque 6's ``exec_gpus`` (``n1-gpu/1+n1-gpu/0``), None when the job has no GPU.

    pbs_server puts each GPU it hands out at the front of the list (``add_gpu_to_hostlist``
    inserts before the first entry of the same order, and every node of a request that names
    no host has order 0), after walking the nodes from the last chosen to the first
    (``save_node_for_adding`` pushes each onto the front): hosts read in the order of
    ``exec_host``, each one's GPUs from the highest number down.
    """
    entries = [f"{host}-gpu/{gpu}" for host in placement.slots
               for gpu in sorted(placement.gpus.get(host, ()), reverse=True)]
    return "+".join(entries) or None


def parse_exec_gpus(value: str | None) -> dict[str, list[int]]:
    """GPUs per node of an ``exec_gpus`` value (the inverse of :func:`exec_gpus`)."""
    result: dict[str, list[int]] = {}
    for entry in (value or "").split("+"):
        host, sep, index = entry.rpartition("-gpu/")
        if sep and index.isdigit():
            result.setdefault(host, []).append(int(index))
    return result


def slot_ranges(slots: Iterable[int]) -> str:
    """``0-3,5`` from ``[0, 1, 2, 3, 5]``."""
    ordered = sorted(set(slots))
    pieces = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        pieces.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(pieces)


def exec_host(alloc: dict[str, list[int]]) -> str:
    """Torque 6's ``exec_host``: ``host/slots`` entries joined with ``+``."""
    return "+".join(f"{host}/{slot_ranges(slots)}" for host, slots in alloc.items())


def parse_exec_host(value: str) -> dict[str, list[int]]:
    """The inverse of :func:`exec_host` (for the slots written by this sandbox)."""
    result: dict[str, list[int]] = {}
    for entry in value.split("+"):
        host, _, spec = entry.partition("/")
        slots = result.setdefault(host, [])
        for piece in spec.split(","):
            low, dash, high = piece.partition("-")
            slots.extend(range(int(low), int(high) + 1) if dash else [int(low)])
    return result


def node_jobs(entries: Iterable[tuple[str, Iterable[int]]]) -> str:
    """A node's ``jobs`` attribute in Torque 6's form: ``0-3/1.srv,4/2.srv``."""
    return ",".join(f"{slot_ranges(slots)}/{job}" for job, slots in entries)
