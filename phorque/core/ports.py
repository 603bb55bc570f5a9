"""What the act half needs of the outside world: the ports.

The engine, the executor and the live cluster view talk to Torque and to the clouds only
through these protocols. The command-line adapter (:class:`phorque.adapters.torque.commands.Torque`)
and the boto3 providers (:class:`phorque.adapters.cloud.provider.CloudProvider`) implement them for a
real site; in-memory implementations back the component tests.

Every method blocks until its answer is in (the adapters bound each wait: Torque commands by
``command_timeout_secs``, cloud calls by the connect/read timeouts and attempts) and raises only
:class:`~phorque.core.errors.TorqueError` (Torque) or :class:`~phorque.core.errors.CloudError` (a cloud),
besides ``ValueError`` for a request the port refuses before it asks anything. A timeout is
a failure like any other: the caller cannot tell whether a change was made, so every change
below is safe to ask for again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from phorque.core.model import (
    Instance,
    InstanceId,
    Job,
    JobId,
    LaunchFailure,
    Node,
    NodeName,
    Owned,
    Stage,
)


class TorqueReader(Protocol):
    """Reading Torque: what the live cluster view needs."""

    def jobs(self) -> list[Job]:
        """Every job, array sub-jobs included. Raises TorqueError when Torque cannot be read
        or its answer cannot be trusted (truncated, invalid)."""
        ...

    def nodes(self) -> list[Node]:
        """Every node; an empty list for a server with no node at all. Raises TorqueError."""
        ...

    def jobs_named(self, ids: Sequence[str]) -> list[Job]:
        """The jobs with these ids; an id Torque does not know is left out (the job ended and
        was purged since it was named). Raises TorqueError on any other failure."""
        ...

    def nodes_named(self, names: Sequence[str]) -> list[Node] | None:
        """These nodes, read again now; None when Torque does not know one of them (the caller
        then reads every node). Raises TorqueError."""
        ...


class TorqueAdmin(TorqueReader, Protocol):
    """Reading and administering Torque: what the engine and the executor need."""

    def node(self, name: NodeName) -> Node | None:
        """One node, read again now; None only when Torque says it does not know it. An
        answer that does not list it raises TorqueError (it cannot vouch for the node)."""
        ...

    def add_node(self, name: NodeName, np: int, properties: Sequence[str] = (), note: str = "",
                 gpus: int = 0) -> bool:
        """Create a node with ``np`` cores, ``gpus`` GPUs and these properties, and set its
        note when Torque takes one yet. False when it already existed (not an error)."""
        ...

    def delete_node(self, name: NodeName) -> bool:
        """Delete a node. False when Torque did not know it (not an error)."""
        ...

    def offline(self, name: NodeName, note: str) -> None:
        """Mark a node offline with this note: its jobs go on, no new job starts there."""
        ...

    def clear_offline(self, name: NodeName, note: str = "") -> None:
        """Clear a node's offline mark and set its note."""
        ...

    def set_note(self, name: NodeName, note: str) -> None:
        """Set a node's note."""
        ...

    def rerun(self, job_id: JobId) -> None:
        """Requeue a running job without its mom's word (its node may be gone). Raises
        TorqueError when pbs_server refuses (``not rerunnable``, ``unknown job``)."""
        ...

    def purge(self, job_id: JobId) -> None:
        """Purge a job without its mom's word."""
        ...

    def schedule(self) -> None:
        """Ask pbs_server for a scheduling cycle now."""
        ...


@dataclass(frozen=True)
class GroupView:
    """A group as the services describe it: desired capacity, maximum and every member."""

    desired: int
    max_size: int
    instances: tuple[Instance, ...]
    #: The service's word that its latest launch failed, read only while members are missing.
    launch_failure: LaunchFailure | None = None

    @property
    def live(self) -> tuple[Instance, ...]:
        """Members that count as capacity: requested, pending or running."""
        return tuple(i for i in self.instances if i.state.is_valid)

    @property
    def capacity(self) -> int:
        """What the group is paying for or asking for: max(desired, live members)."""
        return max(self.desired, len(self.live))


class CloudGroup(Protocol):
    """One cloud's auto-scaling group (one ``[Cloud-<Name>]`` section). Callers hold the cloud
    lock around every change and the read that decides it. Raises CloudError (its subclass
    CloudUnreachable when the endpoint does not answer)."""

    def ensure_setup(self) -> None:
        """Create what the group needs (launch configuration or template, the group) when it is
        missing; idempotent."""
        ...

    def describe(self, fresh: bool = True) -> GroupView:
        """The group and every member, with each member's state as the cloud sees it. Raises
        CloudError with code ``NoSuchGroup`` when the group does not exist. ``fresh=False``
        allows a member that was settled (running, with its DNS name) at a recent read, and
        that the group still shows as then, to be described as then."""
        ...

    def set_desired(self, desired: int) -> None:
        """Set the desired capacity: the cloud launches (or cancels requests) to reach it.
        Refuses (ValueError) a value below 0 or above the section's ``max_instances``."""
        ...

    def cancel_requests(self, count: int) -> int:
        """Lower desired capacity by up to ``count``, never below the live members (a running
        instance is never cancelled this way); return the new desired capacity."""
        ...

    def terminate(self, instance_id: InstanceId) -> None:
        """Terminate one member and lower desired capacity by one, so that nothing replaces it.
        Refuses (CloudError ``NotAMember``) an instance of another group; after an error the
        group is read again, and a member found gone or going counts as terminated."""
        ...


class LifecycleRecords(Protocol):
    """What the executor keeps of each instance it acts on (the state store for a site, the
    replay's records in a replay). Every method returns once the record is kept."""

    def get(self, instance_id: str) -> Owned | None:
        """The instance's record, if there is one."""
        ...

    def set_stage(self, instance_id: InstanceId, cloud: str, stage: Stage, now: float, **changes: Any) -> Owned:
        """Move an instance's record to ``stage`` (creating it), with these other fields."""
        ...

    def save_capacity(self, cloud: str, capacity: int, now: float, *, raise_only: bool = False) -> None:
        """What a cloud's group is believed to pay for, for when it cannot be read;
        ``raise_only`` keeps a higher belief."""
        ...

    def record_interruption(self, now: float, cloud: str, instance_id: str, node: str | None,
                            requeued: list[str], lost: dict[str, str]) -> None:
        """An instance the cloud took back: the jobs requeued, and those lost (job -> why)."""
        ...


class InstanceBook(Protocol):
    """The lifecycle records a snapshot is built from (the state store for a site, the replay's
    records in a replay). Every method returns once the records are read or kept. The book's
    owner saves what an observation changed; a gone record keeps its node until
    ``forget_nodes``."""

    def owned(self) -> Sequence[Owned]:
        """The record of every instance that is not gone."""
        ...

    def ended(self, ids: Sequence[str]) -> set[str]:
        """Of these instances, those whose record is gone."""
        ...

    def recorded_nodes(self) -> set[str]:
        """Nodes of gone instances: nodes Phorque created and may still remove."""
        ...

    def gone_nodes(self) -> dict[str, str]:
        """Instance id -> node of each gone instance that still claims its node."""
        ...

    def forget_nodes(self, names: Sequence[str]) -> None:
        """Gone instances stop claiming these nodes (Torque no longer lists them)."""
        ...
