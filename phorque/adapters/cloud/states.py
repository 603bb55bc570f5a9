"""What an auto-scaling member *is*: the services' state words mapped onto :class:`InstanceState`.

Two sources describe each member, and both are consulted; the worse answer wins
(gone > failed > requested > pending > running), so an instance is ``running`` only when the
auto-scaling service and EC2 agree that it is.

Auto-scaling lifecycle (standard AWS dialect, ``LifecycleState``):

    ==========================================  ==========  =================================
    Pending, Pending:Wait, Pending:Proceed      pending
    InService                                   running
    Terminating, Terminating:Wait/Proceed,      gone
    Terminated, Detaching, Detached
    EnteringStandby, Standby, Quarantined       failed      out of service: neither capacity
                                                            nor a node to join
    Warmed:Terminating*, Warmed:Terminated      gone
    Warmed:* (other)                            pending     a warm-pool instance on its way in
    HealthStatus Unhealthy                      failed      (unless already gone)
    anything else                               pending     counted as capacity, never joined
                                                            before EC2 says running
    ==========================================  ==========  =================================

Phantom dialect (EPU states, ``NNN-NAME``):

    ==========================================  ==========  =================================
    100-REQUESTING, 200-REQUESTED,              requested   no VM yet (empty instance id);
    300-ERROR_RETRYING                                      pending once an id exists
    400-PENDING, 500-STARTED                    pending
    600-RUNNING                                 running
    650-RUNNING_FAILED, 900-FAILED              failed
    700-TERMINATING, 800-TERMINATED             gone
    ==========================================  ==========  =================================

EC2 ``instanceState.name`` (AWS and Nimbus): pending → pending, running → running,
shutting-down/terminated → gone, stopping/stopped → failed. A member EC2 does not list is gone
in the Phantom dialect (Nimbus forgets terminated VMs); in the AWS dialect it keeps the
auto-scaling state, since a brand-new instance can be missing from EC2 for a moment.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from phorque.core.model import InstanceState, NodeName

_RANK = {
    InstanceState.RUNNING: 0,
    InstanceState.PENDING: 1,
    InstanceState.REQUESTED: 2,
    InstanceState.FAILED: 3,
    InstanceState.GONE: 4,
}

_AWS_LIFECYCLE = {
    "pending": InstanceState.PENDING,
    "pending:wait": InstanceState.PENDING,
    "pending:proceed": InstanceState.PENDING,
    "inservice": InstanceState.RUNNING,
    "terminating": InstanceState.GONE,
    "terminating:wait": InstanceState.GONE,
    "terminating:proceed": InstanceState.GONE,
    "terminated": InstanceState.GONE,
    "detaching": InstanceState.GONE,
    "detached": InstanceState.GONE,
    "enteringstandby": InstanceState.FAILED,
    "standby": InstanceState.FAILED,
    "quarantined": InstanceState.FAILED,
}

_EC2_STATE = {
    "pending": InstanceState.PENDING,
    "running": InstanceState.RUNNING,
    "shutting-down": InstanceState.GONE,
    "terminated": InstanceState.GONE,
    "stopping": InstanceState.FAILED,
    "stopped": InstanceState.FAILED,
}

_EPU_RE = re.compile(r"^\s*(\d{3})(?:-|$)")

#: DNS values that are not names: Nimbus prints ``[unknown]`` for a VM without that NIC.
_NO_NAME = {"", "[unknown]", "unknown", "none"}


def worse(a: InstanceState, b: InstanceState) -> InstanceState:
    """The less hopeful of two states (gone > failed > requested > pending > running)."""
    return a if _RANK[a] >= _RANK[b] else b


def aws_lifecycle_state(lifecycle: str, health: str = "Healthy") -> InstanceState:
    """Map an AWS ``LifecycleState`` and ``HealthStatus`` to an :class:`InstanceState`."""
    key = lifecycle.strip().lower()
    if key.startswith("warmed:"):
        state = InstanceState.GONE if "terminat" in key else InstanceState.PENDING
    else:
        state = _AWS_LIFECYCLE.get(key, InstanceState.PENDING)
    if health.strip().lower() == "unhealthy":
        state = worse(state, InstanceState.FAILED)
    return state


def epu_code(lifecycle: str) -> int | None:
    """The number of an EPU state (``600`` for ``600-RUNNING``), or None."""
    match = _EPU_RE.match(lifecycle)
    return int(match.group(1)) if match else None


def phantom_lifecycle_state(lifecycle: str, instance_id: str, health: str = "Healthy") -> InstanceState:
    """Map a Phantom (EPU) ``LifecycleState`` to an :class:`InstanceState`."""
    code = epu_code(lifecycle)
    if code is None:
        state = InstanceState.PENDING if instance_id else InstanceState.REQUESTED
    elif code < 400:
        state = InstanceState.PENDING if instance_id else InstanceState.REQUESTED
    elif code < 600:
        state = InstanceState.PENDING
    elif code == 600:
        state = InstanceState.RUNNING
    elif code in (700, 800):
        state = InstanceState.GONE
    else:  # 650-RUNNING_FAILED, 900-FAILED and codes this table does not know
        state = InstanceState.FAILED
    if health.strip().lower().startswith("unhealthy"):
        state = worse(state, InstanceState.FAILED)
    return state


def ec2_state(name: str) -> InstanceState:
    """Map EC2's ``instanceState.name`` to an :class:`InstanceState`."""
    return _EC2_STATE.get(name.strip().lower(), InstanceState.PENDING)


def clean_dns(name: str | None) -> str | None:
    """A usable host name, or None for a missing, empty or ``[unknown]`` one."""
    if name is None:
        return None
    value = name.strip()
    if value.lower() in _NO_NAME:
        return None
    return value


def pick_dns(public: str | None, private: str | None, prefer: str = "public") -> NodeName | None:
    """The node name: the preferred DNS name (``public``/``private``), else the other one."""
    first, second = (clean_dns(public), clean_dns(private))
    if prefer == "private":
        first, second = second, first
    name = first or second
    return NodeName(name) if name else None


def epoch(value: datetime | str | None) -> float | None:
    """Epoch seconds of a launch time; a naive datetime is taken as UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
