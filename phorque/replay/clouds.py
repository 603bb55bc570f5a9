"""Simulated auto-scaling groups: desired capacity, instances that boot, and billing.

An instance asked for at ``t`` exists at once as PENDING (it has an id and ``launch_time = t`` but
no DNS name) and becomes RUNNING with a DNS name at ``t + boot_secs``. Billing runs from the
request to the termination (or to the end of the replay), and a started charge period is paid in
full: ``charge_time_secs`` > 0 rounds the time up to whole periods (at least one), ``0`` bills
per second. Terminated instances leave the group at once.

A spot cloud's instance may be taken back by the cloud (:meth:`SimCloud.interrupt`): it is then
listed as GONE with the cloud's reason until Phorque has handled it, its billing stops at that
moment (to the second: a started period is not paid for), and desired capacity stays as it was
(the group would replace it; Phorque cancels that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from phorque.core.model import CloudState, Instance, InstanceId, InstanceState, NodeName


def paid_secs(elapsed: float, charge: int) -> float:
    """Seconds billed for an instance that lived ``elapsed`` seconds."""
    if charge <= 0:
        return max(0.0, elapsed)
    # A millisecond of slack keeps float noise from paying a whole extra period.
    return charge * max(1, math.ceil((elapsed - 1e-3) / charge))


@dataclass
class Interruption:
    """One instance the cloud took back: when, what it was billed, and what became of its
    node's jobs (filled in when Phorque requeues them)."""

    instance: str
    launch: float
    at: float
    paid_secs: float
    node: str | None = None
    requeued: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    handled_at: float | None = None


class SimInstance:
    __slots__ = ("id", "cloud", "launch", "boot_at", "dns", "state", "node", "interruption", "_model")

    def __init__(self, instance_id: InstanceId, cloud: str, launch: float, boot_at: float):
        self.id = instance_id
        self.cloud = cloud
        self.launch = launch
        self.boot_at = boot_at
        self.dns: NodeName | None = None
        self.state = InstanceState.PENDING
        self.node: NodeName | None = None
        self.interruption = ""
        self._model: Instance | None = None

    def model(self) -> Instance:
        if self._model is None:
            self._model = Instance(id=self.id, state=self.state, lifecycle=self.state.value,
                                   dns=self.dns, private_dns=self.dns, launch_time=self.launch,
                                   interruption=self.interruption)
        return self._model


class SimCloud:
    """One cloud's group, with what it cost so far."""

    def __init__(self, spec: CloudState, boot_secs: float | None = None):
        self.spec = replace(spec, desired=0, instances=())
        self.name = spec.name
        self.boot_secs = float(spec.boot_secs if boot_secs is None else boot_secs)
        self.desired = 0
        self.live: dict[str, SimInstance] = {}
        #: Instances the cloud took back, listed until Phorque has handled them.
        self.gone: dict[str, SimInstance] = {}
        self.interruptions: list[Interruption] = []
        self.launched = 0
        #: When each instance was asked for, in order.
        self.launch_times: list[float] = []
        self.paid_secs = 0.0     # billed seconds of instances already stopped
        self.lived_secs = 0.0    # their real lifetimes
        self._state: CloudState | None = None

    def state(self) -> CloudState:
        """The group as a snapshot holds it (cached until it changes)."""
        if self._state is None:
            instances = tuple(i.model() for i in self.live.values())
            if self.gone:
                instances += tuple(i.model() for i in self.gone.values())
            self._state = replace(self.spec, desired=self.desired, instances=instances)
        return self._state

    def _changed(self) -> None:
        self._state = None

    def set_desired(self, desired: int, now: float) -> list[SimInstance]:
        """Set desired capacity; the group asks for the missing instances at once."""
        desired = max(0, min(desired, self.spec.max_instances))
        self.desired = desired
        new = []
        while len(self.live) < desired:
            self.launched += 1
            self.launch_times.append(now)
            inst = SimInstance(InstanceId(f"i-{self.name}-{self.launched:06d}"), self.name, now, now + self.boot_secs)
            self.live[inst.id] = inst
            new.append(inst)
        self._changed()
        return new

    def cancel_requests(self, count: int) -> int:
        """Lower desired by up to ``count``, never below the live members."""
        self.desired = max(self.desired - max(count, 0), len(self.live))
        self._changed()
        return self.desired

    def boot(self, inst: SimInstance) -> None:
        inst.state = InstanceState.RUNNING
        inst.dns = NodeName(f"{self.name}-{inst.id.rsplit('-', 1)[1]}.replay")
        inst._model = None
        self._changed()

    def stop(self, instance_id: str, now: float) -> SimInstance | None:
        """Terminate one instance (decrementing desired) and bill it."""
        inst = self.live.pop(instance_id, None)
        if inst is None:
            return None
        self.desired = max(0, self.desired - 1)
        self._bill(inst, now)
        self._changed()
        return inst

    def interrupt(self, instance_id: str, now: float, reason: str) -> SimInstance | None:
        """The cloud takes a live instance back: GONE with ``reason``, billed to this moment
        and not a second more; desired capacity is left as it was."""
        inst = self.live.pop(instance_id, None)
        if inst is None:
            return None
        inst.state = InstanceState.GONE
        inst.interruption = reason
        inst._model = None
        self.gone[inst.id] = inst
        lived = max(0.0, now - inst.launch)
        self.lived_secs += lived
        self.paid_secs += lived
        self.interruptions.append(Interruption(inst.id, inst.launch, now, lived, node=inst.dns))
        self._changed()
        return inst

    def forget(self, instance_id: str) -> None:
        """A taken-back instance leaves the group's listing."""
        if self.gone.pop(instance_id, None) is not None:
            self._changed()

    def stop_all(self, now: float) -> None:
        for inst in self.live.values():
            self._bill(inst, now)
        self.live.clear()
        self._changed()

    def _bill(self, inst: SimInstance, now: float) -> None:
        lived = max(0.0, now - inst.launch)
        self.lived_secs += lived
        self.paid_secs += paid_secs(lived, self.spec.charge_time_secs)

    @property
    def cost(self) -> float:
        return self.paid_secs / 3600.0 * self.spec.price
