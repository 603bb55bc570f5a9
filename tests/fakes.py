"""In-memory implementations of the ports (:mod:`phorque.core.ports`) for component tests.

:class:`MemoryTorque` is a pbs_server's node and job tables; :class:`MemoryCloud` is one
auto-scaling group whose members boot after a delay on a :class:`FakeClock`. Both record every
call, let a test inject a failure into any method (``fail``) and run a callback after any change
(``after``): that is how a test makes a job land on a node between Phorque's offline and its
re-read, or a cloud fail in the middle of a plan. They answer as the real adapters do where the
executor and the engine depend on it (an unknown node is None, an unknown job a refused requeue,
an instance of another group a ``NotAMember`` error).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from phorque.core.errors import CloudError, CommandError, PhorqueError
from phorque.core.model import (
    FREE,
    OFFLINE,
    QUEUED,
    RUNNING,
    Instance,
    InstanceState,
    Job,
    LaunchFailure,
    Node,
)
from phorque.core.ports import GroupView
from phorque.runtime.clock import Clock

START = 1_700_000_000.0


@dataclass
class FakeClock:
    """A clock that moves only when told to."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, secs: float) -> float:
        self.now += secs
        return self.now

    def clocks(self) -> Clock:
        """The daemon's two clocks, both this one."""
        return Clock(time=self, monotonic=self)


@dataclass
class _Scripted:
    """Calls recorded, failures injected, callbacks after changes: shared by both fakes."""

    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list, init=False)
    _failures: dict[str, list[PhorqueError | None]] = field(default_factory=dict, init=False)
    _after: dict[str, list[Callable[..., None]]] = field(default_factory=dict, init=False)

    def fail(self, method: str, error: PhorqueError | None = None, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` raise ``error`` (a default error of the port's
        kind when None), without doing anything."""
        self._failures.setdefault(method, []).extend([error] * times)

    def after(self, method: str, callback: Callable[..., None]) -> None:
        """Call ``callback(*args)`` after every successful call of ``method``."""
        self._after.setdefault(method, []).append(callback)

    def called(self, method: str) -> list[tuple[Any, ...]]:
        """The arguments of every call of ``method`` (failed ones included), in order."""
        return [args for name, args in self.calls if name == method]

    def _enter(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        pending = self._failures.get(method)
        if pending:
            error = pending.pop(0)
            raise error if error is not None else self._default_error(method)

    def _done(self, method: str, *args: Any) -> None:
        for callback in self._after.get(method, ()):
            callback(*args)

    def _default_error(self, method: str) -> PhorqueError:
        raise NotImplementedError


# -- Torque ------------------------------------------------------------------------------------


@dataclass
class MemoryTorque(_Scripted):
    """pbs_server's nodes and jobs in memory (the :class:`~phorque.core.ports.TorqueAdmin` port)."""

    #: The state a node created by ``add_node`` is in (a real server says ``down`` until the
    #: node's mom reports; ``free`` stands for a mom that is already up).
    new_node_state: str = FREE
    nodes_by_name: dict[str, Node] = field(default_factory=dict)
    jobs_by_id: dict[str, Job] = field(default_factory=dict)
    #: Scheduling cycles asked for.
    cycles: int = 0

    def _default_error(self, method: str) -> PhorqueError:
        return CommandError([method], 1, f"{method}: cannot connect to server")

    # builders ------------------------------------------------------------------------------
    def with_node(self, name: str, np: int = 4, state: str = FREE, note: str = "",
                  properties: tuple[str, ...] = ()) -> Node:
        node = Node(name=name, np=np, state=frozenset(state.split(",")), note=note,
                    properties=properties)
        self.nodes_by_name[name] = node
        return node

    def submit(self, job_id: str, cores: int = 1, queue: str = "batch", walltime: int = 3600,
               rerunnable: bool | None = True, queued_at: float | None = None) -> Job:
        job = Job(id=job_id, state=QUEUED, queue=queue, cores=cores, walltime_secs=walltime,
                  remaining_secs=walltime, rerunnable=rerunnable, queued_at=queued_at)
        self.jobs_by_id[job_id] = job
        return job

    def start(self, job_id: str, node_name: str) -> None:
        """The scheduler starts a job on a node: both tables change, as pbs_server's do."""
        job = self.jobs_by_id[job_id]
        node = self.nodes_by_name[node_name]
        self.jobs_by_id[job_id] = dataclasses.replace(job, state=RUNNING, exec_hosts=(node_name,))
        self.nodes_by_name[node_name] = dataclasses.replace(
            node, jobs=node.jobs + (job_id,), used_slots=node.used_slots + job.cores)

    def finish(self, job_id: str) -> None:
        """A job ends: it leaves the queue and frees its node."""
        job = self.jobs_by_id.pop(job_id)
        for host in job.exec_hosts:
            self._leave(host, job)

    def _leave(self, host: str, job: Job) -> None:
        node = self.nodes_by_name.get(host)
        if node is not None and job.id in node.jobs:
            self.nodes_by_name[host] = dataclasses.replace(
                node, jobs=tuple(j for j in node.jobs if j != job.id),
                used_slots=max(0, node.used_slots - job.cores))

    def _changed(self, name: str, **changes: Any) -> None:
        node = self.nodes_by_name.get(name)
        if node is None:
            raise CommandError(["pbsnodes", name], 1, f"pbsnodes: Unknown node  MSG=cannot locate {name}")
        self.nodes_by_name[name] = dataclasses.replace(node, **changes)

    # reading -------------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        self._enter("jobs")
        return list(self.jobs_by_id.values())

    def nodes(self) -> list[Node]:
        self._enter("nodes")
        return list(self.nodes_by_name.values())

    def jobs_named(self, ids: Sequence[str]) -> list[Job]:
        self._enter("jobs_named", tuple(ids))
        return [self.jobs_by_id[i] for i in dict.fromkeys(ids) if i in self.jobs_by_id]

    def nodes_named(self, names: Sequence[str]) -> list[Node] | None:
        self._enter("nodes_named", tuple(names))
        wanted = list(dict.fromkeys(names))
        if any(n not in self.nodes_by_name for n in wanted):
            return None
        return [self.nodes_by_name[n] for n in wanted]

    def node(self, name: str) -> Node | None:
        self._enter("node", name)
        return self.nodes_by_name.get(name)

    # changing ------------------------------------------------------------------------------
    def add_node(self, name: str, np: int, properties: Sequence[str] = (), note: str = "",
                 gpus: int = 0) -> bool:
        self._enter("add_node", name, np)
        if name in self.nodes_by_name:
            return False
        self.nodes_by_name[name] = Node(name=name, np=np, state=frozenset(self.new_node_state.split(",")),
                                        properties=tuple(properties), note=note, gpus=gpus)
        self._done("add_node", name, np)
        return True

    def delete_node(self, name: str) -> bool:
        self._enter("delete_node", name)
        node = self.nodes_by_name.pop(name, None)
        if node is None:
            return False
        for job_id in node.jobs:  # pbs_server purges what still runs on a deleted node
            self.jobs_by_id.pop(job_id, None)
        self._done("delete_node", name)
        return True

    def offline(self, name: str, note: str) -> None:
        self._enter("offline", name, note)
        node = self.nodes_by_name.get(name)
        self._changed(name, state=(node.state if node else frozenset()) | {OFFLINE}, note=note)
        self._done("offline", name, note)

    def clear_offline(self, name: str, note: str = "") -> None:
        self._enter("clear_offline", name, note)
        node = self.nodes_by_name.get(name)
        state = (node.state if node else frozenset()) - {OFFLINE}
        self._changed(name, state=state or frozenset({FREE}), note=note)
        self._done("clear_offline", name, note)

    def set_note(self, name: str, note: str) -> None:
        self._enter("set_note", name, note)
        self._changed(name, note=note)
        self._done("set_note", name, note)

    def rerun(self, job_id: str) -> None:
        self._enter("rerun", job_id)
        job = self.jobs_by_id.get(job_id)
        if job is None:
            raise CommandError(["qrerun", "-f", "--", job_id], 153,
                               f"qrerun: Unknown Job Id Error {job_id}")
        if job.rerunnable is False:
            raise CommandError(["qrerun", "-f", "--", job_id], 156,
                               f"qrerun: Job is not rerunnable {job_id}")
        for host in job.exec_hosts:
            self._leave(host, job)
        self.jobs_by_id[job_id] = dataclasses.replace(job, state=QUEUED, exec_hosts=())
        self._done("rerun", job_id)

    def purge(self, job_id: str) -> None:
        self._enter("purge", job_id)
        job = self.jobs_by_id.pop(job_id, None)
        if job is None:
            raise CommandError(["qdel", "-p", "--", job_id], 153, f"qdel: Unknown Job Id {job_id}")
        for host in job.exec_hosts:
            self._leave(host, job)
        self._done("purge", job_id)

    def schedule(self) -> None:
        self._enter("schedule")
        self.cycles += 1
        self._done("schedule")


# -- clouds ------------------------------------------------------------------------------------


@dataclass
class _Member:
    id: str
    launched: float
    dns: str
    state: InstanceState = InstanceState.PENDING
    interruption: str = ""


@dataclass
class MemoryCloud(_Scripted):
    """One auto-scaling group in memory (the :class:`~phorque.core.ports.CloudGroup` port).

    Raising desired capacity adds members at once, ``pending``; each is ``running`` with its DNS
    name ``boot_secs`` after launch on ``clock``. ``launching=False`` stands for a cloud that
    accepts the request and starts nothing (no capacity): members stay missing and the group
    reports ``launch_failure``."""

    name: str
    clock: Callable[[], float]
    max_instances: int = 10
    boot_secs: float = 60.0
    launching: bool = True
    launch_failure: LaunchFailure | None = None
    desired: int = 0
    members: dict[str, _Member] = field(default_factory=dict)
    set_up: bool = False
    _serial: int = field(default=0, init=False)

    def _default_error(self, method: str) -> PhorqueError:
        return CloudError(self.name, method, "the endpoint answered 503", code="ServiceUnavailable")

    # builders ------------------------------------------------------------------------------
    def dns_of(self, instance_id: str) -> str:
        return self.members[instance_id].dns

    def live(self) -> list[str]:
        return [m.id for m in self.members.values() if m.state.is_valid]

    def take_back(self, instance_id: str, reason: str = "Server.SpotInstanceTermination") -> None:
        """The cloud takes an instance back (a spot reclaim): gone, with the cloud's reason;
        the group does not replace it."""
        member = self.members[instance_id]
        member.state, member.interruption = InstanceState.GONE, reason
        self.desired = max(0, self.desired - 1)

    def _launch_up_to(self, desired: int) -> None:
        if not self.launching:
            return
        while len(self.live()) < desired:
            self._serial += 1
            iid = f"i-{self.name}-{self._serial:04d}"
            self.members[iid] = _Member(iid, self.clock(), dns=f"{self.name}-{self._serial:04d}.cloud")

    def _age(self) -> None:
        for member in self.members.values():
            if member.state == InstanceState.PENDING and self.clock() >= member.launched + self.boot_secs:
                member.state = InstanceState.RUNNING

    # the port ------------------------------------------------------------------------------
    def ensure_setup(self) -> None:
        self._enter("ensure_setup")
        self.set_up = True

    def describe(self, fresh: bool = True) -> GroupView:
        self._enter("describe")
        return self.group()

    def group(self) -> GroupView:
        """What ``describe`` answers, without counting a call (for the test's own looks)."""
        self._age()
        instances = tuple(
            Instance(id=m.id, state=m.state, lifecycle=m.state.value,
                     dns=m.dns if m.state == InstanceState.RUNNING else None,
                     launch_time=m.launched, interruption=m.interruption)
            for m in self.members.values())
        live = sum(1 for i in instances if i.state.is_valid)
        return GroupView(desired=self.desired, max_size=self.max_instances, instances=instances,
                         launch_failure=self.launch_failure if self.desired > live else None)

    def set_desired(self, desired: int) -> None:
        self._enter("set_desired", desired)
        if desired < 0 or desired > self.max_instances:
            raise ValueError(f"cloud {self.name}: desired capacity {desired} is not in 0..{self.max_instances}")
        self.desired = desired
        self._launch_up_to(desired)
        self._done("set_desired", desired)

    def cancel_requests(self, count: int) -> int:
        self._enter("cancel_requests", count)
        new = max(self.desired - max(count, 0), len(self.live()))
        self.desired = min(self.desired, new)
        self._done("cancel_requests", count)
        return self.desired

    def terminate(self, instance_id: str) -> None:
        self._enter("terminate", instance_id)
        member = self.members.get(instance_id)
        if member is None:
            raise CloudError(self.name, "TerminateInstanceInAutoScalingGroup",
                             f"instance {instance_id} is in no group: not touched", code="NotAMember")
        if member.state != InstanceState.GONE:
            member.state = InstanceState.GONE
            self.desired = max(0, self.desired - 1)
        self._done("terminate", instance_id)
