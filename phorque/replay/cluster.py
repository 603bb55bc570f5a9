"""The simulated Torque cluster: nodes, their free cores, memory and GPUs, and where a job goes.

Nodes are kept in Torque's node order (static nodes first, then cloud nodes in the order they
joined) and a job's cores are taken from the first nodes that have room, as pbs_server allocates.
A ``nodes=N:ppn=M`` part needs N distinct nodes with M free cores each (a part that names a host
counts as one node anywhere: the trace's host names do not exist here); ``procs`` cores, and every
SWF job, take cores anywhere, several per node. Only usable nodes (not offline, not down) get
jobs.

A node also has memory (MiB; 0: unknown, never a limit), GPUs and properties. A part that asks
for memory, GPUs or properties (:class:`~phorque.core.model.Chunk`: per node of the part, per core of
a spread part) goes only where each node has that much memory and that many GPUs free and every
property asked; what a job takes is given back when it ends. A job that asks for none of these
is placed by cores alone, as before, and so is one that asks only for memory while no usable
node has a known memory (nothing could refuse it).

Everything is incremental: the free-core and free-GPU totals, the ordered list of nodes with free
cores and the :class:`~phorque.core.model.Node` values handed to snapshots are updated as jobs start
and end. An allocation is a list of ``(node, cores, memory MiB, GPUs)``.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

from phorque.core.model import (
    DOWN,
    FREE,
    JOB_EXCLUSIVE,
    OFFLINE,
    Chunk,
    CloudState,
    InstanceId,
    JobId,
    Node,
    NodeName,
)

_FREE = frozenset({FREE})
_FULL = frozenset({JOB_EXCLUSIVE})

#: What a job holds on one node: ``(node, cores, memory MiB, GPUs)``.
Share = tuple["SimNode", int, int, int]

_NOTHING = (0, 0, 0)

#: How much a job asks beyond cores (:func:`asks_of`).
PLAIN, MEMORY, HARD = 0, 1, 2


def asks_of(chunks: tuple[Chunk, ...]) -> int:
    """PLAIN when the parts ask for cores only, MEMORY when some ask for memory and none for
    GPUs or properties, HARD when some ask for GPUs or properties."""
    asks = PLAIN
    for c in chunks:
        if c.gpus or c.properties:
            return HARD
        if c.mem_mb:
            asks = MEMORY
    return asks


def plain_chunks(cores: int, chunks: tuple[Chunk, ...]) -> tuple[Chunk, ...]:
    """The chunks to place a job by cores alone: ``()`` (cores anywhere, the quick way) when
    every part is spread and they add up to the job's cores, else the chunks themselves."""
    if all(c.spread for c in chunks) and sum(c.cores for c in chunks) == cores:
        return ()
    return chunks


class SimNode:
    """One node: its cores, memory and GPUs, the jobs on it (id -> cores) and its condition."""

    __slots__ = ("name", "np", "used", "jobs", "offline", "down", "note", "cloud", "instance",
                 "order", "mem", "gpus", "properties", "used_mem", "used_gpus", "_model")

    def __init__(self, name: NodeName, np: int, order: int, note: str = "", cloud: str | None = None,
                 instance: InstanceId | None = None, down: bool = False, mem: int = 0, gpus: int = 0,
                 properties: tuple[str, ...] = ()):
        self.name = name
        self.np = np
        self.used = 0
        self.jobs: dict[JobId, int] = {}
        self.offline = False
        self.down = down
        self.note = note
        self.cloud = cloud
        self.instance = instance
        self.order = order
        self.mem = mem              # MiB; 0: unknown, never a limit
        self.gpus = gpus
        self.properties = properties
        self.used_mem = 0
        self.used_gpus = 0
        self._model: Node | None = None

    @property
    def usable(self) -> bool:
        return not (self.offline or self.down)

    @property
    def free(self) -> int:
        return self.np - self.used if not (self.offline or self.down) else 0

    @property
    def idle(self) -> bool:
        return not self.jobs

    def room(self, chunk: Chunk, empty: bool = False, held: tuple[int, int, int] = (0, 0, 0)) -> int:
        """How many cores of a spread ``chunk`` fit here now, or for a node part 1 if one node of
        it fits, else 0. ``empty``: as if no job were here; ``held``: cores, MiB and GPUs the
        same job already takes here (not free for its other parts)."""
        if chunk.properties and not set(chunk.properties).issubset(self.properties):
            return 0
        cores, mem, gpus = self.np - held[0], self.mem - held[1], self.gpus - held[2]
        if not empty:
            cores -= self.used
            mem -= self.used_mem
            gpus -= self.used_gpus
        if chunk.spread:
            if chunk.mem_mb and self.mem:
                cores = min(cores, mem // chunk.mem_mb)
            if chunk.gpus:
                cores = min(cores, gpus // chunk.gpus)
            return max(0, cores)
        if cores < chunk.ppn or gpus < chunk.gpus or (chunk.mem_mb and self.mem and mem < chunk.mem_mb):
            return 0
        return 1

    def model(self) -> Node:
        """The node as ``pbsnodes -x`` would describe it (cached until it changes)."""
        if self._model is None:
            if self.down:
                state = frozenset({DOWN, OFFLINE}) if self.offline else frozenset({DOWN})
            elif self.offline:
                state = frozenset({OFFLINE, JOB_EXCLUSIVE}) if self.used >= self.np else frozenset({OFFLINE})
            else:
                state = _FULL if self.used >= self.np else _FREE
            self._model = Node(name=self.name, np=self.np, state=state, jobs=tuple(self.jobs),
                               used_slots=self.used, note=self.note, properties=self.properties,
                               mem_mb=self.mem, gpus=self.gpus)
        return self._model


class Cluster:
    """Nodes, and the cores, memory and GPUs jobs hold on them."""

    def __init__(self) -> None:
        self.nodes: dict[str, SimNode] = {}
        self.free_total = 0      # free cores on usable nodes
        self.free_gpus = 0       # free GPUs on usable nodes
        self.usable_cores = 0    # all cores of usable nodes
        self.largest_usable = 0  # np of the largest usable node (recomputed on change)
        self.mem_known = 0       # usable nodes whose memory is known (a limit)
        self._free_orders: list[int] = []  # orders of usable nodes with free cores, sorted
        self._by_order: dict[int, SimNode] = {}
        self._next = 0
        # Node values for snapshots, in node order; only changed nodes are rebuilt.
        self._model_list: list[Node] | None = None
        self._positions: dict[str, int] = {}
        self._stale: dict[str, SimNode] = {}
        self._models: tuple[Node, ...] | None = None
        # fits_when_empty of jobs with asks, until the usable nodes change.
        self._empty_memo: dict[tuple[Chunk, ...], bool] = {}

    # -- nodes -----------------------------------------------------------------------------------
    def add(self, name: NodeName, np: int, note: str = "", cloud: str | None = None,
            instance: InstanceId | None = None, down: bool = False, mem: int = 0, gpus: int = 0,
            properties: tuple[str, ...] = ()) -> SimNode:
        node = SimNode(name, np, self._next, note, cloud, instance, down, mem, gpus, properties)
        self._next += 1
        self.nodes[name] = node
        self._by_order[node.order] = node
        if node.usable:
            self._gain(node)
        if self._model_list is not None:
            self._positions[name] = len(self._model_list)
            self._model_list.append(node.model())
        self._models = None
        return node

    def remove(self, name: str) -> None:
        node = self.nodes.pop(name)
        if node.usable:
            self._lose(node)
        del self._by_order[node.order]
        self._stale.pop(name, None)
        self._model_list = None
        self._models = None

    def set_offline(self, node: SimNode, offline: bool, note: str) -> None:
        was = node.usable
        node.offline = offline
        node.note = note
        self._usable_changed(node, was)
        self._touch(node)

    def set_down(self, node: SimNode, down: bool) -> None:
        was = node.usable
        node.down = down
        self._usable_changed(node, was)
        self._touch(node)

    def _usable_changed(self, node: SimNode, was: bool) -> None:
        if was and not node.usable:
            self._lose(node)
        elif node.usable and not was:
            self._gain(node)

    def _gain(self, node: SimNode) -> None:
        self.usable_cores += node.np
        free = node.np - node.used
        self.free_total += free
        self.free_gpus += node.gpus - node.used_gpus
        if node.mem:
            self.mem_known += 1
        if free > 0:
            insort(self._free_orders, node.order)
        self.largest_usable = max(self.largest_usable, node.np)
        if self._empty_memo:
            self._empty_memo.clear()

    def _lose(self, node: SimNode) -> None:
        self.usable_cores -= node.np
        free = node.np - node.used
        self.free_total -= free
        self.free_gpus -= node.gpus - node.used_gpus
        if node.mem:
            self.mem_known -= 1
        if free > 0:
            self._drop_order(node.order)
        if node.np >= self.largest_usable:
            self.largest_usable = max((n.np for n in self.nodes.values() if n.usable and n is not node),
                                      default=0)
        if self._empty_memo:
            self._empty_memo.clear()

    def _drop_order(self, order: int) -> None:
        at = bisect_left(self._free_orders, order)
        if at < len(self._free_orders) and self._free_orders[at] == order:
            del self._free_orders[at]

    def _touch(self, node: SimNode) -> None:
        node._model = None
        self._stale[node.name] = node
        self._models = None

    def models(self) -> tuple[Node, ...]:
        """Every node as a snapshot holds them, in node order."""
        if self._models is None:
            if self._model_list is None:
                self._model_list = [n.model() for n in self.nodes.values()]
                self._positions = {name: i for i, name in enumerate(self.nodes)}
            else:
                models, positions = self._model_list, self._positions
                for name, node in self._stale.items():
                    models[positions[name]] = node.model()
            self._stale.clear()
            self._models = tuple(self._model_list)
        return self._models

    # -- jobs ------------------------------------------------------------------------------------
    def _shaped(self, asks: int) -> bool:
        return asks == HARD or (asks == MEMORY and self.mem_known > 0)

    def place(self, cores: int, chunks: tuple[Chunk, ...], asks: int = PLAIN,
              plain: tuple[Chunk, ...] | None = None) -> list[Share] | None:
        """Where a job would go now (first nodes with room, in node order), or None if it does
        not fit. ``asks`` is :func:`asks_of` the chunks and ``plain`` their
        :func:`plain_chunks`; a job placed by cores alone (PLAIN, or memory while no usable node
        has a known memory) is placed by ``plain`` when given. Nothing changes until
        :meth:`take`."""
        if cores > self.free_total:
            return None
        if asks and self._shaped(asks):
            return self._place_shaped(chunks)
        if plain is not None:
            chunks = plain
        by_order = self._by_order
        if not chunks:
            out = []
            need = cores
            for order in self._free_orders:
                node = by_order[order]
                use = node.np - node.used
                if use > need:
                    use = need
                out.append((node, use, 0, 0))
                need -= use
                if need == 0:
                    return out
            return None
        return self._place_chunks(chunks)

    def _place_chunks(self, chunks: tuple[Chunk, ...]) -> list[Share] | None:
        units = sorted((c.ppn for c in chunks if not c.spread for _ in range(c.count)), reverse=True)
        spread = sum(c.count * c.ppn for c in chunks if c.spread)
        taken: dict[int, int] = {}  # order -> cores taken by this job
        orders = self._free_orders
        by_order = self._by_order
        for ppn in units:
            for order in orders:
                if order in taken:
                    continue
                node = by_order[order]
                if node.np - node.used >= ppn:
                    taken[order] = ppn
                    break
            else:
                return None
        for order in orders:  # procs parts: anywhere, the job's own nodes included
            if spread == 0:
                break
            node = by_order[order]
            room = node.np - node.used - taken.get(order, 0)
            use = min(room, spread)
            if use > 0:
                taken[order] = taken.get(order, 0) + use
                spread -= use
        if spread:
            return None
        return [(by_order[o], c, 0, 0) for o, c in sorted(taken.items())]

    def _place_shaped(self, chunks: tuple[Chunk, ...]) -> list[Share] | None:
        """Placement of parts that ask for memory, GPUs or properties: node parts first (the
        largest first, each on a node of its own), then spread cores anywhere with room."""
        gpus = sum(c.gpus * (c.cores if c.spread else c.count) for c in chunks)
        if gpus > self.free_gpus:
            return None
        taken = self._assign(chunks, [self._by_order[o] for o in self._free_orders], empty=False)
        if taken is None:
            return None
        by_order = self._by_order
        return [(by_order[o], c, m, g) for o, (c, m, g) in sorted(taken.items())]

    @staticmethod
    def _assign(chunks: tuple[Chunk, ...], nodes: list[SimNode],
                empty: bool) -> dict[int, tuple[int, int, int]] | None:
        """First-fit of every part on ``nodes`` (in node order): order -> (cores, MiB, GPUs)
        taken, or None. ``empty``: as if every node were free."""
        units = sorted((c for c in chunks if not c.spread for _ in range(c.count)),
                       key=lambda c: (c.ppn, c.gpus, c.mem_mb, len(c.properties)), reverse=True)
        taken: dict[int, tuple[int, int, int]] = {}
        for unit in units:
            for node in nodes:
                if node.order not in taken and node.room(unit, empty):
                    taken[node.order] = (unit.ppn, unit.mem_mb, unit.gpus)
                    break
            else:
                return None
        for part in chunks:
            if not part.spread:
                continue
            need = part.cores
            for node in nodes:
                held = taken.get(node.order, _NOTHING)
                use = min(node.room(part, empty, held), need)
                if use > 0:
                    taken[node.order] = (held[0] + use, held[1] + use * part.mem_mb, held[2] + use * part.gpus)
                    need -= use
                    if need == 0:
                        break
            if need:
                return None
        return taken

    def take(self, job_id: JobId, alloc: Iterable[Share]) -> None:
        """Start a job on what :meth:`place` found."""
        for node, cores, mem, gpus in alloc:
            node.used += cores
            node.jobs[job_id] = node.jobs.get(job_id, 0) + cores
            self.free_total -= cores
            if mem or gpus:
                node.used_mem += mem
                node.used_gpus += gpus
                self.free_gpus -= gpus
            if node.used >= node.np:
                self._drop_order(node.order)
            self._touch(node)

    def release(self, job_id: JobId, alloc: Iterable[Share]) -> None:
        """A job ended: give back what it held (on nodes still in the cluster)."""
        for node, cores, mem, gpus in alloc:
            if node.jobs.pop(job_id, None) is None:
                continue
            was_full = node.used >= node.np
            node.used -= cores
            if mem or gpus:
                node.used_mem -= mem
                node.used_gpus -= gpus
            if node.usable:
                self.free_total += cores
                self.free_gpus += gpus
                if was_full and node.used < node.np:
                    insort(self._free_orders, node.order)
            self._touch(node)

    def fits_when_empty(self, cores: int, chunks: tuple[Chunk, ...], asks: int = PLAIN) -> bool:
        """Could the job run on the usable nodes there are now, if they were all free?"""
        if cores > self.usable_cores:
            return False
        if asks and self._shaped(asks):
            known = self._empty_memo.get(chunks)
            if known is None:
                usable = [n for n in self.nodes.values() if n.usable]
                usable.sort(key=lambda n: n.order)
                known = self._empty_memo[chunks] = self._assign(chunks, usable, empty=True) is not None
            return known
        if chunks:
            widest = max((c.ppn for c in chunks if not c.spread), default=0)
            if widest > self.largest_usable:
                return False
            count = sum(c.count for c in chunks if not c.spread)
            if count > sum(1 for n in self.nodes.values() if n.usable):
                return False
        return True


class Possible:
    """The most the cluster can ever be: its static nodes and every cloud at ``max_instances``,
    each instance with its cloud's cores, memory, GPUs and properties."""

    def __init__(self, static: Iterable[SimNode], clouds: Iterable[CloudState]):
        static = list(static)
        clouds = list(clouds)
        # The cores-only figures, as the policies' limits count them.
        self.widest = max([0, *(n.np for n in static), *(c.instance_cores for c in clouds)])
        self.nodes = len(static) + sum(c.max_instances for c in clouds)
        self.cores = sum(n.np for n in static) + sum(c.max_instances * c.instance_cores for c in clouds)
        # One node of each shape, and how many of them there can be.
        kinds: dict[tuple[int, int, int, tuple[str, ...]], int] = {}
        for n in static:
            key = (n.np, n.mem, n.gpus, n.properties)
            kinds[key] = kinds.get(key, 0) + 1
        for c in clouds:
            key = (c.instance_cores, c.instance_memory_mb, c.instance_gpus, c.node_properties)
            kinds[key] = kinds.get(key, 0) + c.max_instances
        self.kinds = [(SimNode(NodeName(""), np, 0, mem=mem, gpus=gpus, properties=props), count)
                      for (np, mem, gpus, props), count in kinds.items() if count > 0]

    def never(self, cores: int, chunks: tuple[Chunk, ...], asks: int = PLAIN) -> bool:
        """Can the job never run, whatever the policy launches? Judged part by part: each part
        that asks for memory, GPUs or properties must find enough nodes (or cores, for a spread
        part) of the shapes that can hold it."""
        parts = [c for c in chunks if not c.spread]
        if max((c.ppn for c in parts), default=0) > self.widest:
            return True
        if sum(c.count for c in parts) > self.nodes or cores > self.cores:
            return True
        if asks == PLAIN:
            return False
        for chunk in chunks:
            if not (chunk.mem_mb or chunk.gpus or chunk.properties):
                continue
            offered = sum(node.room(chunk, empty=True) * count for node, count in self.kinds)
            if offered < (chunk.cores if chunk.spread else chunk.count):
                return True
        return False
