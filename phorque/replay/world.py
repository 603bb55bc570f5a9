"""The simulated world a plan acts on and a snapshot is read from: the cluster's nodes, the
clouds' groups, and the state store's lifecycle records.

The executor's actions (through :mod:`phorque.replay.ports`) change it with the methods below, which
also note what the next observation must look at and when a scheduling cycle is due; the
simulator reads it as the engine reads Torque, the clouds and the state store.

It also keeps what the engine keeps beside them: each cloud's health record (a fault the
executor reports backs the cloud off, :mod:`phorque.adapters.cloud.backoff`). Snapshots are built
as the engine builds them (:mod:`phorque.act.snapshot`), from the world's clouds and nodes and
the records of its book (:class:`~phorque.replay.owned.OwnedBook`).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from phorque.act.snapshot import NOTHING, build, observe_all, observe_some
from phorque.adapters.cloud.backoff import (
    CloudHealthRecord,
    record_failure,
    record_success,
    with_health,
)
from phorque.core.model import CloudState, InstanceId, Job, Node, NodeName, Snapshot
from phorque.replay.clouds import Interruption, SimCloud, SimInstance
from phorque.replay.cluster import Cluster, SimNode
from phorque.replay.metrics import Tally
from phorque.replay.owned import OwnedBook
from phorque.replay.settings import ReplaySettings
from phorque.replay.spot import INTERRUPTION, interruption_delay

# Event kinds, in the order they are handled at one instant (evaluations come after them all).
END, BOOT, MOM = 0, 1, 2


class World:
    """Static nodes, cloud groups and what Phorque owns; ``now`` is set by the simulator."""

    def __init__(self, settings: ReplaySettings, local_nodes: int, local_np: int, now: float,
                 push: Callable[[float, int, Any], None], tally: Tally, observe_everything: bool = False):
        self.settings = settings
        self.now = now
        self._push = push
        self.tally = tally
        self.cluster = Cluster()
        width = len(str(local_nodes))
        for k in range(local_nodes):
            self.cluster.add(NodeName(f"node{k + 1:0{width}d}"), local_np, mem=settings.local_mem_mb,
                             gpus=settings.local_gpus, properties=settings.local_properties)
        self.clouds = {c.name: SimCloud(c) for c in settings.clouds}
        self.owned = OwnedBook()
        self.counters: Counter[str] = Counter()
        self.live = 0
        self.rate = 0.0
        #: A scheduling cycle is due (cores were freed or nodes came into service).
        self.sched_due = False
        #: Instances whose lifecycle record may change at the next observation.
        self.touched: set[str] = set()
        self._observe_everything = observe_everything
        #: Each cloud's failures and back-off, as the engine keeps them in the state store;
        #: and every back-off a failure started, ``(from, until)`` (until a success, if earlier).
        self.health: dict[str, CloudHealthRecord] = {}
        self.backoffs: dict[str, list[tuple[float, float]]] = {}
        #: Spot interruptions to come: ``(at, order, instance)``; an entry whose instance left
        #: its group first is dropped when it comes up.
        self.interrupts: list[tuple[float, int, SimInstance]] = []
        self._interrupt_seq = 0
        self.interrupted: dict[str, Interruption] = {}
        #: Jobs were requeued by the plan being applied (the daemon would see them change).
        self.requeued = False
        #: Each booted instance by its DNS name, the name its Torque node takes.
        self.booted: dict[NodeName, SimInstance] = {}
        #: Torque nodes of each cloud, and the cloud nodes that are down (see ``booting``).
        self.cloud_nodes: Counter[str] = Counter()
        self.down_cloud_nodes: set[str] = set()
        self._booting: bool | None = None  # until a cloud or a cloud node changes

    # -- changes (the executor's, and the simulator's) -------------------------------------------------
    def set_desired(self, cloud_name: str, desired: int) -> None:
        cloud = self.clouds[cloud_name]
        rate = self.settings.spot_interruptions_per_hour if cloud.spec.spot else 0.0
        for inst in cloud.set_desired(desired, self.now):
            self._push(inst.boot_at, BOOT, inst)
            self.touched.add(inst.id)
            if rate > 0:
                # Taken back while it runs: the clock starts when it has booted.
                at = inst.boot_at + interruption_delay(self.settings.seed, inst.id, rate)
                if math.isfinite(at):
                    self._interrupt_seq += 1
                    heapq.heappush(self.interrupts, (at, self._interrupt_seq, inst))
        self.cloud_changed(cloud)

    def boot(self, inst: SimInstance) -> None:
        """The instance has booted: it is running, with its DNS name."""
        self.clouds[inst.cloud].boot(inst)
        if inst.dns:
            self.booted[inst.dns] = inst
        self.touched.add(inst.id)

    def next_interruption(self) -> float:
        """When the next spot interruption comes (``inf``: none), entries of instances that
        left their group before it dropped."""
        heap = self.interrupts
        while heap and heap[0][2].id not in self.clouds[heap[0][2].cloud].live:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def interrupt(self, inst: SimInstance) -> SimNode | None:
        """The cloud takes ``inst`` back now: GONE with the spot reason, billed to this
        moment, its pbs_mom gone with it. Returns its node, if it joined."""
        cloud = self.clouds[inst.cloud]
        if cloud.interrupt(inst.id, self.now, INTERRUPTION) is None:
            return None
        self.interrupted[inst.id] = cloud.interruptions[-1]
        self.touched.add(inst.id)
        node = self.cluster.nodes.get(inst.dns) if inst.dns else None
        if node is not None and not node.down:
            self.set_down(node, True)
        self.cloud_changed(cloud)
        return node

    @property
    def gone_nodes(self) -> dict[str, str]:
        """Gone instance -> the node it still claims (its record's, until Torque no longer lists
        the node and a snapshot lets go of it)."""
        return self.owned.gone

    def forget_handled(self) -> None:
        """Taken-back instances whose interruption Phorque has handled, and whose node is no
        longer listed, leave their group's listing (the group drops a reclaimed instance)."""
        listed = self.cluster.nodes
        for cloud in self.clouds.values():
            for inst_id in [i for i, inst in cloud.gone.items() if self.interrupted[i].handled_at is not None
                            and not (inst.dns and inst.dns in listed)]:
                cloud.forget(inst_id)

    def cloud_result(self, cloud: str, error: str | None) -> None:
        """What the executor reports to the engine: a fault backs the cloud off, a success
        (a node joined) clears its failures."""
        record = self.health.get(cloud, CloudHealthRecord())
        updated = record_success(record, self.now) if error is None else record_failure(record, self.now, error)
        if updated == record:
            return
        self.health[cloud] = updated
        if updated.failures > record.failures and updated.backoff_until is not None:
            self.backoffs.setdefault(cloud, []).append((self.now, updated.backoff_until))
        elif error is None and record.backoff_until is not None and self.now < record.backoff_until:
            start, _ = self.backoffs[cloud][-1]  # a success ends the back-off early
            self.backoffs[cloud][-1] = (start, self.now)

    def terminate(self, cloud_name: str, instance_id: str) -> bool:
        cloud = self.clouds.get(cloud_name)
        inst = cloud.stop(instance_id, self.now) if cloud is not None else None
        if cloud is None or inst is None:
            return False
        self.touched.add(instance_id)
        if inst.dns:
            self.booted.pop(inst.dns, None)
        node = self.cluster.nodes.get(inst.dns) if inst.dns else None
        if node is not None and not node.down:
            self.set_down(node, True)  # its pbs_mom is gone with it
        self.cloud_changed(cloud)
        return True

    def cloud_changed(self, cloud: SimCloud) -> None:
        self._booting = None
        live = sum(len(c.live) for c in self.clouds.values())
        self.rate = sum(len(c.live) * c.spec.price for c in self.clouds.values())
        self.live = live
        self.tally.instances(live, self.rate)

    def add_cloud_node(self, name: NodeName, np: int, note: str, cloud: str, instance: InstanceId) -> None:
        """A joined instance becomes a node with its cloud's memory, GPUs and properties, as
        ``qmgr create node`` makes it (and as its pbs_mom reports its memory)."""
        delay = self.settings.mom_delay_secs
        spec = self.clouds[cloud].spec if cloud in self.clouds else None
        self.cluster.add(name, np, note=note, cloud=cloud, instance=instance, down=delay > 0,
                         mem=spec.instance_memory_mb if spec else 0, gpus=spec.instance_gpus if spec else 0,
                         properties=spec.node_properties if spec else ())
        self.cloud_nodes[cloud] += 1
        self._booting = None
        if delay > 0:
            self.down_cloud_nodes.add(name)
            self._push(self.now + delay, MOM, name)
        self.touched.add(instance)
        self.sched_due = True

    def set_offline(self, node: SimNode, offline: bool, note: str) -> None:
        self.cluster.set_offline(node, offline, note)
        if node.instance:
            self.touched.add(node.instance)
        if not offline:
            self.sched_due = True

    def set_down(self, node: SimNode, down: bool) -> None:
        """A node's pbs_mom reported (``down`` False) or is gone."""
        self.cluster.set_down(node, down)
        self._booting = None
        if node.cloud:
            if down:
                self.down_cloud_nodes.add(node.name)
            else:
                self.down_cloud_nodes.discard(node.name)

    def booting(self) -> bool:
        """Instances are asked for or booting that are no Torque nodes yet, or a cloud node is
        down: the lifecycle then looks again every few seconds, counted from each evaluation
        (:func:`phorque.policy.lifecycle.boot_poll_secs`), so every evaluation moves its next
        look, and none may be skipped. The node of an instance the cloud took back counts as
        down until it is removed, where the lifecycle looks only at live instances: that keeps
        a few reconciliations the daemon makes anyway, and changes no figure."""
        booting = self._booting
        if booting is None:
            counts = self.cloud_nodes
            booting = self._booting = bool(self.down_cloud_nodes) or any(
                max(c.desired, len(c.live)) > counts[name] for name, c in self.clouds.items())
        return booting

    def remove_node(self, name: str) -> None:
        node = self.cluster.nodes[name]
        if node.cloud:
            self.cloud_nodes[node.cloud] -= 1
            self.down_cloud_nodes.discard(name)
            self._booting = None
        if node.instance:
            self.touched.add(node.instance)
        self.cluster.remove(name)

    # -- reading --------------------------------------------------------------------------------------
    def snapshot(self, jobs: tuple[Job, ...], memory: Any) -> Snapshot:
        """What the engine would read now, built as the engine builds it
        (:mod:`phorque.act.snapshot`): the lifecycle records are brought up to date first, by
        observing only the instances touched since the last snapshot."""
        now = self.now
        clouds = tuple([c.state() for c in self.clouds.values()])
        if self.health:
            clouds = tuple([self._with_health(c, now) for c in clouds])
        nodes = self.cluster.models()
        book = self.owned
        if self._observe_everything:
            seen = observe_all(now, clouds, nodes, book)
            self.touched.clear()
        elif self.touched:
            seen = observe_some(now, clouds, self._listed_nodes, book, book.records, self.touched)
            self.touched.clear()
        else:
            seen = NOTHING
        if seen.changed:
            book.save(seen.changed, now)
        return build(now, jobs, nodes, clouds, seen, book, memory, save=True, listed=self.cluster.nodes)

    def _listed_nodes(self, names: set[str]) -> list[Node]:
        cluster = self.cluster.nodes
        return [cluster[n].model() for n in names if n in cluster]

    def _with_health(self, cloud: CloudState, now: float) -> CloudState:
        """The cloud with its health record, as the engine's ``read_clouds`` gives it."""
        record = self.health.get(cloud.name)
        return cloud if record is None else with_health(cloud, record, now)
