"""The cloud provider (the :class:`~phorque.core.ports.CloudGroup` port over boto3), the behaviour both API dialects share, and the factory.

One :class:`CloudProvider` serves one ``[Cloud-<Name>]`` section: one auto-scaling group on one
Auto Scaling endpoint, joined with one EC2 endpoint's view of its instances. Every method makes
blocking API calls (bounded by the configured connect/read timeouts and attempts) and raises
:class:`~phorque.core.errors.CloudError` or :class:`~phorque.core.errors.CloudUnreachable`; nothing else
escapes. Callers hold :func:`phorque.adapters.cloud.lock.cloud_lock` around every mutation and the
read that decides it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from phorque.adapters.cloud import clients
from phorque.adapters.cloud.states import clean_dns, ec2_state, epoch, pick_dns, worse
from phorque.adapters.config import CloudSettings
from phorque.core.errors import CloudError
from phorque.core.model import Instance, InstanceId, InstanceState, LaunchFailure
from phorque.core.ports import GroupView

log = logging.getLogger("phorque.cloud.provider")

#: How long EC2's description of a settled member (running, with a DNS name) is reused by a
#: describe that need not be fresh. Such a member changes only by going away, which the group
#: shows by a new lifecycle or health state (that ends the reuse at once); this bounds how long
#: a going-away the group has not shown yet can stay unseen.
SETTLED_REUSE_SECS = 60.0


@dataclass(frozen=True, slots=True)
class _Settled:
    """EC2's description of a settled member, and what the group said of it then."""

    record: Mapping[str, Any]
    #: The member's (LifecycleState, HealthStatus) in the group when EC2 was read.
    member: tuple[str, str]
    #: Monotonic time of that read.
    at: float


class CloudProvider:
    """One cloud's auto-scaling group (the :class:`~phorque.core.ports.CloudGroup` port). Subclasses
    implement one API dialect each."""

    dialect: ClassVar[str] = ""
    #: Attempts for TerminateInstanceInAutoScalingGroup (None: ``max_attempts``).
    terminate_attempts: ClassVar[int | None] = None
    #: Does a member that EC2 does not list count as gone (else: keep the group's word)?
    missing_in_ec2_is_gone: ClassVar[bool] = False

    def __init__(self, settings: CloudSettings, session: Any = None,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self._session = session
        self._secrets = clients.settings_secrets(settings)
        self._clients: dict[str, Any] = {}
        self._clock = clock
        #: EC2's word on the members that were settled when last read (``describe(fresh=False)``).
        self._settled: dict[str, _Settled] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings.name!r}, group {self.settings.autoscale_group_name!r})"

    # ---- the protocol -------------------------------------------------------------------

    def ensure_setup(self) -> None:
        """Create the launch configuration (or template) and the group if missing; idempotent."""
        raise NotImplementedError

    def describe(self, fresh: bool = True) -> GroupView:
        """The group joined with EC2's DescribeInstances: desired, max and every member.

        ``fresh=False`` (an evaluation a trigger asked for) asks EC2 only about the members that
        are not settled: a member EC2 last described as running with a DNS name, while the group
        shows it in the lifecycle and health state it had then, is described as then, for up to
        SETTLED_REUSE_SECS. The group itself is always read."""
        group = self._group()
        members = group.get("Instances") or []
        seen = self._ec2_view(members, fresh)
        instances = tuple(self._instance(m, seen.get(m.get("InstanceId") or "")) for m in members)
        desired = int(group.get("DesiredCapacity") or 0)
        live = sum(1 for i in instances if i.state.is_valid)
        # Asked only while instances are missing: a group at its capacity has nothing to report,
        # and the extra call would cost every evaluation of every cloud.
        failure = self._launch_failure() if desired > live else None
        return GroupView(desired=desired, max_size=int(group.get("MaxSize") or 0),
                         instances=instances, launch_failure=failure)

    def set_desired(self, desired: int) -> None:
        """Set the desired capacity. Refuses (ValueError) a value below 0 or above max_instances."""
        self._check_desired(desired)
        log.info("cloud %s: group %s: desired capacity -> %d", self.settings.name,
                 self.settings.autoscale_group_name, desired)
        self._set_capacity(desired)

    def cancel_requests(self, count: int) -> int:
        """Lower desired by up to ``count``, never below the live members; return the new desired."""
        view = self.describe()
        new = max(view.desired - max(count, 0), len(view.live))
        if new >= view.desired:
            return view.desired
        log.info("cloud %s: cancelling %d request(s): desired %d -> %d (%d live)",
                 self.settings.name, view.desired - new, view.desired, new, len(view.live))
        self._set_capacity(new)
        return new

    def terminate(self, instance_id: str) -> None:
        """Terminate one member and decrement desired capacity, so nothing replaces it.

        The instance must belong to this group. After an error or timeout the group is read
        again: if the instance is gone (or going) the terminate took effect and this returns;
        otherwise the error is raised. A terminate is never blindly repeated.
        """
        if not instance_id:
            raise ValueError("terminate needs an instance id (a request without a VM has none)")
        self._check_member(instance_id)
        try:
            self._call("autoscaling-terminate", "TerminateInstanceInAutoScalingGroup",
                       InstanceId=instance_id, ShouldDecrementDesiredCapacity=True)
        except CloudError as exc:
            if self._confirm_gone(instance_id):
                log.warning("cloud %s: terminate %s failed (%s) but the group shows it terminating;"
                            " taken as done", self.settings.name, instance_id, exc)
                return
            raise
        log.info("cloud %s: terminated %s (desired capacity decremented)", self.settings.name, instance_id)

    # ---- dialect hooks ------------------------------------------------------------------

    def _member_state(self, member: Mapping[str, Any]) -> InstanceState:
        raise NotImplementedError

    def _set_capacity(self, desired: int) -> None:
        self._call("autoscaling", "SetDesiredCapacity",
                   AutoScalingGroupName=self.settings.autoscale_group_name,
                   DesiredCapacity=desired, HonorCooldown=False)

    def _ec2_instances(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """EC2's description of the given instance ids (those it knows), keyed by id."""
        raise NotImplementedError

    def _launch_failure(self) -> LaunchFailure | None:
        """The service's word that the group's latest launch failed (None: it has none)."""
        return None

    def _interruption(self, ec2: Mapping[str, Any] | None) -> str:
        """The cloud's word that it took this instance back (a spot interruption), or empty."""
        return ""

    def _on_before_parse(self, service: str) -> Any:
        """A ``before-parse`` handler to register on a client of ``service``, or None."""
        return None

    # ---- shared helpers -----------------------------------------------------------------

    def client(self, kind: str) -> Any:
        """The boto3 client ``autoscaling``, ``ec2`` or ``autoscaling-terminate`` (made once)."""
        if kind not in self._clients:
            if self._session is None:
                self._session = clients.make_session(self.settings)
            service = "ec2" if kind == "ec2" else "autoscaling"
            attempts = self.terminate_attempts if kind == "autoscaling-terminate" else None
            self._clients[kind] = clients.make_client(
                self._session, self.settings, service, attempts=attempts,
                on_before_parse=self._on_before_parse(service))
        return self._clients[kind]

    def _call(self, kind: str, operation: str, **params: Any) -> dict[str, Any]:
        return clients.call(self.client(kind), operation, self.settings.name, self._secrets, **params)

    def _check_desired(self, desired: int) -> None:
        if isinstance(desired, bool) or not isinstance(desired, int) or desired < 0:
            raise ValueError(f"cloud {self.settings.name}: desired capacity {desired!r} is not a count")
        if desired > self.settings.max_instances:
            raise ValueError(f"cloud {self.settings.name}: desired capacity {desired} is above "
                             f"max_instances {self.settings.max_instances}")

    def _find_group(self) -> dict[str, Any] | None:
        name = self.settings.autoscale_group_name
        reply = self._call("autoscaling", "DescribeAutoScalingGroups", AutoScalingGroupNames=[name])
        for group in reply.get("AutoScalingGroups") or []:
            if group.get("AutoScalingGroupName") == name:
                return group
        return None

    def _group(self) -> dict[str, Any]:
        group = self._find_group()
        if group is None:
            raise CloudError(self.settings.name, "DescribeAutoScalingGroups",
                             f"group {self.settings.autoscale_group_name!r} does not exist "
                             "(it is created at start-up)", code="NoSuchGroup")
        return group

    def _ec2_view(self, members: list[dict[str, Any]], fresh: bool) -> dict[str, Mapping[str, Any]]:
        """EC2's description of the members, keyed by id: asked for, or reused (``describe``)."""
        now = self._clock()
        reused: dict[str, Mapping[str, Any]] = {}
        kept: dict[str, _Settled] = {}
        asked: dict[str, tuple[str, str]] = {}
        for member in members:
            iid = member.get("InstanceId") or ""
            if not iid:
                continue
            state = (str(member.get("LifecycleState") or ""), str(member.get("HealthStatus") or ""))
            settled = None if fresh else self._settled.get(iid)
            if settled is not None and settled.member == state and now - settled.at < SETTLED_REUSE_SECS:
                reused[iid] = settled.record
                kept[iid] = settled
            else:
                asked[iid] = state
        found: dict[str, Mapping[str, Any]] = dict(self._ec2_instances(list(asked))) if asked else {}
        for iid, state in asked.items():
            record = found.get(iid)
            if record is not None and self._is_settled(record):
                kept[iid] = _Settled(record, state, now)
        self._settled = kept  # members that left the group are forgotten
        found.update(reused)
        return found

    def _is_settled(self, record: Mapping[str, Any]) -> bool:
        """Running, with the DNS name it joins Torque by: nothing more to learn but its end."""
        running = ec2_state(str((record.get("State") or {}).get("Name", ""))) == InstanceState.RUNNING
        return running and pick_dns(record.get("PublicDnsName"), record.get("PrivateDnsName"),
                                    self.settings.node_dns) is not None

    def _instance(self, member: Mapping[str, Any], ec2: Mapping[str, Any] | None) -> Instance:
        iid = InstanceId(member.get("InstanceId") or "")
        state = self._member_state(member)
        public = private = launch = None
        if iid and ec2 is None and self.missing_in_ec2_is_gone:
            state = worse(state, InstanceState.GONE)
        if ec2 is not None:
            state = worse(state, ec2_state(str((ec2.get("State") or {}).get("Name", ""))))
            public, private = ec2.get("PublicDnsName"), ec2.get("PrivateDnsName")
            launch = epoch(ec2.get("LaunchTime"))
        taken = self._interruption(ec2) if state in (InstanceState.GONE, InstanceState.FAILED) else ""
        if taken:
            state = InstanceState.GONE  # a stopped spot instance serves no more than a terminated one
        return Instance(id=iid, state=state, lifecycle=str(member.get("LifecycleState") or ""),
                        dns=pick_dns(public, private, self.settings.node_dns),
                        private_dns=clean_dns(private), launch_time=launch, interruption=taken)

    def _check_member(self, instance_id: str) -> None:
        """Refuse to touch an instance that is not a member of this group (invariant 2)."""
        reply = self._call("autoscaling", "DescribeAutoScalingInstances", InstanceIds=[instance_id])
        groups = {m.get("AutoScalingGroupName") for m in reply.get("AutoScalingInstances") or []
                  if m.get("InstanceId") == instance_id}
        if self.settings.autoscale_group_name not in groups:
            where = f"group {sorted(g for g in groups if g)}" if groups else "no group"
            raise CloudError(self.settings.name, "TerminateInstanceInAutoScalingGroup",
                             f"instance {instance_id} is in {where}, not in "
                             f"{self.settings.autoscale_group_name!r}: not touched", code="NotAMember")

    def _confirm_gone(self, instance_id: str) -> bool:
        try:
            view = self.describe()
        except CloudError as exc:
            log.warning("cloud %s: could not confirm the terminate of %s: %s",
                        self.settings.name, instance_id, exc)
            return False
        for inst in view.instances:
            if inst.id == instance_id:
                return inst.state == InstanceState.GONE
        return True


def chunks(items: list[str], size: int) -> Iterable[list[str]]:
    """``items`` in lists of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
