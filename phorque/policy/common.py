"""Building blocks the policies share: retiring a node safely, filling clouds cheapest first,
spotting jobs that can never run."""

from __future__ import annotations

import math

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


def fill_cheapest(view: View, instances: int, budget: float | None, clouds: list[CloudState],
                  reason: str) -> tuple[list[p.Action], int]:
    """Launch ``instances`` on the cheapest clouds first, each up to what ``max_instances`` and
    the budget allow. Returns the launches and how many could not be placed."""
    actions: list[p.Action] = []
    spent = 0.0
    for cloud in clouds:
        if instances <= 0:
            break
        count = min(instances, view.affordable(cloud, budget, spent))
        if count <= 0:
            continue
        actions.append(p.launch(cloud.name, count, cloud.capacity, reason))
        spent += count * cloud.price
        instances -= count
    return actions, max(0, instances)


def cores_to_instances(cores: int, instance_cores: int) -> int:
    return math.ceil(cores / instance_cores) if cores > 0 else 0


def largest_node(view: View) -> int:
    """The most cores any node could have: static nodes, or any configured cloud's instances."""
    static = max((n.np for n in view.static_nodes), default=0)
    return max([static, *(c.instance_cores for c in view.snapshot.clouds)])


def never_fits(view: View, job: Job, largest: int) -> str | None:
    """Why ``job`` can never run on this cluster and its clouds, or None if it could."""
    widest = max((c.ppn for c in job.shape if not c.spread), default=0)
    if widest > largest:
        return (f"job {job.id} can never run: it needs {widest} cores on one node, and the largest "
                f"node or instance has {largest}")
    nodes = sum(c.count for c in job.shape if not c.spread)
    possible = len(view.static_nodes) + sum(c.max_instances for c in view.snapshot.clouds)
    if nodes > possible:
        return (f"job {job.id} can never run: it needs {nodes} nodes, and the cluster can have at "
                f"most {possible}")
    total = sum(n.np for n in view.static_nodes) + sum(
        c.max_instances * c.instance_cores for c in view.snapshot.clouds)
    if job.cores > total:
        return f"job {job.id} can never run: it needs {job.cores} cores, and the cluster can have at most {total}"
    return None
