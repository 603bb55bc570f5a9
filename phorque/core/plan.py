"""A plan: what a policy decided, as printable actions each with the reason for it.

Policies return a :class:`Plan`; the executor (daemon, ``phorque-evaluate``) or the replay
simulator applies it. Actions are applied in :data:`ORDER`, so that terminations free budget
before launches spend it, and launches are asked for before anything waits on Torque's commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from phorque.core.model import InstanceId, NodeName


class Kind(StrEnum):
    LAUNCH = "launch"        # raise a group's desired capacity by ``count``
    CANCEL = "cancel"        # lower desired capacity by ``count`` requests that never became VMs
    JOIN = "join"            # add a booted instance to Torque as a node
    UNDRAIN = "undrain"      # clear Phorque's offline mark: the node is wanted again
    DRAIN = "drain"          # mark a node offline with Phorque's note; terminate if still empty
    TERMINATE = "terminate"  # terminate one instance, decrementing desired capacity
    REMOVE = "remove"        # delete a node from Torque
    REQUEUE = "requeue"      # the cloud took the instance back: offline its node, requeue its jobs


class Status(StrEnum):
    """What became of one action when it was applied."""

    DONE = "done"
    SKIPPED = "skipped"  # a safety rule or a fresh read said no: nothing was changed
    FAILED = "failed"    # the change was tried and Torque or the cloud refused it


# Removals last: a real pbs_server takes at least 2 s over each `qmgr delete node` (it waits for
# its other threads to let go of the node), and launches must not wait for that.
# Joins after launches: a join is several qmgr commands, and the queued job a launch is for
# must not wait for them (a join needs nothing a launch does; the launch counts the joining
# node's room already).
# Requeues first: the jobs of a node whose instance is gone are lost work until requeued, and
# the section's back-off they count must be in place before anything is launched.
ORDER = (Kind.REQUEUE, Kind.UNDRAIN, Kind.DRAIN, Kind.TERMINATE, Kind.CANCEL, Kind.LAUNCH, Kind.JOIN,
         Kind.REMOVE)


@dataclass(frozen=True, slots=True)
class Action:
    """One step of a plan. Fields that do not apply to the kind are None."""

    kind: Kind
    reason: str
    cloud: str | None = None
    count: int | None = None
    instance: InstanceId | None = None
    node: NodeName | None = None
    np: int | None = None
    current: int | None = None
    #: The action answers a fault of its cloud (an instance that never joined, a stalled
    #: request): executing it also counts a failure against the cloud, for back-off.
    fault: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.kind.value}
        for key in ("cloud", "count", "instance", "node"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out["reason"] = self.reason
        return out

    def __str__(self) -> str:
        k = self.kind
        if k in (Kind.LAUNCH, Kind.CANCEL):
            sign = "+" if k == Kind.LAUNCH else "-"
            size = ""
            if self.current is not None and self.count is not None:
                new = self.current + self.count if k == Kind.LAUNCH else self.current - self.count
                size = f" ({self.current}->{new})"
            return f"{k} {sign}{self.count} on {self.cloud}{size}: {self.reason}"
        target = self.node or self.instance or "?"
        extra = f" [{self.instance}]" if self.node and self.instance else ""
        on = f" on {self.cloud}" if self.cloud else ""
        return f"{k} {target}{extra}{on}: {self.reason}"


def launch(cloud: str, count: int, current: int, reason: str) -> Action:
    return Action(Kind.LAUNCH, reason, cloud=cloud, count=count, current=current)


def cancel(cloud: str, count: int, current: int, reason: str, fault: bool = False) -> Action:
    return Action(Kind.CANCEL, reason, cloud=cloud, count=count, current=current, fault=fault)


def join(cloud: str, instance: InstanceId, node: NodeName, np: int, reason: str) -> Action:
    return Action(Kind.JOIN, reason, cloud=cloud, instance=instance, node=node, np=np)


def undrain(node: NodeName, reason: str, cloud: str | None = None, instance: InstanceId | None = None) -> Action:
    return Action(Kind.UNDRAIN, reason, cloud=cloud, instance=instance, node=node)


def drain(node: NodeName, reason: str, cloud: str | None = None, instance: InstanceId | None = None) -> Action:
    return Action(Kind.DRAIN, reason, cloud=cloud, instance=instance, node=node)


def terminate(cloud: str, instance: InstanceId, reason: str, node: NodeName | None = None,
              fault: bool = False) -> Action:
    return Action(Kind.TERMINATE, reason, cloud=cloud, instance=instance, node=node, fault=fault)


def requeue(cloud: str, instance: InstanceId, reason: str, node: NodeName | None = None,
            fault: bool = True) -> Action:
    """The cloud took ``instance`` back: mark its node offline, requeue the node's rerunnable
    jobs (``qrerun -f``), record the interruption; ``fault`` backs the cloud off."""
    return Action(Kind.REQUEUE, reason, cloud=cloud, instance=instance, node=node, fault=fault)


def remove(node: NodeName, reason: str, cloud: str | None = None, instance: InstanceId | None = None) -> Action:
    return Action(Kind.REMOVE, reason, cloud=cloud, instance=instance, node=node)


@dataclass(frozen=True)
class Plan:
    """Actions, observations, the policy's memory, and when to look again.

    ``wake_at`` is the earliest time at which the policy would decide differently with no
    event in between (an idle instance reaching its drain moment); the daemon and the
    simulator evaluate again then.
    """

    actions: tuple[Action, ...] = ()
    notes: tuple[str, ...] = ()
    memory: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    wake_at: float | None = None

    def ordered(self) -> tuple[Action, ...]:
        rank = {kind: i for i, kind in enumerate(ORDER)}
        return tuple(sorted(self.actions, key=lambda a: rank[a.kind]))

    def of(self, kind: Kind) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind == kind)

    def launched(self, cloud: str | None = None) -> int:
        return sum(a.count or 0 for a in self.of(Kind.LAUNCH) if cloud is None or a.cloud == cloud)
