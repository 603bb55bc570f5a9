"""Building blocks the policies share: retiring a node safely, filling clouds cheapest first,
spotting jobs that can never run."""

from __future__ import annotations

import math
from dataclasses import dataclass

from phorque import plan as p
from phorque.model import CloudState, Job
from phorque.policy.lifecycle import Lifecycle
from phorque.policy.view import CloudNode, View


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
            if cn.node is not None and not cn.node.is_down and cn.node.is_idle
            and not cn.node.is_offline and cn.instance.id not in life.handled
            and cn.node.name not in life.handled]


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


@dataclass(frozen=True)
class Limits:
    """The most the cluster can ever offer: static nodes plus every cloud at max_instances."""

    widest: int   # cores of the largest node or instance
    nodes: int
    cores: int

    @classmethod
    def of(cls, view: View) -> Limits:
        clouds = view.snapshot.clouds
        static = view.static_nodes
        return cls(widest=max([0, *(n.np for n in static), *(c.instance_cores for c in clouds)]),
                   nodes=len(static) + sum(c.max_instances for c in clouds),
                   cores=sum(n.np for n in static) + sum(c.max_instances * c.instance_cores for c in clouds))


def never_fits(job: Job, limits: Limits) -> str | None:
    """Why ``job`` can never run on this cluster and its clouds, or None if it could."""
    widest = max((c.ppn for c in job.shape if not c.spread), default=0)
    if widest > limits.widest:
        return (f"job {job.id} can never run: it needs {widest} cores on one node, and the largest "
                f"node or instance has {limits.widest}")
    nodes = sum(c.count for c in job.shape if not c.spread)
    if nodes > limits.nodes:
        return (f"job {job.id} can never run: it needs {nodes} nodes, and the cluster can have at "
                f"most {limits.nodes}")
    if job.cores > limits.cores:
        return (f"job {job.id} can never run: it needs {job.cores} cores, and the cluster can have "
                f"at most {limits.cores}")
    return None
