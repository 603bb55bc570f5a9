"""Applying a plan to Torque and the clouds, in a safe order, recording what happened.

The executor is the only place that changes anything. Its safety rules:

* a node is terminated only after it was marked offline with Phorque's note and read again
  with no job on it (a node that picked up a job meanwhile is put back in service);
* a node is removed from Torque only when a fresh read shows it has no job;
* every failure is logged with what was tried and recorded; the other actions go on;
* an action that answers a fault of its cloud (an instance that never joined, a request that
  never started) counts the fault before it acts, so that a crash in between cannot forget it
  and let a restarted daemon launch on that cloud again at once. Only a join clears a cloud's
  back-off: a terminate or a cancel that works says nothing about whether its instances start.

It runs while the caller holds the cloud lock, with the snapshot the plan was made from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from phorque.config import CloudSettings
from phorque.crashpoints import crashpoint
from phorque.errors import PhorqueError
from phorque.model import Node, Snapshot, Stage
from phorque.plan import Action, Kind, Plan
from phorque.policy.view import drain_note, join_note
from phorque.state import StateStore
from phorque.torque.commands import Torque

log = logging.getLogger("phorque.executor")


@dataclass(frozen=True)
class Outcome:
    action: Action
    status: str  # "done", "skipped" or "failed"
    detail: str = ""

    def as_dict(self) -> dict:
        out = self.action.as_dict()
        out["outcome"] = self.status if not self.detail else f"{self.status}: {self.detail}"
        return out


class Executor:
    """Applies one plan. ``providers`` maps cloud names to cloud providers."""

    def __init__(self, torque: Torque, providers: Mapping, settings: Mapping[str, CloudSettings],
                 state: StateStore, now: float, on_cloud_result: Callable[[str, str | None], None]):
        self.torque = torque
        self.providers = providers
        self.settings = settings
        self.state = state
        self.now = now
        self.on_cloud_result = on_cloud_result  # (cloud, error or None): feeds back-off
        self.secured: set[str] = set()
        self.kept: set[str] = set()
        self.counted: set[Action] = set()  # fault actions already counted against their cloud

    def apply(self, plan: Plan, snapshot: Snapshot) -> list[Outcome]:
        self.snapshot = snapshot
        self.dns = {i.id: i.node_name for c in snapshot.clouds for i in c.instances if i.id}
        outcomes: list[Outcome] = []
        kicked = False
        for action in plan.ordered():
            handler = getattr(self, f"_{action.kind.value}")
            try:
                status, detail = handler(action)
            except PhorqueError as exc:
                status, detail = "failed", str(exc)
                if action.cloud and action.kind in (Kind.LAUNCH, Kind.CANCEL, Kind.TERMINATE) \
                        and action not in self.counted:
                    self.on_cloud_result(action.cloud, str(exc))
            outcome = Outcome(action, status, detail)
            outcomes.append(outcome)
            level = logging.WARNING if status == "failed" else logging.INFO
            log.log(level, "%s -> %s%s", action, status, f" ({detail})" if detail else "")
            if status == "done" and action.kind in (Kind.JOIN, Kind.UNDRAIN):
                kicked = True
        if kicked:
            try:
                self.torque.schedule()
            except PhorqueError as exc:
                log.warning("could not ask pbs_server to schedule: %s", exc)
        return outcomes

    # -- helpers ---------------------------------------------------------------------------
    def _stage(self, action: Action, stage: Stage, **changes) -> None:
        if action.instance and action.cloud:
            self.state.set_stage(action.instance, action.cloud, stage, self.now, **changes)

    def _count_fault(self, action: Action) -> None:
        if action.fault and action.cloud:
            self.on_cloud_result(action.cloud, action.reason)
            self.counted.add(action)

    def _fresh(self, name: str) -> Node | None:
        return self.torque.node(name)

    def _secure(self, name: str, reason: str, action: Action) -> bool:
        """Offline the node with Phorque's note and read it again: True if it is empty."""
        if name in self.secured:
            return True
        if name in self.kept:
            return False
        self.torque.offline(name, drain_note(reason))
        crashpoint("drain.offline")
        fresh = self._fresh(name)
        if fresh is not None and not fresh.is_idle:
            self.kept.add(name)
            note = join_note(action.cloud or "?", action.instance or "?")
            self.torque.clear_offline(name, note)
            self._stage(action, Stage.BUSY, drain_started=None)
            return False
        self.secured.add(name)
        return True

    # -- actions ---------------------------------------------------------------------------
    def _join(self, a: Action) -> tuple[str, str]:
        assert a.node and a.instance and a.cloud
        props = self.settings[a.cloud].node_properties if a.cloud in self.settings else ()
        crashpoint("join.before")
        created = self.torque.add_node(a.node, a.np or 1, props, note=join_note(a.cloud, a.instance))
        crashpoint("join.created")
        self._stage(a, Stage.BOOTING, node=a.node)
        crashpoint("join.recorded")
        self.on_cloud_result(a.cloud, None)
        return "done", "" if created else "node already existed"

    def _undrain(self, a: Action) -> tuple[str, str]:
        assert a.node
        self.torque.clear_offline(a.node, join_note(a.cloud or "?", a.instance or "?"))
        crashpoint("undrain.cleared")
        self._stage(a, Stage.IDLE, drain_started=None)
        return "done", ""

    def _drain(self, a: Action) -> tuple[str, str]:
        assert a.node
        self._stage(a, Stage.DRAINING, drain_started=self.now)  # intent first: a restart resumes
        crashpoint("drain.recorded")
        if not self._secure(a.node, a.reason, a):
            return "skipped", "a job started on it; put back in service"
        return "done", ""

    def _terminate(self, a: Action) -> tuple[str, str]:
        assert a.cloud and a.instance
        name = a.node or self.dns.get(a.instance)
        if name:
            if a.node:
                if not self._secure(name, a.reason, a):
                    return "skipped", "the node runs a job"
            else:
                fresh = self._fresh(name)
                if fresh is not None and not fresh.is_idle:
                    return "skipped", f"Torque node {name} runs a job"
        self._stage(a, Stage.TERMINATING)
        self._count_fault(a)
        crashpoint("terminate.before")
        self.providers[a.cloud].terminate(a.instance)
        crashpoint("terminate.after")
        return "done", ""

    def _remove(self, a: Action) -> tuple[str, str]:
        assert a.node
        if a.node in self.kept:
            return "skipped", "the node runs a job"
        fresh = self._fresh(a.node)
        if fresh is None:
            return "done", "already gone from Torque"
        if not fresh.is_idle:
            return "skipped", "the node runs a job"
        crashpoint("remove.before")
        self.torque.delete_node(a.node)
        crashpoint("remove.after")
        return "done", ""

    def _cancel(self, a: Action) -> tuple[str, str]:
        assert a.cloud and a.count
        self._count_fault(a)
        crashpoint("cancel.before")
        desired = self.providers[a.cloud].cancel_requests(a.count)
        crashpoint("cancel.after")
        return "done", f"desired capacity now {desired}"

    def _launch(self, a: Action) -> tuple[str, str]:
        assert a.cloud and a.count
        cloud = self.snapshot.cloud(a.cloud)
        new = min(cloud.capacity + a.count, cloud.max_instances)
        if new <= cloud.desired:
            return "skipped", "already at that capacity"
        crashpoint("launch.before")
        self.providers[a.cloud].set_desired(new)
        crashpoint("launch.after")
        return "done", f"desired capacity {cloud.desired} -> {new}"
