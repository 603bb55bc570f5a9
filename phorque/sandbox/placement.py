"""Which slots of which nodes a job gets. Pure: no I/O, no clock.

A ``nodes=`` request takes, for each ``+`` part, ``count`` distinct nodes with at least ``ppn``
free slots each (and the part's properties, or the named host); ``procs=N`` then takes N slots
anywhere, filling nodes in order. Nodes are tried in their configured order (first fit), and
each node hands out its lowest free slots, so ``exec_host`` reads ``n1/0-3+n2/0-3`` as Torque 6
writes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class FreeNode:
    """A usable node as the scheduler sees it: its name, properties and free slot numbers."""

    __slots__ = ("name", "properties", "free")

    def __init__(self, name: str, properties: Iterable[str], free: Iterable[int]):
        self.name = name
        self.properties = frozenset(properties)
        self.free = sorted(free)

    def __repr__(self) -> str:
        return f"FreeNode({self.name!r}, {sorted(self.properties)!r}, {self.free!r})"


class Part:
    """One ``+`` part of a ``nodes=`` request."""

    __slots__ = ("count", "ppn", "host", "properties")

    def __init__(self, count: int, ppn: int, host: str | None, properties: Sequence[str]):
        self.count = count
        self.ppn = ppn
        self.host = host
        self.properties = frozenset(properties)

    def __repr__(self) -> str:
        return f"Part({self.count}, {self.ppn}, {self.host!r}, {sorted(self.properties)!r})"

    def accepts(self, node: FreeNode) -> bool:
        # A part that names something other than a count names a host, or (as in Torque,
        # when no node has that name) a property.
        if self.host is not None and self.host != node.name and self.host not in node.properties:
            return False
        return self.properties <= node.properties


def parse_parts(spec: str) -> list[Part]:
    """The parts of a ``nodes=`` value, with properties (``2:bigmem:ppn=8``)."""
    from phorque.resources import parse_nodes

    chunks = parse_nodes(spec)
    raw = [p.strip() for p in spec.split("#", 1)[0].split("+") if p.strip()]
    parts = []
    for chunk, text in zip(chunks, raw, strict=True):
        props = [f.strip() for f in text.split(":")[1:] if f.strip() and "=" not in f]
        parts.append(Part(chunk.count, chunk.ppn, chunk.host, props))
    return parts


def place(parts: Sequence[Part], procs: int, nodes: Sequence[FreeNode]) -> dict[str, list[int]] | None:
    """Slots per node for a request, or None when it does not fit now.

    The result keeps the order in which hosts were chosen (the order of ``exec_host``).
    """
    taken: dict[str, list[int]] = {}

    def left(node: FreeNode) -> int:
        return len(node.free) - len(taken.get(node.name, ()))

    # Larger parts first, so that a small part does not take the only node a large one fits.
    order = sorted(range(len(parts)), key=lambda i: -parts[i].ppn)
    chosen: list[list[str]] = [[] for _ in parts]
    for i in order:
        part = parts[i]
        for _ in range(part.count):
            node = next((n for n in nodes if n.name not in taken and left(n) >= part.ppn
                         and part.accepts(n)), None)
            if node is None:
                return None
            taken[node.name] = node.free[: part.ppn]
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
