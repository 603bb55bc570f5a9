"""Facts every policy derives from a snapshot: which nodes are Phorque's, what is pending, what
is paid for. Computed once per evaluation, read by the lifecycle rules and the policies.

Ownership follows the design's invariant 2: a Torque node is Phorque's when the state store
records it as a node Phorque created for an instance of its groups, or (the state lost) when it
is the DNS name of a live instance of one of its groups. A note is no proof: anyone allowed to
run ``pbsnodes -N`` can write ``phorque:`` on a static node, so a marked node that is neither is
reported and never touched. A node that is offline without Phorque's *draining* note was set
offline by an administrator and is left alone, whatever stage the state store remembers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter, is_
from typing import Any, Generic, TypeVar, cast, overload

from phorque.core.model import (
    EXITING,
    NOTE_MARK,
    QUEUED,
    RUNNING,
    Chunk,
    CloudState,
    Health,
    Instance,
    InstanceState,
    Job,
    KindKey,
    Node,
    Owned,
    Snapshot,
    Stage,
)
from phorque.core.queue_index import is_refused, queue_of
from phorque.policy.packing import UNLIMITED

_T = TypeVar("_T")


class cached_property(Generic[_T]):  # noqa: N801 (named as the functools one it replaces)
    """``functools.cached_property`` without its lock (Python 3.11 takes one at every first
    read): a View is read by one thread, and the replay builds one per evaluation, hundreds of
    thousands of times. The value is computed at the first read and kept in the instance."""

    def __init__(self, func: Callable[[Any], _T]):
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, cls: type | None = None) -> cached_property[_T]: ...

    @overload
    def __get__(self, obj: object, cls: type | None = None) -> _T: ...

    def __get__(self, obj: object | None, cls: type | None = None) -> _T | cached_property[_T]:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.func(obj)
        return value

#: The note Phorque puts on a node it is draining (after :data:`NOTE_MARK`).
DRAIN_WORD = "draining"
JOIN_WORD = "joined"


def drain_note(reason: str) -> str:
    return f"{NOTE_MARK} {DRAIN_WORD}: {reason}"


def join_note(cloud: str, instance: str) -> str:
    return f"{NOTE_MARK} {JOIN_WORD} {instance} ({cloud})"


def is_drain_note(note: str) -> bool:
    return note.startswith(f"{NOTE_MARK} {DRAIN_WORD}")


@dataclass(frozen=True, slots=True)
class CloudNode:
    """A Phorque instance and what Torque knows of it (``node`` is None until it joined).

    The flags below are derived once per value: the lifecycle rules and the policies ask them of
    every instance at every evaluation, and a :class:`ViewMemo` hands the same value to the
    next evaluation while its instance, node, record and cloud are the same.
    """

    cloud: CloudState
    instance: Instance
    node: Node | None
    owned: Owned | None
    #: Phorque has offlined it: offline with Phorque's draining note. A draining stage in the
    #: state store is not enough: an administrator may have offlined the node with a note of
    #: their own since (or while Phorque was down), and their offline wins.
    draining: bool = field(init=False, repr=False, compare=False)
    #: Joined, up, idle and not offline.
    idle_up: bool = field(init=False, repr=False, compare=False)
    #: Joined, not offline, up or busy, neither failed nor being terminated: none of the
    #: lifecycle's instance rules has anything to do.
    settled: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        node, inst, owned = self.node, self.instance, self.owned
        offline = node is not None and node.is_offline
        object.__setattr__(self, "draining", node is not None and offline and is_drain_note(node.note))
        up = node is not None and not node.is_down
        object.__setattr__(self, "idle_up", node is not None and up and node.is_idle and not offline)
        object.__setattr__(self, "settled", (
            node is not None and bool(inst.id) and not offline and inst.state != InstanceState.FAILED
            and (owned is None or owned.stage != Stage.TERMINATING) and (up or not node.is_idle)))

    @property
    def name(self) -> str | None:
        return self.node.name if self.node else self.instance.node_name

    @property
    def is_up(self) -> bool:
        """Joined and usable or busy: it counts as cluster capacity."""
        return self.node is not None and not self.node.is_down

    @property
    def admin_offline(self) -> bool:
        """Offline, but not by Phorque nor by Torque itself: an administrator's decision, left
        alone. A node Torque has just created is offline until its moms know it; it is booting."""
        return (self.node is not None and self.node.is_offline and not self.draining
                and not self.node.is_new)

    @property
    def busy(self) -> bool:
        return self.node is not None and not self.node.is_idle

    def age(self, now: float) -> float:
        start = self.instance.launch_time
        if start is None and self.owned is not None:
            start = self.owned.launch_time or self.owned.first_seen
        return 0.0 if start is None else max(0.0, now - start)

    def charge_left(self, now: float) -> float:
        """Seconds until the next billing boundary (0 for per-second billing)."""
        period = self.cloud.charge_time_secs
        if period <= 0:
            return 0.0
        return period - (self.age(now) % period)


class ViewMemo:
    """What one view hands to the next (a policy keeps one), so that what did not change is
    not derived again: the cloud nodes it built, reused while their instance, node, record and
    cloud are the very same values; and the facts that follow from the snapshot's structure
    alone (which instances, records and node names there are), reused while the next
    snapshot has the same clouds and records (the same values) and the same node names.

    Snapshots are made of immutable values, so the same values give the same facts: the memo
    never changes a result, it only spares rebuilding what did not change. The replay
    simulator hands every value that did not change from one snapshot to the next; the daemon
    reads everything afresh, and the memo then only costs the comparison."""

    __slots__ = ("cloud_nodes", "clouds", "owned", "recorded", "names", "facts")

    def __init__(self) -> None:
        self.cloud_nodes: dict[str, CloudNode] = {}
        self.clouds: tuple[CloudState, ...] = ()
        self.owned: tuple[Owned, ...] | None = None
        self.recorded: frozenset[str] | None = None
        self.names: object = None
        self.facts: dict[str, object] = {}


_MISSING = object()
#: The structural fact "cloud_nodes": each live instance's node name, and the values built.
_CloudNodesFact = tuple[list[str | None], tuple[CloudNode, ...]]
_RUNNING = (RUNNING, EXITING)
_NAME = attrgetter("name")


@dataclass
class View:
    """Derived, read-only facts about one snapshot."""

    snapshot: Snapshot
    queues: frozenset[str] | None = None
    memo: ViewMemo | None = None

    @property
    def now(self) -> float:
        return self.snapshot.now

    @cached_property
    def _queue(self) -> tuple[tuple[Job, ...], tuple[Job, ...], Mapping[KindKey, tuple[int, Job]]]:
        """The queued jobs in the scheduler's order, the refused ones and the queued kinds: the
        live view's, kept sorted between evaluations, or derived from the snapshot's jobs."""
        index = self.snapshot.queue_index
        if index is not None:
            return index.queued, index.refused, index.kinds
        return queue_of(self.snapshot.jobs, self.snapshot.nodes)

    @cached_property
    def _other_queues(self) -> bool:
        """Are there queued jobs in queues Phorque does not serve (``queue_name``)?"""
        queues = self.queues
        return queues is not None and not all(kind[2] in queues for kind in self._queue[2])

    @cached_property
    def queued(self) -> tuple[Job, ...]:
        """Queued jobs in the order Torque's FIFO would consider them.

        qstat and pbsnodes are two reads: a job that started between them is queued in the one
        and on a node in the other. It is running, and needs no new instance.
        """
        queued = self._queue[0]
        if self._other_queues:
            assert self.queues is not None
            return tuple(j for j in queued if j.queue in self.queues)
        return queued

    @cached_property
    def queued_kinds(self) -> Mapping[KindKey, tuple[int, Job]]:
        """How many of ``queued`` there are of each kind, and one of them: a policy may stop
        reading the queue once no job left in it can change its plan."""
        kinds = self._queue[2]
        if self._other_queues:
            assert self.queues is not None
            return {kind: found for kind, found in kinds.items() if kind[2] in self.queues}
        return kinds

    @cached_property
    def refused(self) -> tuple[Job, ...]:
        """Queued jobs pbs_server refuses to start on any node (see ``Job.refused_by_server``):
        no instance is launched for them, and the plan names them."""
        index = self.snapshot.queue_index
        if index is not None:
            refused = index.refused
        else:  # (not from _queue: a policy that reads no queue, LocalOnly, sorts none for this)
            refused = tuple(j for j in self.snapshot.jobs if j.state == QUEUED and is_refused(j))
        if self.queues is None or not refused:
            return refused
        return tuple(j for j in refused if j.queue in self.queues)

    @cached_property
    def running(self) -> tuple[Job, ...]:
        index = self.snapshot.queue_index
        if index is not None:
            return index.running
        return tuple(j for j in self.snapshot.jobs if j.state in _RUNNING)  # is_running, inline

    @cached_property
    def nodes_by_name(self) -> dict[str, Node]:
        nodes = self.snapshot.nodes
        # (Built at every evaluation: map and zip, not a comprehension.)
        return dict(zip(map(_NAME, nodes), nodes, strict=True))

    @cached_property
    def owned_by_instance(self) -> dict[str, Owned]:
        return {o.instance_id: o for o in self.snapshot.owned if o.instance_id}

    @cached_property
    def known_clouds(self) -> tuple[CloudState, ...]:
        """Clouds whose group could be read this time (their instance lists are complete)."""
        return tuple(c for c in self.snapshot.clouds if c.health != Health.UNREACHABLE)

    @cached_property
    def _facts(self) -> dict[str, object] | None:
        """The memo's structural facts when this snapshot has the structure of the one before
        (the same clouds and records, the same node names); else a fresh dict the memo keeps
        for the next view. None without a memo."""
        memo = self.memo
        if memo is None:
            return None
        snap, names = self.snapshot, self.nodes_by_name.keys()
        if not (snap.owned is memo.owned and snap.recorded_nodes is memo.recorded
                and len(snap.clouds) == len(memo.clouds)
                and all(map(is_, snap.clouds, memo.clouds))
                and names == memo.names):
            memo.clouds, memo.owned, memo.recorded, memo.names = snap.clouds, snap.owned, snap.recorded_nodes, names
            memo.facts = {}
        return memo.facts

    def _structural(self, name: str, derive: Callable[[], _T]) -> _T:
        """``derive()``, or what it gave for a snapshot of the same structure."""
        facts = self._facts
        if facts is None:
            return derive()
        value = facts.get(name, _MISSING)
        if value is _MISSING:
            value = facts[name] = derive()
        return cast(_T, value)  # each name is kept by one derive, of one type

    @cached_property
    def cloud_nodes(self) -> tuple[CloudNode, ...]:
        """Every live instance of Phorque's groups, joined with its Torque node if any."""
        facts = self._facts
        known = facts.get("cloud_nodes") if facts is not None else None
        if known is not None and facts is not None:
            # The same instances and records: only their nodes may be other values now.
            names, before = cast(_CloudNodesFact, known)  # as stored below
            nodes = self.nodes_by_name
            out: list[CloudNode] | None = None
            for k, name in enumerate(names):
                node = nodes.get(name) if name else None
                cn = before[k]
                if node is not cn.node:
                    if out is None:
                        out = list(before)
                    out[k] = CloudNode(cn.cloud, cn.instance, node, cn.owned)
            result = before if out is None else tuple(out)
            facts["cloud_nodes"] = (names, result)
            return result
        result, names = self._build_cloud_nodes()
        if facts is not None:
            facts["cloud_nodes"] = (names, result)
        return result

    def _build_cloud_nodes(self) -> tuple[tuple[CloudNode, ...], list[str | None]]:
        out = []
        names: list[str | None] = []
        owned_by, nodes = self.owned_by_instance, self.nodes_by_name
        before: dict[str, CloudNode] = self.memo.cloud_nodes if self.memo is not None else {}
        built: dict[str, CloudNode] = {}
        gone = InstanceState.GONE
        for cloud in self.known_clouds:
            for inst in cloud.instances:
                if inst.state == gone:
                    continue
                owned = owned_by.get(inst.id)
                name = inst.node_name or (owned.node if owned else None)
                node = nodes.get(name) if name else None
                cn = before.get(inst.id)
                if cn is None or cn.instance is not inst or cn.node is not node or cn.owned is not owned \
                        or cn.cloud is not cloud:
                    cn = CloudNode(cloud, inst, node, owned)
                built[inst.id] = cn
                out.append(cn)
                names.append(name)
        if self.memo is not None:
            self.memo.cloud_nodes = built
        return tuple(out), names

    @cached_property
    def interrupted(self) -> tuple[tuple[CloudState, Instance, Node | None], ...]:
        """Instances the cloud took back (a spot interruption), with their Torque node if it is
        still listed."""
        out = []
        for cloud in self.known_clouds:
            for inst in cloud.interrupted:
                name = self.snapshot.gone_nodes.get(inst.id) or inst.node_name
                out.append((cloud, inst, self.nodes_by_name.get(name) if name else None))
        return tuple(out)

    @cached_property
    def joined_names(self) -> frozenset[str]:
        """Torque nodes of live instances of Phorque's groups."""
        return self._structural("joined_names", lambda: frozenset(
            cn.node.name for cn in self.cloud_nodes if cn.node is not None))

    @cached_property
    def owned_node_names(self) -> frozenset[str]:
        """Torque nodes that are Phorque's: live instances' names and the state's records."""
        return self._structural("owned_node_names", self._owned_node_names)

    def _owned_node_names(self) -> frozenset[str]:
        names = set(self.joined_names)
        names.update(o.node for o in self.snapshot.owned if o.node and o.stage.is_live)
        names.update(self.snapshot.recorded_nodes)
        return frozenset(n for n in names if n in self.nodes_by_name)

    @cached_property
    def unowned_marked(self) -> tuple[Node, ...]:
        """Nodes with a ``phorque:`` note that Phorque has no record of: reported, not touched."""
        owned = self.owned_node_names
        # A node without a note (most static nodes) is not marked: skip it at once.
        return tuple(n for n in self.snapshot.nodes
                     if n.note and n.name not in owned and n.marked_by_phorque)

    def is_owned(self, node_name: str) -> bool:
        return node_name in self.owned_node_names

    @cached_property
    def static_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.snapshot.nodes if n.name not in self.owned_node_names)

    @cached_property
    def orphan_nodes(self) -> tuple[Node, ...]:
        """Phorque's nodes whose instance is not a live member of any (readable) group."""
        return tuple(self.nodes_by_name[name] for name in self._structural("orphans", self._orphan_names))

    def _orphan_names(self) -> tuple[str, ...]:
        live = self.joined_names
        unknown_clouds = {c.name for c in self.snapshot.clouds if c.health == Health.UNREACHABLE}
        configured = {c.name for c in self.snapshot.clouds}
        out = []
        for name in sorted(self.owned_node_names - live):
            owner = next((o for o in self.snapshot.owned if o.node == name), None)
            if owner is not None and (owner.cloud in unknown_clouds or owner.cloud not in configured):
                # Its cloud could not be read, or is not configured now: absence proves nothing,
                # and its instance may still run.
                continue
            if owner is None and unknown_clouds:
                continue
            out.append(name)
        return tuple(out)

    # -- capacity ------------------------------------------------------------------------
    def node_shape(self, node: Node) -> tuple[int, int, frozenset[str]]:
        """Memory (MiB, UNLIMITED when not known), GPUs and properties of ``node``. Phorque's
        nodes are what their cloud declares (what the launch counted on: the ``physmem`` a mom
        reports is a little less than the instance's memory), static nodes what Torque reports.
        Asked per node (only the policies that pack ask, and only of the nodes they pack on);
        each answer is one value per distinct shape."""
        cn = self._cloud_node_of.get(node.name)
        if cn is None:
            return _static_shape(node.mem_mb, node.gpus, node.properties)
        cloud, own = cn.cloud, cn.node
        assert own is not None
        return _cloud_shape(cloud.instance_memory_mb, cloud.instance_gpus, own.gpus,
                            own.properties or cloud.node_properties)

    @cached_property
    def _cloud_node_of(self) -> dict[str, CloudNode]:
        """The cloud node of each Torque node that is one (the last one, should two say so)."""
        return {cn.node.name: cn for cn in self.cloud_nodes if cn.node is not None}

    @property
    def node_shapes(self) -> dict[str, tuple[int, int, frozenset[str]]]:
        """:meth:`node_shape` of every node, by name."""
        return {n.name: self.node_shape(n) for n in self.snapshot.nodes}

    @cached_property
    def held_by_jobs(self) -> dict[str, tuple[int, int]]:
        """Memory (MiB) and GPUs that running jobs hold on each of their nodes: on every host of
        a job, the largest per-node ask of its parts (Torque does not say which part is where)."""
        out: dict[str, tuple[int, int]] = {}
        # Jobs of one request share their chunks (one tuple): each is looked at once, by its
        # identity (the jobs outlive this loop), not hashed part by part for every job.
        per_request: dict[int, tuple[int, int]] = {}
        for job in self.running:
            if not job.exec_hosts or not (job.chunks or job.mem_mb):
                continue  # cores anywhere, no memory asked: it holds nothing but cores
            if job.chunks:
                held = per_request.get(id(job.chunks))
                if held is None:
                    held = per_request[id(job.chunks)] = _held_per_node(job.chunks)
                mem, gpus = held
            else:
                mem, gpus = 0, 0  # cores anywhere: no part needs a node of its own
            if not mem and job.mem_mb:
                mem = -(-job.mem_mb // len(job.exec_hosts))
            if not (mem or gpus):
                continue
            for host in job.exec_hosts:
                held_mem, held_gpus = out.get(host, (0, 0))
                out[host] = (held_mem + mem, held_gpus + gpus)
        return out

    def free_shape(self, node: Node, free_cores: int) -> tuple[int, int, int, frozenset[str]]:
        """``(cores, memory, GPUs, properties)`` free on ``node`` for packing; memory is
        ``UNLIMITED`` when not known."""
        mem, gpus, props = self.node_shape(node)
        if mem == UNLIMITED and not gpus:
            return free_cores, mem, gpus, props  # nothing a running job holds is counted here
        held = self.held_by_jobs.get(node.name)
        if held is None:
            return free_cores, mem, gpus, props
        return (free_cores, mem if mem == UNLIMITED else max(0, mem - held[0]),
                max(0, gpus - held[1]), props)

    @cached_property
    def _as_nodes(self) -> dict[str, int]:
        """Per cloud, its live instances that are Torque nodes (one pass for every cloud)."""
        return self._structural("as_nodes", self._count_as_nodes)

    def _count_as_nodes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for cn in self.cloud_nodes:
            if cn.node is not None:
                name = cn.cloud.name
                out[name] = out.get(name, 0) + 1
        return out

    @cached_property
    def clouds_with_down_nodes(self) -> frozenset[str]:
        """Clouds with a live instance whose Torque node is down (booting, or its mom gone)."""
        return frozenset(cn.cloud.name for cn in self.cloud_nodes if cn.node is not None and cn.node.is_down)

    def pending_count(self, cloud: CloudState) -> int:
        """Instances asked for or starting that are not yet Torque nodes."""
        pending = self._pending
        count = pending.get(cloud.name)
        if count is None:
            count = pending[cloud.name] = max(0, cloud.capacity - self._as_nodes.get(cloud.name, 0))
        return count

    @cached_property
    def _pending(self) -> dict[str, int]:
        """``pending_count`` per cloud name, once per view (the lifecycle and the policies ask it
        of every cloud several times per evaluation)."""
        return {}

    @cached_property
    def pending_cores(self) -> int:
        """Cores of instances that have not joined Torque yet (requested, pending, unjoined)."""
        return sum(self.pending_count(c) * c.instance_cores for c in self.known_clouds)

    @cached_property
    def spend_rate(self) -> float:
        """Money per hour for every running and requested instance, over all clouds."""
        return self.snapshot.spend_rate

    def affordable(self, cloud: CloudState, budget: float | None, extra_spend: float = 0.0) -> int:
        """How many more instances of ``cloud`` fit under the budget and ``max_instances``."""
        room = cloud.headroom
        if budget is None or cloud.price <= 0:
            return room
        left = budget - self.spend_rate - extra_spend
        if left < cloud.price - 1e-9:
            return 0
        return min(room, int(math.floor(left / cloud.price + 1e-9)))


@lru_cache(maxsize=4096)
def _props(properties: tuple[str, ...]) -> frozenset[str]:
    return frozenset(properties)


@lru_cache(maxsize=4096)
def _static_shape(mem_mb: int, gpus: int, properties: tuple[str, ...]) -> tuple[int, int, frozenset[str]]:
    return (mem_mb if mem_mb > 0 else UNLIMITED, gpus, _props(properties))


@lru_cache(maxsize=4096)
def _cloud_shape(instance_mem_mb: int, instance_gpus: int, node_gpus: int,
                 properties: tuple[str, ...]) -> tuple[int, int, frozenset[str]]:
    return (instance_mem_mb if instance_mem_mb > 0 else UNLIMITED, max(instance_gpus, node_gpus),
            _props(properties))


@lru_cache(maxsize=4096)
def _held_per_node(shape: tuple[Chunk, ...]) -> tuple[int, int]:
    parts = [c for c in shape if not c.spread]
    return max((c.mem_mb for c in parts), default=0), max((c.gpus for c in parts), default=0)
