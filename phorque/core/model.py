"""Plain data shared by every part of Phorque: jobs, nodes, cloud instances, the snapshot.

Nothing here does I/O. Adapters (Torque commands, boto3, the state store) turn the outside world
into these values; policies read them; the executor and the simulator act on the plan.
Times are epoch seconds (floats); a snapshot carries its own ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Any, NewType

JobId = NewType("JobId", str)
NodeName = NewType("NodeName", str)
InstanceId = NewType("InstanceId", str)

# Node state bits as Torque prints them (encode_state in attr_node_func.c). "free" means none.
DOWN = "down"
OFFLINE = "offline"
STATE_UNKNOWN = "state-unknown"
RESERVE = "reserve"
JOB_EXCLUSIVE = "job-exclusive"
BUSY = "busy"
FREE = "free"
#: A node just created with ``qmgr create node`` is ``down,offline,MOM-list-not-sent`` until the
#: server has sent the new node list to the moms (about 10 s). That offline is Torque's own, not
#: an administrator's.
MOM_LIST_NOT_SENT = "MOM-list-not-sent"

#: The Torque property every node of a spot section carries: a job asks for spot capacity with
#: it (``-l nodes=1:ppn=4:spot``).
SPOT_PROPERTY = "spot"

#: Phorque writes this at the start of the note of every node it offlines or creates, so an
#: administrator's own offline (any other note) is recognised and left alone.
NOTE_MARK = "phorque:"

#: How pbs_sched's comment starts when pbs_server refused to run the job (fifo.c).
SCHED_PBS_ERROR = "Not Running - PBS Error:"
#: pbs_server's answers to a run request that no new node can change (pbs_error_db.h texts):
#: the request itself is what the server cannot place.
_REQUEST_ERRORS = frozenset({
    "unknown node-attribute",
    "unknown resource",
    "illegal attribute or resource value",
    "job exceeds queue resource limits",
    "invalid syntax",
})

# Torque job states.
QUEUED = "Q"
RUNNING = "R"
EXITING = "E"
COMPLETED = "C"
HELD = "H"
WAITING = "W"
TRANSIT = "T"
SUSPENDED = "S"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One ``+`` part of a ``nodes=`` request: ``count`` nodes with ``ppn`` cores each.

    ``host`` is set when the part names a host (``n1:ppn=2``), which counts as one node.
    ``spread`` marks cores that may land anywhere, several per node (``procs=N``).
    ``mem_mb`` and ``gpus`` are what each node of the part needs (the job's ``mem`` shared out
    by cores, ``pmem`` times ``ppn``, ``gpus=``), ``properties`` the node properties each node
    must have; 0 and () mean none asked. For a spread part they are per core.
    """

    count: int
    ppn: int
    host: str | None = None
    spread: bool = False
    mem_mb: int = 0
    gpus: int = 0
    properties: tuple[str, ...] = ()

    @property
    def cores(self) -> int:
        return self.count * self.ppn


@dataclass(frozen=True, slots=True)
class Job:
    """A Torque job as Phorque needs it."""

    id: JobId
    state: str
    queue: str = ""
    cores: int = 1
    chunks: tuple[Chunk, ...] = ()
    walltime_secs: int | None = None
    remaining_secs: int | None = None
    name: str = ""
    owner: str = ""
    exec_hosts: tuple[NodeName, ...] = ()
    queued_at: float | None = None
    started_at: float | None = None
    gpus: int = 0
    comment: str = ""
    #: What the job asked for, in MiB (``mem`` for the whole job, ``pmem``/``vmem``/``pvmem``
    #: per process, ``-L memory`` per task turned into the whole job's); 0: none asked.
    mem_mb: int = 0
    pmem_mb: int = 0
    vmem_mb: int = 0
    pvmem_mb: int = 0
    #: ``Rerunable`` (qsub -r); None when Torque did not say.
    rerunnable: bool | None = None
    #: The job was submitted with Torque 6's ``-L`` (resource request 2.0).
    request2: bool = False

    @property
    def is_queued(self) -> bool:
        return self.state == QUEUED

    @property
    def is_running(self) -> bool:
        return self.state in (RUNNING, EXITING)

    @property
    def refused_by_server(self) -> str | None:
        """Why pbs_server refuses to start this job whatever nodes there are, from the comment
        the scheduler left when its run request failed (``Not Running - PBS Error: ...``).

        pbs_sched 6.1.3 gets ``Unknown node-attribute`` for every ``procs=N`` job (no ``nodes``
        default is given to it), at every cycle: such a job is not demand for new instances."""
        comment = self.comment
        if not comment.startswith(SCHED_PBS_ERROR):
            return None
        error = comment[len(SCHED_PBS_ERROR):].strip()
        if error.lower() in _REQUEST_ERRORS:
            return error
        # pbs_sched 6.1.3 passes no host list for a -L job, and pbs_server answers "Unknown
        # node" at every cycle. For another job the same words can mean a node went away
        # between the scheduler's look and its run request: that job is still demand.
        if self.request2 and error.lower() == "unknown node":
            return error
        return None

    @property
    def shape(self) -> tuple[Chunk, ...]:
        """The node shape to pack: the chunks, or ``cores`` single cores when none are given."""
        return self.chunks or _spread_shape(self.cores)


@lru_cache(maxsize=4096)
def _spread_shape(cores: int) -> tuple[Chunk, ...]:
    """``cores`` single cores anywhere (one value per size: policies ask every job's shape at
    every evaluation)."""
    return (Chunk(count=cores, ppn=1, spread=True),)


# One set test each instead of a chain of properties: policies ask these of every node at every
# evaluation, and the replay simulator evaluates hundreds of thousands of times.
_UNUSABLE = frozenset({DOWN, STATE_UNKNOWN, OFFLINE, RESERVE})
_NO_FREE_CORES = _UNUSABLE | {JOB_EXCLUSIVE, BUSY}


@dataclass(frozen=True, slots=True)
class Node:
    """A Torque node (``pbsnodes -x``). ``state`` is the set of state words."""

    name: NodeName
    np: int
    state: frozenset[str] = frozenset({FREE})
    jobs: tuple[JobId, ...] = ()
    used_slots: int = 0
    properties: tuple[str, ...] = ()
    note: str = ""
    #: ``physmem`` of the mom's status in MiB (0: not reported), and the node's ``gpus``.
    mem_mb: int = 0
    gpus: int = 0
    # Derived once per value, not fields of the data: policies ask them of every node at every
    # evaluation, and the replay simulator keeps a node's value until the node changes.
    #: Down or state-unknown.
    is_down: bool = field(init=False, repr=False, compare=False)
    #: Can the scheduler start a job here (up and not offline)?
    is_usable: bool = field(init=False, repr=False, compare=False)
    #: No job, no used slot, not job-exclusive (Torque 2.x can say job-exclusive and list no
    #: job: the node is taken all the same).
    is_idle: bool = field(init=False, repr=False, compare=False)
    #: Cores a job could start on now (0 when unusable or full).
    free_cores: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        state = self.state
        object.__setattr__(self, "is_down", DOWN in state or STATE_UNKNOWN in state)
        object.__setattr__(self, "is_usable", state.isdisjoint(_UNUSABLE))
        object.__setattr__(self, "is_idle", not self.jobs and self.used_slots == 0 and JOB_EXCLUSIVE not in state)
        object.__setattr__(self, "free_cores", max(0, self.np - self.used_slots)
                           if state.isdisjoint(_NO_FREE_CORES) else 0)

    @property
    def is_offline(self) -> bool:
        return OFFLINE in self.state

    @property
    def is_new(self) -> bool:
        """Just created: offline by Torque itself until its moms know it (``MOM-list-not-sent``)."""
        return MOM_LIST_NOT_SENT in self.state

    @property
    def marked_by_phorque(self) -> bool:
        """The note looks like Phorque's. Never proof of ownership (anyone may write a note);
        only used to tell Phorque's own offline from an administrator's."""
        return self.note.startswith(NOTE_MARK)


class InstanceState(StrEnum):
    """What an instance is, whatever the cloud's own words for it."""

    REQUESTED = "requested"  # asked for, no VM yet (Phantom's empty instance id)
    PENDING = "pending"      # the VM exists and is starting
    RUNNING = "running"
    FAILED = "failed"        # will never serve: error states, failed health
    GONE = "gone"            # terminating or terminated

    @property
    def is_valid(self) -> bool:
        """Counts against capacity (the original's "valid": pending or running)."""
        return self in (InstanceState.REQUESTED, InstanceState.PENDING, InstanceState.RUNNING)


_VALID_STATES = (InstanceState.REQUESTED, InstanceState.PENDING, InstanceState.RUNNING)


@dataclass(frozen=True, slots=True)
class Instance:
    """An instance of a Phorque group, as the auto-scaling service and EC2 describe it."""

    id: InstanceId
    state: InstanceState
    lifecycle: str = ""
    dns: NodeName | None = None
    private_dns: str | None = None
    launch_time: float | None = None
    #: The cloud's word that it took this instance back (a spot interruption: EC2's state
    #: reason, such as ``Server.SpotInstanceTermination: ...``); empty otherwise.
    interruption: str = ""

    @property
    def node_name(self) -> NodeName | None:
        """The Torque node name this instance gets: a real DNS name, never ``[unknown]``."""
        return self.dns


def asks_spot(job: Job) -> bool:
    """Does the job ask for nodes with the ``spot`` property?"""
    return any(SPOT_PROPERTY in c.properties for c in job.shape)


def spot_job(job: Job, queue_named: bool) -> bool:
    """Can ``job`` be sent to spot capacity: rerunnable, and asking for the ``spot`` property or
    in a queue a spot section names (``queue_named``)? A job Torque did not say is rerunnable
    is not: losing its work is not Phorque's to risk."""
    return job.rerunnable is True and (queue_named or asks_spot(job))


@dataclass(frozen=True, slots=True)
class LaunchFailure:
    """The cloud's own word that its latest launch failed, while instances asked for are missing
    (AWS: a failed scaling activity). ``id`` tells one failure from the next, so that a failure
    is acted on once, however often it is read."""

    id: str
    code: str      # "InsufficientInstanceCapacity" when the cloud has no capacity, else "LaunchFailed"
    message: str   # the cloud's words (its StatusMessage)

    @property
    def no_capacity(self) -> bool:
        return self.code == "InsufficientInstanceCapacity"


class Health(StrEnum):
    OK = "ok"
    BACKOFF = "backoff"
    FAILED = "failed"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class CloudState:
    """One cloud (one ``[Cloud-<Name>]`` section) as seen at snapshot time."""

    name: str
    price: float
    instance_cores: int
    max_instances: int
    charge_time_secs: int = 3600
    boot_secs: int = 120
    boot_timeout_secs: int = 900
    desired: int = 0
    instances: tuple[Instance, ...] = ()
    health: Health = Health.OK
    backoff_until: float | None = None
    error: str = ""
    node_properties: tuple[str, ...] = ()
    #: What one instance offers besides cores: memory in MiB (0: not declared, not checked) and
    #: GPUs; the queues whose jobs this cloud serves (None: every queue).
    instance_memory_mb: int = 0
    instance_gpus: int = 0
    queues: frozenset[str] | None = None
    #: Why the latest launch failed while requested instances are missing, or None.
    launch_failure: LaunchFailure | None = None
    #: Spot capacity: launched only for jobs that can take an interruption (see ``takes``).
    spot: bool = False
    #: ``valid_instances``, derived once per value (policies ask it many times per evaluation,
    #: and the replay keeps a group's value until the group changes). Not a field of the data.
    _valid: tuple[Instance, ...] | None = field(default=None, init=False, repr=False, compare=False)
    _interrupted: tuple[Instance, ...] | None = field(default=None, init=False, repr=False, compare=False)
    _capacity: int | None = field(default=None, init=False, repr=False, compare=False)

    def serves(self, queue: str) -> bool:
        return self.queues is None or queue in self.queues

    def takes(self, job: Job) -> bool:
        """May this cloud launch for ``job``? Its queue must be served; on a spot cloud the job
        must also be rerunnable (``qsub -r y``, so an interruption requeues it instead of losing
        it) and be meant for spot nodes: it asks for the ``spot`` property, or sits in one of
        the queues the section names (a spot section serving every queue takes only jobs that
        ask)."""
        if not self.serves(job.queue):
            return False
        return not self.spot or spot_job(job, self.queues is not None)

    @property
    def usable(self) -> bool:
        """May the policy launch here now?"""
        return self.health == Health.OK

    @property
    def valid_instances(self) -> tuple[Instance, ...]:
        valid = self._valid
        if valid is None:
            valid = tuple(i for i in self.instances if i.state in _VALID_STATES)
            object.__setattr__(self, "_valid", valid)
        return valid

    @property
    def interrupted(self) -> tuple[Instance, ...]:
        """Instances the cloud took back (gone, with the cloud's reason), derived once per value."""
        out = self._interrupted
        if out is None:
            out = tuple(i for i in self.instances if i.state == InstanceState.GONE and i.interruption)
            object.__setattr__(self, "_interrupted", out)
        return out

    @property
    def capacity(self) -> int:
        """Instances paid for or asked for: the larger of desired and the valid members
        (derived once per value: policies ask it of every cloud several times per evaluation)."""
        capacity = self._capacity
        if capacity is None:
            capacity = max(self.desired, len(self.valid_instances))
            object.__setattr__(self, "_capacity", capacity)
        return capacity

    @property
    def headroom(self) -> int:
        return max(0, self.max_instances - self.capacity)


class Stage(StrEnum):
    """The lifecycle of an instance Phorque owns, as the state store records it."""

    REQUESTED = "requested"
    BOOTING = "booting"
    JOINED = "joined"
    BUSY = "busy"
    IDLE = "idle"
    DRAINING = "draining"
    TERMINATING = "terminating"
    GONE = "gone"
    FAILED = "failed"

    @property
    def is_live(self) -> bool:
        return self not in (Stage.GONE,)


@dataclass(frozen=True, slots=True)
class Owned:
    """What the state store remembers about one instance Phorque launched.

    ``down_since``: for a node that joined, since when it has been down or missing from Torque's
    node list; before it first came up, when Phorque first tried to join it (its boot clock).
    """

    instance_id: InstanceId
    cloud: str
    stage: Stage
    node: NodeName | None = None
    first_seen: float | None = None
    launch_time: float | None = None
    joined_at: float | None = None
    idle_since: float | None = None
    drain_started: float | None = None
    down_since: float | None = None
    updated_at: float | None = None


#: A kind of queued job: what judging whether a job can ever run, and whether it fits, reads of
#: it (its request, queue and rerunnable flag). The request is one tuple for every job of one
#: request (the Torque parser's cache), so it is named by identity; whoever holds a kind holds a
#: job of it, so no identity is reused meanwhile.
KindKey = tuple[int, int, str, bool | None]


@dataclass(frozen=True, eq=False)
class QueueIndex:
    """A snapshot's jobs as the policies read them (``phorque.core.queue_index``).

    ``queued``: the jobs in state Q that pbs_server does not refuse and no node lists (a job
    that started between the ``qstat`` and the ``pbsnodes`` read is running), in FIFO order.
    ``refused`` and ``running``: in the snapshot's order. ``kinds``: for every kind of job in
    ``queued``, how many there are and one of them, in the order ``queued`` first has them (a
    policy that reads the queue by kind meets them as a pass over its jobs would). ``tally``:
    per queue, the jobs in state Q (every one: refused, listed on a node) and their cores.
    """

    queued: tuple[Job, ...]
    refused: tuple[Job, ...]
    running: tuple[Job, ...]
    kinds: Mapping[KindKey, tuple[int, Job]]
    tally: Mapping[str, tuple[int, int]]

    def same_as(self, other: QueueIndex) -> bool:
        """The same jobs in the same order, and the same counts of the same kinds in the same
        order."""
        return (self.queued == other.queued and self.refused == other.refused
                and self.running == other.running
                and [(k, n) for k, (n, _) in self.kinds.items()] == [(k, n) for k, (n, _) in other.kinds.items()]
                and dict(self.tally) == dict(other.tally))


@dataclass(frozen=True)
class Snapshot:
    """Everything a policy may look at. ``clouds`` are in price order (cheapest first)."""

    now: float
    jobs: tuple[Job, ...] = ()
    nodes: tuple[Node, ...] = ()
    clouds: tuple[CloudState, ...] = ()
    owned: tuple[Owned, ...] = ()
    memory: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    torque_ok: bool = True
    #: Torque nodes the state store says Phorque created, whatever became of their instance
    #: (a node whose instance is gone is still Phorque's to remove). A note proves nothing:
    #: anyone who may run ``pbsnodes -N`` can write one.
    recorded_nodes: frozenset[str] = frozenset()
    #: Instance id -> Torque node of Phorque's records of gone instances whose node Torque still
    #: lists: the cloud forgets a terminated instance's DNS name, the state store does not.
    gone_nodes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: ``jobs`` sorted as the policies read them, when the daemon's live view kept them so
    #: (``phorque.core.queue_index``); derived from ``jobs`` when None. Never written to a file.
    queue_index: QueueIndex | None = field(default=None, compare=False, repr=False,
                                           metadata={"derived": True})

    @property
    def spend_rate(self) -> float:
        """Money per hour for every running and requested instance, over all clouds."""
        return sum(c.capacity * c.price for c in self.clouds)

    def cloud(self, name: str) -> CloudState:
        for cloud in self.clouds:
            if cloud.name == name:
                return cloud
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class ClusterSummary:
    queued_jobs: int
    queued_cores: int
    running_jobs: int
    total_cores: int
    free_cores: int
    down_cores: int

    def as_dict(self) -> dict[str, int]:
        return {
            "queued_jobs": self.queued_jobs,
            "queued_cores": self.queued_cores,
            "running_jobs": self.running_jobs,
            "total_cores": self.total_cores,
            "free_cores": self.free_cores,
            "down_cores": self.down_cores,
        }


def summarize(jobs: Iterable[Job], nodes: Iterable[Node]) -> ClusterSummary:
    """The cluster's numbers: queued work, and cores by node condition."""
    queued_jobs = queued_cores = running_jobs = 0
    for job in jobs:
        if job.is_queued:
            queued_jobs += 1
            queued_cores += job.cores
        elif job.is_running:
            running_jobs += 1
    total = free = down = 0
    for node in nodes:
        total += node.np
        free += node.free_cores
        if node.is_down:
            down += node.np
    return ClusterSummary(queued_jobs, queued_cores, running_jobs, total, free, down)


def summarize_snapshot(snap: Snapshot, queues: frozenset[str] | None) -> ClusterSummary:
    """``summarize`` of the snapshot's jobs in ``queues`` and its nodes: from the live view's
    index when the snapshot has one (no pass over the queue at each evaluation)."""
    index = snap.queue_index
    if index is None:
        return summarize(in_queues(snap.jobs, queues), snap.nodes)
    tally = [t for q, t in index.tally.items() if queues is None or q in queues]
    running = index.running if queues is None else [j for j in index.running if j.queue in queues]
    whole = summarize((), snap.nodes)
    return ClusterSummary(sum(n for n, _ in tally), sum(c for _, c in tally), len(running),
                          whole.total_cores, whole.free_cores, whole.down_cores)


def queue_tally(snap: Snapshot, queues: frozenset[str] | None) -> dict[str, tuple[int, int]]:
    """Per queue (of ``queues``, or every one), the snapshot's jobs in state Q and their cores."""
    index = snap.queue_index
    if index is not None:
        return {q: t for q, t in index.tally.items() if queues is None or q in queues}
    return tally_of(in_queues(snap.jobs, queues))


def tally_of(jobs: Iterable[Job]) -> dict[str, tuple[int, int]]:
    """Per queue, the jobs in state Q and their cores."""
    tally: dict[str, tuple[int, int]] = {}
    for job in jobs:
        if job.state == QUEUED:
            n, cores = tally.get(job.queue, (0, 0))
            tally[job.queue] = (n + 1, cores + job.cores)
    return tally


def in_queues(jobs: Iterable[Job], queues: frozenset[str] | None) -> tuple[Job, ...]:
    """Only the jobs of the given queues (all of them when ``queues`` is None)."""
    if queues is None:
        return tuple(jobs)
    return tuple(j for j in jobs if j.queue in queues)
