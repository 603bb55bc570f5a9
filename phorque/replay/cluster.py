"""The simulated Torque cluster: nodes, their free cores, and where a job's cores go.

Nodes are kept in Torque's node order (static nodes first, then cloud nodes in the order they
joined) and a job's cores are taken from the first nodes that have room, as pbs_server allocates.
A ``nodes=N:ppn=M`` part needs N distinct nodes with M free cores each (a part that names a host
counts as one node anywhere: the trace's host names do not exist here); ``procs`` cores, and every
SWF job, take cores anywhere, several per node. Only usable nodes (not offline, not down) get
jobs.

Everything is incremental: the free-core total, the ordered list of nodes with free cores and the
:class:`~phorque.model.Node` values handed to snapshots are updated as jobs start and end.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

from phorque.model import DOWN, FREE, JOB_EXCLUSIVE, OFFLINE, Chunk, Node

_FREE = frozenset({FREE})
_FULL = frozenset({JOB_EXCLUSIVE})


class SimNode:
    """One node: its cores, the jobs on it (id -> cores) and its condition."""

    __slots__ = ("name", "np", "used", "jobs", "offline", "down", "note", "cloud", "instance",
                 "order", "_model")

    def __init__(self, name: str, np: int, order: int, note: str = "", cloud: str | None = None,
                 instance: str | None = None, down: bool = False):
        self.name = name
        self.np = np
        self.used = 0
        self.jobs: dict[str, int] = {}
        self.offline = False
        self.down = down
        self.note = note
        self.cloud = cloud
        self.instance = instance
        self.order = order
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
                               used_slots=self.used, note=self.note)
        return self._model


class Cluster:
    """Nodes, and the cores jobs hold on them."""

    def __init__(self) -> None:
        self.nodes: dict[str, SimNode] = {}
        self.free_total = 0      # free cores on usable nodes
        self.usable_cores = 0    # all cores of usable nodes
        self.largest_usable = 0  # np of the largest usable node (recomputed on change)
        self._free_orders: list[int] = []  # orders of usable nodes with free cores, sorted
        self._by_order: dict[int, SimNode] = {}
        self._next = 0
        # Node values for snapshots, in node order; only changed nodes are rebuilt.
        self._model_list: list[Node] | None = None
        self._positions: dict[str, int] = {}
        self._stale: dict[str, SimNode] = {}
        self._models: tuple[Node, ...] | None = None

    # -- nodes -----------------------------------------------------------------------------------
    def add(self, name: str, np: int, note: str = "", cloud: str | None = None,
            instance: str | None = None, down: bool = False) -> SimNode:
        node = SimNode(name, np, self._next, note, cloud, instance, down)
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
        if free > 0:
            insort(self._free_orders, node.order)
        self.largest_usable = max(self.largest_usable, node.np)

    def _lose(self, node: SimNode) -> None:
        self.usable_cores -= node.np
        free = node.np - node.used
        self.free_total -= free
        if free > 0:
            self._drop_order(node.order)
        if node.np >= self.largest_usable:
            self.largest_usable = max((n.np for n in self.nodes.values() if n.usable and n is not node),
                                      default=0)

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
    def place(self, cores: int, chunks: tuple[Chunk, ...]) -> list[tuple[SimNode, int]] | None:
        """Where a job would go now (first nodes with room, in node order), or None if it does
        not fit. Nothing changes until :meth:`take`."""
        if cores > self.free_total:
            return None
        by_order = self._by_order
        if not chunks:
            out = []
            need = cores
            for order in self._free_orders:
                node = by_order[order]
                use = node.np - node.used
                if use > need:
                    use = need
                out.append((node, use))
                need -= use
                if need == 0:
                    return out
            return None
        return self._place_chunks(chunks)

    def _place_chunks(self, chunks: tuple[Chunk, ...]) -> list[tuple[SimNode, int]] | None:
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
        return [(by_order[o], c) for o, c in sorted(taken.items())]

    def take(self, job_id: str, alloc: Iterable[tuple[SimNode, int]]) -> None:
        """Start a job on the cores :meth:`place` found."""
        for node, cores in alloc:
            node.used += cores
            node.jobs[job_id] = node.jobs.get(job_id, 0) + cores
            self.free_total -= cores
            if node.used >= node.np:
                self._drop_order(node.order)
            self._touch(node)

    def release(self, job_id: str, alloc: Iterable[tuple[SimNode, int]]) -> None:
        """A job ended: give its cores back (to nodes still in the cluster)."""
        for node, cores in alloc:
            if node.jobs.pop(job_id, None) is None:
                continue
            was_full = node.used >= node.np
            node.used -= cores
            if node.usable:
                self.free_total += cores
                if was_full and node.used < node.np:
                    insort(self._free_orders, node.order)
            self._touch(node)

    def fits_when_empty(self, cores: int, chunks: tuple[Chunk, ...]) -> bool:
        """Could the job run on the usable nodes there are now, if they were all free?"""
        if cores > self.usable_cores:
            return False
        if chunks:
            widest = max((c.ppn for c in chunks if not c.spread), default=0)
            if widest > self.largest_usable:
                return False
            count = sum(c.count for c in chunks if not c.spread)
            if count > sum(1 for n in self.nodes.values() if n.usable):
                return False
        return True
