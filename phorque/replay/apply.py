"""Applying a plan to the simulated cluster and clouds, with the executor's semantics.

Mirrors :class:`phorque.act.executor.Executor` action for action: the plan's actions in
``plan.ordered()``; a launch raises desired capacity to ``min(capacity + count, max_instances)``
from the snapshot's view of the group; a drain marks the node offline with Phorque's note and
re-reads it (in the simulator nothing moves in between, so an idle node stays idle); terminate
secures the node the same way and stops the instance; remove deletes an idle node; the state
records move through the same stages. An action the real executor would see fail (a node or
instance that is not there) is counted as failed and the others go on.

Faults are reported as the executor reports them (an action with ``fault`` before it acts, a
joined node as a success) to the world's health records, which back the cloud off; a cloud that
faulted during the plan gets no launch from the rest of it. REQUEUE, for an instance the cloud
took back, marks its node offline with Phorque's note and requeues every job on it
(``qrerun -f``): rerunnable jobs go back to the queue, the others are lost with the node.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from phorque.act.executor import interrupted_note
from phorque.core.model import JobId, Snapshot, Stage
from phorque.core.plan import Action, Kind, Plan, Status
from phorque.policy.view import drain_note, join_note

if TYPE_CHECKING:
    from phorque.replay.world import World


class ActionFailed(Exception):
    """What the real adapter would have raised."""


class SimExecutor:
    """Applies one plan at ``now``; ``outcomes`` counts ``(kind, status)``."""

    def __init__(self, world: World, now: float):
        self.world = world
        self.now = now
        self.secured: set[str] = set()
        self.kept: set[str] = set()
        self.terminated: set[str] = set()
        self.failed_clouds: set[str] = set()
        self.counted: set[Action] = set()
        self.outcomes: Counter[tuple[str, str]] = Counter()

    def apply(self, plan: Plan, snapshot: Snapshot) -> bool:
        """Apply the plan; True if anything changed."""
        self.snapshot = snapshot
        changed = False
        for action in plan.ordered():
            try:
                status = HANDLERS[action.kind](self, action)
            except ActionFailed:
                status = Status.FAILED
            self.outcomes[(action.kind.value, status.value)] += 1
            changed = changed or status == Status.DONE
        return changed

    # -- helpers -----------------------------------------------------------------------------------
    def _report_fault(self, a: Action) -> None:
        """A fault action backs its cloud off before it acts, once per action."""
        if a.fault and a.cloud and a not in self.counted:
            self.world.cloud_result(a.cloud, a.reason)
            self.failed_clouds.add(a.cloud)
            self.counted.add(a)

    def _stage(self, a: Action, stage: Stage, **changes: Any) -> None:
        if a.instance and a.cloud:
            self.world.owned.set_stage(a.instance, a.cloud, stage, self.now, **changes)
            self.world.touched.add(a.instance)

    def _dns(self, instance_id: str) -> str | None:
        for cloud in self.snapshot.clouds:
            for inst in cloud.instances:
                if inst.id == instance_id:
                    return inst.node_name
        return None

    def _node(self, name: str):
        node = self.world.cluster.nodes.get(name)
        if node is None:
            raise ActionFailed(name)
        return node

    def _secure(self, name: str, reason: str, a: Action) -> bool:
        if name in self.secured:
            return True
        if name in self.kept:
            return False
        node = self._node(name)
        self.world.set_offline(node, True, drain_note(reason))
        if not node.idle:
            self.kept.add(name)
            self.world.set_offline(node, False, join_note(a.cloud or "?", a.instance or "?"))
            self._stage(a, Stage.BUSY, drain_started=None)
            return False
        self.secured.add(name)
        return True

    # -- actions -----------------------------------------------------------------------------------
    def _join(self, a: Action) -> Status:
        assert a.node and a.instance and a.cloud
        if a.node not in self.world.cluster.nodes:
            self.world.add_cloud_node(a.node, a.np or 1, join_note(a.cloud, a.instance), a.cloud, a.instance)
        self._stage(a, Stage.BOOTING, node=a.node)
        self.world.cloud_result(a.cloud, None)
        return Status.DONE

    def _undrain(self, a: Action) -> Status:
        assert a.node
        self.world.set_offline(self._node(a.node), False, join_note(a.cloud or "?", a.instance or "?"))
        self._stage(a, Stage.IDLE, drain_started=None)
        return Status.DONE

    def _drain(self, a: Action) -> Status:
        assert a.node
        self._stage(a, Stage.DRAINING, drain_started=self.now)
        return Status.DONE if self._secure(a.node, a.reason, a) else Status.SKIPPED

    def _terminate(self, a: Action) -> Status:
        assert a.cloud and a.instance
        name = a.node or self._dns(a.instance)
        if name:
            if a.node:
                if not self._secure(name, a.reason, a):
                    return Status.SKIPPED
            elif name in self.world.cluster.nodes:
                # As the executor does: planned as an instance without a node, and Torque lists
                # one now; the next evaluation decides with it.
                return Status.SKIPPED
        self._stage(a, Stage.TERMINATING)
        self._report_fault(a)
        if not self.world.terminate(a.cloud, a.instance):
            raise ActionFailed(a.instance)
        self.terminated.add(a.cloud)
        return Status.DONE

    def _remove(self, a: Action) -> Status:
        assert a.node
        if a.node in self.kept:
            return Status.SKIPPED
        fresh = self.world.cluster.nodes.get(a.node)
        if fresh is None:
            return Status.DONE
        if not fresh.idle:
            return Status.SKIPPED
        self.world.remove_node(a.node)
        return Status.DONE

    def _cancel(self, a: Action) -> Status:
        assert a.cloud and a.count
        self._report_fault(a)
        cloud = self.world.clouds[a.cloud]
        before = cloud.desired
        cloud.cancel_requests(a.count)
        if cloud.desired != before:
            self.world.cloud_changed(cloud)
        return Status.DONE

    def _launch(self, a: Action) -> Status:
        assert a.cloud and a.count
        if a.cloud in self.failed_clouds:
            return Status.SKIPPED
        seen = self.snapshot.cloud(a.cloud)
        new = min(seen.capacity + a.count, seen.max_instances)
        if new <= seen.desired:
            return Status.SKIPPED
        if a.cloud in self.terminated:
            # The executor sizes the group from the snapshot, which still counts the instance
            # this plan terminated: the group ends one instance above what the policy meant.
            self.world.counters["launch after terminate on the same cloud"] += 1
        self.world.set_desired(a.cloud, new)
        return Status.DONE

    def _requeue(self, a: Action) -> Status:
        assert a.cloud and a.instance
        self._report_fault(a)  # backed off first: nothing is launched there meanwhile
        requeued: list[JobId] = []
        lost: list[JobId] = []
        node = self.world.cluster.nodes.get(a.node) if a.node else None
        if node is not None:
            self.world.set_offline(node, True, interrupted_note(a.reason))
            assert self.world.requeue is not None
            requeued, lost = self.world.requeue(node.name)
        record = self.world.interrupted.get(a.instance)
        if record is not None:
            record.requeued += tuple(requeued)
            record.lost += tuple(lost)
            if record.handled_at is None:
                record.handled_at = self.now
        if requeued or lost:
            self.world.requeued = True
        return Status.DONE


#: What applies each kind of action (built once: the replay applies hundreds of thousands of plans).
HANDLERS: dict[Kind, Callable[[SimExecutor, Action], Status]] = {
    Kind.JOIN: SimExecutor._join, Kind.UNDRAIN: SimExecutor._undrain, Kind.DRAIN: SimExecutor._drain,
    Kind.TERMINATE: SimExecutor._terminate, Kind.REMOVE: SimExecutor._remove,
    Kind.REQUEUE: SimExecutor._requeue, Kind.CANCEL: SimExecutor._cancel, Kind.LAUNCH: SimExecutor._launch}
