"""The replay's simulated ports, driven by the daemon's own executor: a whole instance lifecycle
(launch, join, drain, terminate, remove) on the simulated world, and the rules the executor
keeps there as on a site."""

from __future__ import annotations

import pytest

from phorque.act.executor import ALREADY_GONE, Executor, not_listed
from phorque.core import plan as p
from phorque.core.errors import CloudError
from phorque.core.model import InstanceId, JobId, NodeName, Snapshot, Stage
from phorque.core.plan import Kind, Plan, Status
from phorque.policy.view import is_drain_note
from phorque.replay.metrics import Tally
from phorque.replay.ports import SimGroup, SimRecords, SimTorque
from phorque.replay.settings import ReplaySettings
from phorque.replay.world import BOOT, World


class NoJobs:
    """A simulator without jobs: nothing to requeue."""

    def listed_jobs(self):
        return ()

    def rerun_job(self, job_id):
        raise AssertionError("no job to rerun")

    def purge_job(self, job_id):
        raise AssertionError("no job to purge")


class Bed:
    def __init__(self) -> None:
        self.pushed: list[tuple[float, int, object]] = []
        self.tally = Tally()
        self.tally.curves(0.0, 60.0)
        self.world = World(ReplaySettings(), 2, 8, 0.0, lambda at, kind, item: self.pushed.append((at, kind, item)),
                           self.tally)
        self.torque = SimTorque(self.world, NoJobs())
        self.groups = {name: SimGroup(self.world, cloud) for name, cloud in self.world.clouds.items()}
        self.records = SimRecords(self.world)
        self.results: list[tuple[str, str | None]] = []

    def apply(self, *actions) -> list:
        snap = self.world.snapshot((), {})
        executor = Executor(self.torque, self.groups, {}, self.records, self.world.now,
                            lambda cloud, error: self.results.append((cloud, error)), remove_workers=1)
        return executor.apply(Plan(actions=tuple(actions)), snap)

    def boot_all(self) -> None:
        for at, kind, inst in list(self.pushed):
            if kind == BOOT:
                self.world.now = max(self.world.now, at)
                self.world.boot(inst)


def statuses(outcomes) -> list[tuple[Kind, Status]]:
    return [(o.action.kind, o.status) for o in outcomes]


def test_a_whole_lifecycle_through_the_executor_on_the_simulated_ports():
    bed = Bed()
    world = bed.world
    assert statuses(bed.apply(p.launch("cheap", 1, 0, "a job waits"))) == [(Kind.LAUNCH, Status.DONE)]
    assert world.clouds["cheap"].desired == 1 and len(world.clouds["cheap"].live) == 1
    bed.boot_all()
    (inst,) = world.clouds["cheap"].live.values()
    assert inst.dns
    name = NodeName(inst.dns)
    assert statuses(bed.apply(p.join("cheap", inst.id, name, 8, "booted"))) == [(Kind.JOIN, Status.DONE)]
    node = world.cluster.nodes[name]
    assert (node.cloud, node.instance, node.np) == ("cheap", inst.id, 8)
    assert bed.results == [("cheap", None)]  # a join is the cloud's success
    assert world.owned.records[inst.id].stage == Stage.BOOTING
    assert world.owned.records[inst.id].down_since == world.now  # the join's first try, as on a site

    # Drain, terminate and remove in one plan: the node is secured, the instance stopped and
    # billed, the node deleted.
    outcomes = bed.apply(p.drain(name, "idle", cloud="cheap", instance=inst.id),
                         p.terminate("cheap", inst.id, "idle", node=name),
                         p.remove(name, "idle", cloud="cheap", instance=inst.id))
    assert statuses(outcomes) == [(Kind.DRAIN, Status.DONE), (Kind.TERMINATE, Status.DONE),
                                  (Kind.REMOVE, Status.DONE)]
    assert is_drain_note(node.note) and node.offline
    assert name not in world.cluster.nodes and world.clouds["cheap"].live == {}
    assert world.clouds["cheap"].desired == 0 and world.clouds["cheap"].paid_secs == 3600
    assert world.owned.records[inst.id].stage == Stage.TERMINATING


def test_a_node_that_runs_a_job_is_put_back_and_its_instance_spared():
    bed = Bed()
    world = bed.world
    bed.apply(p.launch("cheap", 1, 0, "a job waits"))
    bed.boot_all()
    (inst,) = world.clouds["cheap"].live.values()
    name = NodeName(inst.dns or "")
    bed.apply(p.join("cheap", inst.id, name, 8, "booted"))
    node = world.cluster.nodes[name]
    world.cluster.take(JobId("1.replay"), [(node, 8, 0, 0)])  # a job landed on it since the snapshot
    outcomes = bed.apply(p.terminate("cheap", inst.id, "idle", node=name),
                         p.remove(name, "idle", cloud="cheap", instance=inst.id))
    assert statuses(outcomes) == [(Kind.TERMINATE, Status.SKIPPED), (Kind.REMOVE, Status.SKIPPED)]
    assert not node.offline and name in world.cluster.nodes and inst.id in world.clouds["cheap"].live
    assert world.owned.records[inst.id].stage == Stage.BUSY


def test_a_planned_node_torque_does_not_list_is_not_terminated():
    bed = Bed()
    bed.apply(p.launch("cheap", 1, 0, "a job waits"))
    bed.boot_all()
    (inst,) = bed.world.clouds["cheap"].live.values()
    ghost = NodeName("ghost.replay")
    outcomes = bed.apply(p.terminate("cheap", inst.id, "idle", node=ghost),
                         p.remove(ghost, "idle", cloud="cheap", instance=inst.id))
    assert [(o.status, o.detail) for o in outcomes] == [(Status.SKIPPED, not_listed(ghost)),
                                                        (Status.SKIPPED, not_listed(ghost))]
    assert inst.id in bed.world.clouds["cheap"].live


def test_the_simulated_group_terminates_as_the_providers_do():
    bed = Bed()
    group = bed.groups["cheap"]
    group.set_desired(2)
    first, second = list(bed.world.clouds["cheap"].live)
    bed.world.interrupt(bed.world.clouds["cheap"].live[second])
    group.terminate(InstanceId(first))
    group.terminate(InstanceId(second))  # taken back already: counts as terminated
    with pytest.raises(CloudError, match="NotAMember"):
        group.terminate(InstanceId("i-other"))
    with pytest.raises(ValueError):
        group.set_desired(group.cloud.spec.max_instances + 1)
    # One terminated (desired down by one); the one taken back left desired as it was: the
    # policy cancels the replacement the group would launch.
    view = group.describe()
    assert (view.desired, view.max_size) == (1, 16)
    assert [i.state.value for i in view.instances] == ["gone"]


def test_the_simulated_torque_reads_and_refuses_as_torque_does():
    bed = Bed()
    torque = bed.torque
    names = [n.name for n in torque.nodes()]
    assert len(names) == 2 and torque.nodes_named(names) == torque.nodes()
    assert torque.nodes_named([*names, NodeName("nowhere")]) is None
    assert torque.node(NodeName("nowhere")) is None
    assert torque.delete_node(NodeName("nowhere")) is False
    assert torque.add_node(names[0], 8) is False  # it exists already
    outcomes = bed.apply(p.remove(NodeName("nowhere"), "gone"))
    assert [(o.status, o.detail) for o in outcomes] == [(Status.DONE, ALREADY_GONE)]
    assert isinstance(bed.world.snapshot((), {}), Snapshot)
