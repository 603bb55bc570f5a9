"""The simulated world a plan acts on and a snapshot is read from: the cluster's nodes, the
clouds' groups, and the state store's lifecycle records.

The executor's actions (:mod:`phorque.replay.apply`) change it through the methods below, which
also note what the next observation must look at and when a scheduling cycle is due; the
simulator reads it as the engine reads Torque, the clouds and the state store.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from phorque.model import CloudState, Job, Owned, Snapshot
from phorque.observe import observe
from phorque.replay.apply import OwnedBook
from phorque.replay.clouds import SimCloud
from phorque.replay.cluster import Cluster, SimNode
from phorque.replay.metrics import Tally
from phorque.replay.settings import ReplaySettings

# Event kinds, in the order they are handled at one instant; evaluations come last.
END, BOOT, MOM, EVAL = 0, 1, 2, 9


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
            self.cluster.add(f"node{k + 1:0{width}d}", local_np, mem=settings.local_mem_mb,
                             gpus=settings.local_gpus, properties=settings.local_properties)
        self.clouds = {c.name: SimCloud(c) for c in settings.clouds}
        self.owned = OwnedBook()
        self._owned_cache: tuple[int, tuple[Owned, ...]] = (-1, ())
        self.counters: Counter[str] = Counter()
        self.live = 0
        self.rate = 0.0
        #: A scheduling cycle is due (cores were freed or nodes came into service).
        self.sched_due = False
        #: Instances whose lifecycle record may change at the next observation.
        self.touched: set[str] = set()
        self._observe_everything = observe_everything

    # -- changes (the executor's, and the simulator's) -------------------------------------------------
    def set_desired(self, cloud_name: str, desired: int) -> None:
        cloud = self.clouds[cloud_name]
        for inst in cloud.set_desired(desired, self.now):
            self._push(inst.boot_at, BOOT, inst)
            self.touched.add(inst.id)
        self.cloud_changed(cloud)

    def terminate(self, cloud_name: str, instance_id: str) -> bool:
        cloud = self.clouds.get(cloud_name)
        inst = cloud.stop(instance_id, self.now) if cloud is not None else None
        if inst is None:
            return False
        self.touched.add(instance_id)
        node = self.cluster.nodes.get(inst.dns) if inst.dns else None
        if node is not None and not node.down:
            self.cluster.set_down(node, True)  # its pbs_mom is gone with it
        self.cloud_changed(cloud)
        return True

    def cloud_changed(self, cloud: SimCloud) -> None:
        live = sum(len(c.live) for c in self.clouds.values())
        self.rate = sum(len(c.live) * c.spec.price for c in self.clouds.values())
        self.live = live
        self.tally.instances(live, self.rate)

    def add_cloud_node(self, name: str, np: int, note: str, cloud: str, instance: str) -> None:
        """A joined instance becomes a node with its cloud's memory, GPUs and properties, as
        ``qmgr create node`` makes it (and as its pbs_mom reports its memory)."""
        delay = self.settings.mom_delay_secs
        spec = self.clouds[cloud].spec if cloud in self.clouds else None
        self.cluster.add(name, np, note=note, cloud=cloud, instance=instance, down=delay > 0,
                         mem=spec.instance_memory_mb if spec else 0, gpus=spec.instance_gpus if spec else 0,
                         properties=spec.node_properties if spec else ())
        if delay > 0:
            self._push(self.now + delay, MOM, name)
        self.touched.add(instance)
        self.sched_due = True

    def set_offline(self, node: SimNode, offline: bool, note: str) -> None:
        self.cluster.set_offline(node, offline, note)
        if node.instance:
            self.touched.add(node.instance)
        if not offline:
            self.sched_due = True

    def remove_node(self, name: str) -> None:
        node = self.cluster.nodes[name]
        if node.instance:
            self.touched.add(node.instance)
        self.cluster.remove(name)
    # -- reading --------------------------------------------------------------------------------------
    def _owned(self) -> tuple[Owned, ...]:
        version, cached = self._owned_cache
        if version != self.owned.version:
            cached = tuple(o for o in self.owned.records.values() if o.stage.is_live)
            self._owned_cache = (self.owned.version, cached)
        return cached

    def snapshot(self, jobs: tuple[Job, ...], memory: Any) -> Snapshot:
        """What the engine would read now, the lifecycle records brought up to date first."""
        now = self.now
        clouds = tuple(c.state() for c in self.clouds.values())
        nodes = self.cluster.models()
        if self._observe_everything:
            self.owned.save(observe(now, clouds, nodes, self.owned.records.values()), now)
        elif self.touched:
            self.owned.save(self._observe_touched(clouds), now)
        self.touched.clear()
        return Snapshot(now=now, jobs=jobs, nodes=nodes, clouds=clouds, owned=self._owned(),
                        memory=memory)

    def _observe_touched(self, clouds: tuple[CloudState, ...]) -> list[Owned]:
        """observe() of the touched instances only.

        observe() judges each instance on its own (its state, its node, its record) and reaches a
        fixed point: observing an instance again when none of these changed returns nothing. So
        observing only the instances whose cloud state, node or record changed since the last
        observation (and the records of those that left their group) gives the same records as
        observing everything, for a fraction of the work.
        """
        ids = self.touched
        records = self.owned.records
        sub = tuple(replace(c, instances=tuple(i for i in c.instances if i.id in ids)) for c in clouds)
        previous = [records[i] for i in ids if i in records]
        names = {i.dns for c in sub for i in c.instances if i.dns}
        names.update(r.node for r in previous if r.node)
        cluster = self.cluster.nodes
        nodes = [cluster[n].model() for n in names if n in cluster]
        return observe(self.now, sub, nodes, previous)
