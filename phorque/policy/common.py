"""Building blocks the policies share: retiring a node safely, filling clouds cheapest first,
spotting jobs that can never run."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from phorque.core import plan as p
from phorque.core.model import (
    DOWN,
    FREE,
    SPOT_PROPERTY,
    Chunk,
    CloudState,
    Job,
    KindKey,
    Node,
    asks_spot,
    spot_job,
)
from phorque.policy.base import NOTE_LIMIT
from phorque.policy.lifecycle import Lifecycle
from phorque.policy.packing import Key, holds, offer_key
from phorque.policy.view import CloudNode, View, cached_property


def retire(cn: CloudNode, reason: str) -> list[p.Action]:
    """Drain, terminate and remove a joined instance. The executor terminates only if the node
    is still empty after it was marked offline and read again."""
    assert cn.node is not None
    node, cloud, inst = cn.node.name, cn.cloud.name, cn.instance.id
    return [p.drain(node, reason, cloud=cloud, instance=inst),
            p.terminate(cloud, inst, reason, node=node),
            p.remove(node, reason, cloud=cloud, instance=inst)]


def idle_nodes(view: View, life: Lifecycle) -> list[CloudNode]:
    """Phorque's joined nodes that are up, idle, not draining and not an administrator's."""
    return [cn for cn in view.cloud_nodes
            if cn.idle_up and cn.node is not None  # (idle_up: it has one)
            and cn.instance.id not in life.handled and cn.node.name not in life.handled]


def draining_nodes(view: View, life: Lifecycle) -> list[CloudNode]:
    """Phorque's nodes it has offlined and not yet terminated."""
    return [cn for cn in view.cloud_nodes
            if cn.draining and cn.instance.id not in life.handled and cn.node is not None
            and cn.node.name not in life.handled]


def launch_clouds(view: View, extra: set[str] | None = None) -> list[CloudState]:
    """Clouds a launch may use now, cheapest first (healthy and readable)."""
    skip = extra or set()
    return [c for c in view.known_clouds if c.usable and c.name not in skip]


def cores_to_instances(cores: int, instance_cores: int) -> int:
    return math.ceil(cores / instance_cores) if cores > 0 else 0


def memory_text(mb: int) -> str:
    """``512 GB``, ``1.5 GB``, ``900 MB``: memory as an administrator reads it (1 GB = 1024 MB)."""
    if mb >= 1024:
        return f"{mb / 1024:.4g} GB"
    return f"{mb} MB"


@dataclass(frozen=True)
class Offer:
    """What one static node or one instance of a cloud offers, and the queues it serves."""

    key: Key
    cloud: str | None = None          # None: a static node
    queues: frozenset[str] | None = None
    spot: bool = False

    def serves(self, queue: str) -> bool:
        return self.queues is None or queue in self.queues

    def takes(self, job: Job) -> bool:
        """Could this node or cloud be given ``job`` (a spot cloud: only a job fit for spot)?"""
        return self.serves(job.queue) and (not self.spot or spot_job(job, self.queues is not None))


@dataclass(frozen=True)
class Limits:
    """The most the cluster can ever offer: static nodes plus every cloud at max_instances, and
    the shapes of the nodes and instances there can be."""

    widest: int   # cores of the largest node or instance
    nodes: int
    cores: int
    static: tuple[Node, ...] = ()       # the static nodes
    clouds: tuple[CloudState, ...] = ()

    @classmethod
    def of(cls, view: View) -> Limits:
        clouds = view.snapshot.clouds
        static = view.static_nodes
        return cls(widest=max([0, *(n.np for n in static), *(c.instance_cores for c in clouds)]),
                   nodes=len(static) + sum(c.max_instances for c in clouds),
                   cores=sum(n.np for n in static) + sum(c.max_instances * c.instance_cores for c in clouds),
                   static=static, clouds=clouds)

    @cached_property
    def offers(self) -> tuple[Offer, ...]:
        """Every shape there is or can be: the static nodes', then each cloud's instance."""
        # Static nodes are many, their shapes few: each distinct one is made a key once.
        shapes = {offer_key(*shape) for shape in {(n.np, n.mem_mb, n.gpus, n.properties) for n in self.static}}
        offers = [Offer(k) for k in sorted(shapes, key=_key_order)]
        offers += [Offer(cloud_key(c), c.name, c.queues, c.spot) for c in self.clouds
                   if c.max_instances > 0]
        return tuple(offers)

    @cached_property
    def queues_restricted(self) -> bool:
        """Do some clouds take only some jobs (queues named, or spot capacity)?"""
        return any(c.queues is not None or c.spot for c in self.clouds)


def cloud_key(cloud: CloudState) -> Key:
    """The shape one instance of ``cloud`` offers."""
    return offer_key(cloud.instance_cores, cloud.instance_memory_mb, cloud.instance_gpus,
                     cloud.node_properties)


def _key_order(key: Key) -> tuple[int, int, int, list[str]]:
    return (key[0], key[1], key[2], sorted(key[3]))


#: Why a job that only spot capacity could run is never launched for.
NOT_RERUNNABLE = ("only spot capacity could run it, and it is not rerunnable (qsub -r y): an "
                  "interruption would lose its work")


def never_reason(job: Job, limits: Limits) -> str | None:
    """What in ``job`` no node or instance there can be holds, or None if it could run."""
    widest = max((c.ppn for c in job.shape if not c.spread), default=0)
    if widest > limits.widest:
        return f"it needs {widest} cores on one node, and the largest node or instance has {limits.widest}"
    nodes = sum(c.count for c in job.shape if not c.spread)
    if nodes > limits.nodes:
        return f"it needs {nodes} nodes, and the cluster can have at most {limits.nodes}"
    if job.cores > limits.cores:
        return f"it needs {job.cores} cores, and the cluster can have at most {limits.cores}"
    # Cores alone were checked above; the shapes only matter for a job that asks for more.
    if asks_shape(job) or limits.queues_restricted:
        return misfit(job, limits.offers)
    return None


def misfit(job: Job, offers: tuple[Offer, ...]) -> str | None:
    """Why no node or instance there can be holds some part of ``job`` (None if each part has
    one): the first thing no offer has, else that no offer has it all together."""
    mine = [o for o in offers if o.takes(job)]
    if not mine:
        if any(o.serves(job.queue) for o in offers):
            return NOT_RERUNNABLE
        return f"no static node or cloud serves queue {job.queue!r}"
    if asks_spot(job) and job.rerunnable is not True and any(o.spot for o in offers) and \
            not any(SPOT_PROPERTY in o.key[3] for o in mine):
        return NOT_RERUNNABLE
    for chunk in job.shape:
        cores, mem, _gpus, props = _part_needs(chunk)
        if any(holds(o.key, cores, mem, chunk.gpus, props) for o in mine):
            continue
        per = "per core" if chunk.spread else "per node"
        if mem and not any(o.key[1] >= mem for o in mine):
            top = max(o.key[1] for o in mine)
            return f"it asks for {memory_text(mem)} {per}; the largest {_what(mine)} has {memory_text(top)}"
        if chunk.gpus and not any(o.key[2] >= chunk.gpus for o in mine):
            top = max(o.key[2] for o in mine)
            return f"it asks for {chunk.gpus} GPUs {per}; the most any {_what(mine)} has is {top}"
        missing = sorted(props - frozenset().union(*(o.key[3] for o in mine)))
        if missing:
            return (f"it asks for nodes with {', '.join(missing)}; no {_what(mine)} has "
                    f"{'that property' if len(missing) == 1 else 'those properties'}")
        if not any(o.key[0] >= cores for o in mine):
            return f"it needs {cores} cores on one node, and the largest {_what(mine)} has {max(o.key[0] for o in mine)}"
        asked = [f"{cores} cores"] + ([memory_text(mem)] if mem else []) + \
            ([f"{chunk.gpus} GPUs"] if chunk.gpus else []) + sorted(props)
        return f"no {_what(mine)} has {', '.join(asked)} together"
    return None


def _what(offers: list[Offer]) -> str:
    kinds = {o.cloud is None for o in offers}
    return "node or instance" if len(kinds) == 2 else ("node" if True in kinds else "instance")


def _part_needs(chunk: Chunk) -> tuple[int, int, int, frozenset[str]]:
    cores = 1 if chunk.spread else chunk.ppn
    return cores, chunk.mem_mb, chunk.gpus, frozenset(chunk.properties)


def runs_on(shape: tuple[Chunk, ...], key: Key, *, cores: bool = True) -> bool:
    """Can one node or instance of shape ``key`` hold each part of a job of ``shape``? With
    ``cores=False`` only memory, GPUs and properties are compared (the core-counting policies
    count cores their own way)."""
    for chunk in shape:
        need_cores, mem, gpus, props = _part_needs(chunk)
        if not holds(key, need_cores if cores else 0, mem, gpus, props):
            return False
    return True


def asks_shape(job: Job) -> bool:
    """Does the job ask for more than cores (memory, GPUs or node properties)?"""
    return any(c.mem_mb or c.gpus or c.properties for c in job.shape)


def runnable_kinds(view: View, d_notes: list[str]) -> tuple[list[Job], dict[KindKey, tuple[int, Job]]]:
    """The queued jobs some static node or cloud could ever run, and how many of them there are
    of each kind (and one of them); the others are named in ``d_notes`` (up to NOTE_LIMIT, the
    rest counted)."""
    queued = view.queued
    if not queued:
        return [], {}
    limits = Limits.of(view)
    kinds = view.queued_kinds
    # What never_reason reads of a job is its kind: each kind is judged once.
    judged = {kind: never_reason(one, limits) for kind, (_, one) in kinds.items()}
    counts = {kind: found for kind, found in kinds.items() if judged[kind] is None}
    if len(counts) == len(kinds):
        return list(queued), counts  # every kind can run: no pass over the queue
    out, never = [], 0
    for job in queued:
        reason = judged[(id(job.chunks), job.cores, job.queue, job.rerunnable)]  # its kind
        if reason is None:
            out.append(job)
            continue
        never += 1
        if never <= NOTE_LIMIT:
            d_notes.append(f"job {job.id} can never run: {reason}")
    if never > NOTE_LIMIT:
        d_notes.append(f"... and {never - NOTE_LIMIT} more jobs that can never run")
    return out, counts


_FREE_ONLY = frozenset({FREE})
#: A cloud and a kind of job, for Fit.cloud_runs: the identities of the cloud and of the job's
#: chunks, its cores, queue and rerunnable flag.
_KindKey = tuple[int, int, int, str, bool | None]


@dataclass
class Fit:
    """Which jobs each cloud can run, and which capacity is of use to a set of jobs, without
    counting cores per node (for the policies that count cores in bulk)."""

    view: View
    #: cloud_runs per cloud and kind of job: what it reads of a job is its request (chunks or
    #: cores), queue and rerunnable flag, and queued jobs are many of few kinds. Keyed by
    #: identity; each entry keeps its cloud and chunks alive, so no identity is reused meanwhile.
    _runs: dict[_KindKey, tuple[CloudState, tuple[Chunk, ...], bool]] = field(default_factory=dict,
                                                                             repr=False)

    def cloud_runs(self, cloud: CloudState, job: Job) -> bool:
        key = (id(cloud), id(job.chunks), job.cores, job.queue, job.rerunnable)
        found = self._runs.get(key)
        if found is None:
            found = self._runs[key] = (cloud, job.chunks,
                                       cloud.takes(job) and runs_on(job.shape, cloud_key(cloud)))
        return found[2]

    @staticmethod
    def of_use(jobs: list[Job]) -> Callable[[Key], bool]:
        """Whether a node or instance of a shape could hold some part of ``jobs`` by memory,
        GPUs and properties (memoised per shape: nodes are many, their shapes few)."""
        shapes = {j.shape for j in jobs}
        memo: dict[Key, bool] = {}

        def of_use(key: Key) -> bool:
            found = memo.get(key)
            if found is None:
                found = memo[key] = any(runs_on(s, key, cores=False) for s in shapes)
            return found

        return of_use

    def capacity(self, jobs: list[Job]) -> tuple[int, int, int]:
        """``(free, pending, down)`` cores as the original counted them (whole free nodes,
        instances not joined yet, down nodes), of nodes and instances that could hold some part
        of ``jobs`` by memory, GPUs and properties."""
        view = self.view
        if not any(asks_shape(j) for j in jobs):
            free = sum(n.np for n in view.snapshot.nodes if n.state == _FREE_ONLY)
            down = sum(n.np for n in view.snapshot.nodes if DOWN in n.state)
            return free, view.pending_cores, down
        of_use = self.of_use(jobs)
        free = down = 0
        for node in view.snapshot.nodes:
            if node.state != _FREE_ONLY and DOWN not in node.state:
                continue
            mem, gpus, props = view.node_shape(node)
            if of_use(offer_key(node.np, mem, gpus, props)):
                if DOWN in node.state:
                    down += node.np
                else:
                    free += node.np
        pending = sum(view.pending_count(c) * c.instance_cores for c in view.known_clouds
                      if of_use(cloud_key(c)))
        return free, pending, down
