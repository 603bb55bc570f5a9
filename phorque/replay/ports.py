"""The ports of the act half, implemented on the simulated world, so that the replay applies its
plans with the daemon's own :class:`~phorque.act.executor.Executor`.

* :class:`SimTorque` is Torque (:class:`~phorque.core.ports.TorqueAdmin`): the simulated
  cluster's nodes, and the jobs through the simulator (:class:`JobControl`);
* :class:`SimGroup` is one cloud's group (:class:`~phorque.core.ports.CloudGroup`);
* :class:`SimRecords` is the state store's lifecycle records
  (:class:`~phorque.core.ports.LifecycleRecords`), kept in memory.

Each change also notes what the next observation must look at (the world's ``touched``) and
when a scheduling cycle is due, as the world's own methods do. Nothing moves between two calls
(the simulated clock stands still while a plan is applied), so the executor's re-reads see
exactly what its changes left.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from phorque.core.errors import CloudError, TorqueError
from phorque.core.model import InstanceId, Job, JobId, Node, NodeName, Owned, Stage
from phorque.core.ports import GroupView
from phorque.replay.clouds import SimCloud
from phorque.replay.world import World

#: What pbs_server answers ``qrerun -f`` of a job that is not rerunnable.
NOT_RERUNNABLE = "qrerun: Job is not rerunnable"


class JobControl(Protocol):
    """What the simulator does with jobs when Torque is asked to."""

    def listed_jobs(self) -> tuple[Job, ...]:
        """Every job ``qstat`` would list now: queued, then running."""
        ...

    def rerun_job(self, job_id: JobId) -> bool:
        """Requeue a job (``qrerun -f``); False when it is not rerunnable (nothing changed)."""
        ...

    def purge_job(self, job_id: JobId) -> None:
        """Purge a job (``qdel -p``): its work is lost."""
        ...


class SimTorque:
    """The simulated cluster as the executor administers Torque."""

    def __init__(self, world: World, jobs: JobControl):
        self.world = world
        self._jobs = jobs

    # -- reading ----------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        return list(self._jobs.listed_jobs())

    def nodes(self) -> list[Node]:
        return list(self.world.cluster.models())

    def jobs_named(self, ids: Sequence[str]) -> list[Job]:
        wanted = set(ids)
        return [j for j in self._jobs.listed_jobs() if j.id in wanted]

    def nodes_named(self, names: Sequence[str]) -> list[Node] | None:
        nodes = self.world.cluster.nodes
        if any(n not in nodes for n in names):
            return None
        return [nodes[n].model() for n in names]

    def node(self, name: NodeName) -> Node | None:
        found = self.world.cluster.nodes.get(name)
        return None if found is None else found.model()

    # -- administering ------------------------------------------------------------------------
    def add_node(self, name: NodeName, np: int, properties: Sequence[str] = (), note: str = "",
                 gpus: int = 0) -> bool:
        """The node takes its cloud's memory, GPUs and properties (as ``qmgr create node`` and
        its pbs_mom give them); the instance behind it is the one that booted with that name."""
        if name in self.world.cluster.nodes:
            return False
        inst = self.world.booted.get(name)
        if inst is None:
            raise TorqueError(f"qmgr: no instance booted as {name}")
        self.world.add_cloud_node(name, np, note, inst.cloud, inst.id)
        return True

    def delete_node(self, name: NodeName) -> bool:
        if name not in self.world.cluster.nodes:
            return False
        self.world.remove_node(name)
        return True

    def _node(self, name: NodeName):
        found = self.world.cluster.nodes.get(name)
        if found is None:
            raise TorqueError(f"pbsnodes: Unknown node {name}")
        return found

    def offline(self, name: NodeName, note: str) -> None:
        self.world.set_offline(self._node(name), True, note)

    def clear_offline(self, name: NodeName, note: str = "") -> None:
        self.world.set_offline(self._node(name), False, note)

    def set_note(self, name: NodeName, note: str) -> None:
        node = self._node(name)
        self.world.set_offline(node, node.offline, note)

    def rerun(self, job_id: JobId) -> None:
        if not self._jobs.rerun_job(job_id):
            raise TorqueError(NOT_RERUNNABLE)
        self.world.requeued = True

    def purge(self, job_id: JobId) -> None:
        self._jobs.purge_job(job_id)
        self.world.requeued = True

    def schedule(self) -> None:
        self.world.sched_due = True


class SimGroup:
    """One simulated cloud's group."""

    def __init__(self, world: World, cloud: SimCloud):
        self.world = world
        self.cloud = cloud
        #: An instance of this group was terminated by the plan being applied.
        self.terminated = False

    def ensure_setup(self) -> None:
        """The simulated group always exists."""

    def describe(self, fresh: bool = True) -> GroupView:
        state = self.cloud.state()
        return GroupView(desired=self.cloud.desired, max_size=self.cloud.spec.max_instances,
                         instances=state.instances)

    def set_desired(self, desired: int) -> None:
        if not 0 <= desired <= self.cloud.spec.max_instances:
            raise ValueError(f"cloud {self.cloud.name}: desired capacity {desired} outside "
                             f"0..{self.cloud.spec.max_instances}")
        if self.terminated:
            # The executor sizes the group from the snapshot, which still counts the instance
            # this plan terminated: the group ends one instance above what the policy meant.
            self.world.counters["launch after terminate on the same cloud"] += 1
        self.world.set_desired(self.cloud.name, desired)

    def cancel_requests(self, count: int) -> int:
        before = self.cloud.desired
        desired = self.cloud.cancel_requests(count)
        if desired != before:
            self.world.cloud_changed(self.cloud)
        return desired

    def terminate(self, instance_id: InstanceId) -> None:
        """As the providers do: a member the cloud already took back counts as terminated."""
        if self.world.terminate(self.cloud.name, instance_id):
            self.terminated = True
        elif instance_id not in self.cloud.gone:
            raise CloudError(self.cloud.name, "TerminateInstanceInAutoScalingGroup",
                             f"{instance_id} is not a member of the group", code="NotAMember")


class SimRecords:
    """The lifecycle records, in the world's book; each change marks its instance touched."""

    def __init__(self, world: World):
        self.world = world
        self.capacities: dict[str, int] = {}

    def get(self, instance_id: str) -> Owned | None:
        return self.world.owned.records.get(instance_id)

    def set_stage(self, instance_id: InstanceId, cloud: str, stage: Stage, now: float, **changes: Any) -> Owned:
        rec = self.world.owned.set_stage(instance_id, cloud, stage, now, **changes)
        self.world.touched.add(instance_id)
        return rec

    def save_capacity(self, cloud: str, capacity: int, now: float, *, raise_only: bool = False) -> None:
        if not raise_only or capacity > self.capacities.get(cloud, -1):
            self.capacities[cloud] = capacity

    def record_interruption(self, now: float, cloud: str, instance_id: str, node: str | None,
                            requeued: list[str], lost: dict[str, str]) -> None:
        record = self.world.interrupted.get(instance_id)
        if record is None:
            return
        record.requeued += tuple(requeued)
        record.lost += tuple(lost)
        if record.handled_at is None:
            record.handled_at = now
