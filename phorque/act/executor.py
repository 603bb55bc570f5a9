"""Applying a plan to Torque and the clouds, in a safe order, recording what happened.

The executor is the only place that changes anything. Its safety rules:

* a node is terminated only after it was marked offline with Phorque's note and read again
  with no job on it (a node that picked up a job meanwhile is put back in service, and a node
  the fresh read does not show is not terminated: that read cannot vouch for it);
* an instance planned for termination as having no node is spared if Torque now lists one;
* a node is removed from Torque only when a fresh read shows it has no job, and never in the
  step whose termination of its instance failed (the instance still runs, and is billed);
* an administrator's offline wins: a node offline with a note that is not Phorque's draining
  note is never offlined over, put back in service, terminated or removed, and the re-read
  after Phorque's offline must show Phorque's own note (Torque has no compare-and-set, so the
  note is checked just before it is replaced and again just after);
* a cloud that fails during the plan gets no launch from the rest of it (the engine plans
  again, with the cloud backed off);
* an action that answers a fault of its cloud (an instance that never joined, a request that
  never started) reports the fault before it acts, so that a crash in between cannot forget it
  and let a restarted daemon launch on that cloud again at once;
* every failure is logged with what was tried and recorded; the other actions go on.

It runs while the caller holds the cloud lock, with the snapshot the plan was made from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from phorque.act.crashpoints import crashpoint
from phorque.act.events import EventType, emit
from phorque.adapters.config import CloudSettings
from phorque.core.errors import CloudError, PhorqueError, TorqueError
from phorque.core.model import NOTE_MARK, JobId, Node, NodeName, Snapshot, Stage
from phorque.core.plan import Action, Kind, Plan, Status
from phorque.core.ports import CloudGroup, LifecycleRecords, TorqueAdmin
from phorque.policy.view import drain_note, is_drain_note, join_note

log = logging.getLogger("phorque.executor")

#: At most this many `qmgr delete node` at once.
REMOVE_WORKERS = 8

# Why an action was skipped or a node kept: an outcome's detail, the same words wherever the
# same rule says no (the log, phorque-status and the tests look for them).
ADMIN_HELD = "set offline by an administrator; left alone"
ADMIN_CHANGED = "an administrator changed its note or offline; left alone"
PICKED_UP_A_JOB = "a job started on it; put back in service"
TERMINATE_FAILED = "the termination of its instance failed; the node stays until the instance is gone"
AT_CAPACITY = "already at that capacity"
RUNS_A_JOB = "the node runs a job"
ALREADY_GONE = "already gone from Torque"


def not_listed(name: str) -> str:
    """A fresh read did not show the node: it cannot vouch that the node is empty."""
    return f"Torque did not list node {name} when read again; not terminated"


@dataclass(frozen=True)
class Outcome:
    action: Action
    status: Status
    detail: str = ""

    def as_dict(self) -> dict:
        out = self.action.as_dict()
        out["outcome"] = self.status if not self.detail else f"{self.status}: {self.detail}"
        return out


def interrupted_note(reason: str) -> str:
    """The note of a node whose instance the cloud took back."""
    return f"{NOTE_MARK} interrupted: {reason}"


def _refusal(exc: TorqueError) -> str:
    """pbs_server's words for a refused requeue, on one line."""
    text = getattr(exc, "stderr", "") or str(exc)
    if getattr(exc, "returncode", 0) is None:  # timed out or could not start: no answer
        text = str(exc)
    return " ".join(text.split())[:200] or "refused"


class Executor:
    """Applies one plan. ``providers`` maps cloud names to their groups; ``state`` keeps the
    instances' records. The daemon gives it the command-line Torque, the boto3 groups and the
    state store; the replay gives it its simulated cluster, groups and records, so that both
    apply plans by the same rules. ``remove_workers`` bounds the node deletions run side by
    side (1: one after the other, in the plan's order)."""

    def __init__(self, torque: TorqueAdmin, providers: Mapping[str, CloudGroup], settings: Mapping[str, CloudSettings],
                 state: LifecycleRecords, now: float, on_cloud_result: Callable[[str, str | None], None],
                 remove_workers: int = REMOVE_WORKERS):
        self.torque = torque
        self.remove_workers = remove_workers
        self.providers = providers
        self.settings = settings
        self.state = state
        self.now = now
        self.on_cloud_result = on_cloud_result  # (cloud, error or None): feeds back-off
        self.failed_clouds: set[str] = set()     # clouds that failed during this plan
        self.secured: set[str] = set()
        self.kept: dict[str, str] = {}           # node -> why it is not terminated
        self.counted: set[Action] = set()        # fault actions already reported
        self.raised: dict[Action, int] = {}      # launch -> instances it added to its group
        self.evacuated: set[str] = set()         # nodes of instances taken back, jobs requeued

    def apply(self, plan: Plan, snapshot: Snapshot) -> list[Outcome]:
        self.snapshot = snapshot
        self._dns: dict[str, NodeName | None] | None = None
        outcomes: list[Outcome] = []
        kicked = False
        ordered = plan.ordered()
        removals = [a for a in ordered if a.kind == Kind.REMOVE]
        for action in ordered:
            if action.kind == Kind.REMOVE:
                continue
            outcomes.append(self._apply_one(action))
            if outcomes[-1].status == Status.DONE and action.kind in (Kind.JOIN, Kind.UNDRAIN):
                kicked = True
            if outcomes[-1].status == Status.FAILED and action.kind == Kind.TERMINATE:
                name = action.node or (self.dns.get(action.instance) if action.instance else None)
                if name:
                    self.kept.setdefault(name, TERMINATE_FAILED)
        outcomes.extend(self._remove_all(removals))
        if kicked:
            try:
                self.torque.schedule()
            except PhorqueError as exc:
                log.warning("could not ask pbs_server to schedule: %s", exc)
        return outcomes

    def _apply_one(self, action: Action) -> Outcome:
        try:
            status, detail = HANDLERS[action.kind](self, action)
        except PhorqueError as exc:
            status, detail = Status.FAILED, str(exc)
            # Only the cloud's own failures count against it: a Torque read failing during a
            # termination is no reason to back off the cloud.
            if isinstance(exc, CloudError) and action.cloud and action not in self.counted:
                self._report(action.cloud, str(exc))
        outcome = Outcome(action, status, detail)
        level = logging.WARNING if status == Status.FAILED else logging.INFO
        if not log.isEnabledFor(level):
            return outcome  # a replay applies hundreds of thousands of plans unlogged
        added = self.raised.get(action) if status == Status.DONE else None
        emit(log, EventType.of_action(action.kind.value), "%s -> %s%s", action, status, f" ({detail})" if detail else "",
             level=level, cloud=action.cloud, instance=action.instance, node=action.node,
             count=action.count, reason=action.reason, outcome=status, detail=detail or None,
             added=added, fault=action.fault or None)
        return outcome

    def _remove_all(self, removals: list[Action]) -> list[Outcome]:
        """Remove nodes side by side: each `qmgr delete node` holds for 2 s or more on a real
        pbs_server, and the server serves them in parallel threads."""
        if len(removals) <= 1 or self.remove_workers <= 1:
            return [self._apply_one(a) for a in removals]
        with ThreadPoolExecutor(max_workers=min(len(removals), self.remove_workers),
                                thread_name_prefix="remove") as pool:
            return list(pool.map(self._apply_one, removals))

    def fallen(self) -> list[str]:
        """The clouds usable in the snapshot that failed while the plan was applied (they are
        backed off now): planning again at once sends their share to the next cloud, instead
        of waiting for another trigger. Each further pass needs one more cloud to fall, so an
        evaluation makes at most 1 + clouds passes."""
        failed = self.failed_clouds
        if not failed:
            return []
        return sorted(c.name for c in self.snapshot.clouds if c.usable and c.name in failed)

    # -- helpers ---------------------------------------------------------------------------
    @property
    def dns(self) -> dict[str, NodeName | None]:
        """Each instance's node name in the snapshot (built when first needed: most plans
        name their nodes)."""
        if self._dns is None:
            self._dns = {i.id: i.node_name for c in self.snapshot.clouds for i in c.instances if i.id}
        return self._dns

    def _report(self, cloud: str, error: str | None) -> None:
        if error is not None:
            self.failed_clouds.add(cloud)
        self.on_cloud_result(cloud, error)

    def _report_fault(self, action: Action) -> None:
        # Before the change, not after: a termination is no proof that launches work again,
        # so only its fault is reported (a scale-in must not clear the backoff of a cloud whose
        # launches fail), and reported first so that a crash right after cannot lose it.
        if action.fault and action.cloud:
            self._report(action.cloud, action.reason)
            self.counted.add(action)

    def _stage(self, action: Action, stage: Stage, **changes) -> None:
        if action.instance and action.cloud:
            self.state.set_stage(action.instance, action.cloud, stage, self.now, **changes)

    def _fresh(self, name: NodeName) -> Node | None:
        return self.torque.node(name)

    @staticmethod
    def _admin_held(node: Node) -> bool:
        """Offline with a note that is not Phorque's draining note: an administrator's. A node
        just created is offline by Torque itself (``MOM-list-not-sent``), not held."""
        return node.is_offline and not node.is_new and not is_drain_note(node.note)

    def _secure(self, name: NodeName, reason: str, action: Action) -> str | None:
        """Offline the node with Phorque's note and read it again: None if it is empty, else
        why it must not be terminated."""
        if name in self.secured:
            return None
        if name in self.kept:
            return self.kept[name]
        before = self._fresh(name)
        if before is None:
            self.kept[name] = not_listed(name)
            return self.kept[name]
        if self._admin_held(before):
            # Offlined by an administrator since the snapshot: their note stays, and so does
            # the node.
            self.kept[name] = ADMIN_HELD
            return self.kept[name]
        self.torque.offline(name, drain_note(reason))
        crashpoint("drain.offline")
        fresh = self._fresh(name)
        if fresh is None:
            # Just marked offline, yet not listed: this read cannot tell an empty node.
            self.kept[name] = not_listed(name)
            return self.kept[name]
        if not (fresh.is_offline and is_drain_note(fresh.note)):
            # Someone wrote their own note (or cleared the offline) between Phorque's read and
            # its write: that is an administrator's decision, and it wins.
            self.kept[name] = ADMIN_CHANGED
            return self.kept[name]
        if not fresh.is_idle:
            self.kept[name] = PICKED_UP_A_JOB
            note = join_note(action.cloud or "?", action.instance or "?")
            self.torque.clear_offline(name, note)
            self._stage(action, Stage.BUSY, drain_started=None)
            return self.kept[name]
        self.secured.add(name)
        return None

    # -- actions ---------------------------------------------------------------------------
    def _join(self, a: Action) -> tuple[Status, str]:
        assert a.node and a.instance and a.cloud
        settings = self.settings.get(a.cloud)
        props = settings.node_properties if settings else ()
        gpus = settings.instance_gpus if settings else 0
        # Intent first, with the time of the first try: the node's boot clock starts here, and
        # a join that keeps failing is given up once that clock runs out.
        rec = self.state.get(a.instance)
        tried = rec.down_since if rec is not None and rec.node == a.node and rec.joined_at is None \
            and rec.down_since is not None else self.now
        crashpoint("join.before")
        self._stage(a, Stage.BOOTING, node=a.node, down_since=tried)
        crashpoint("join.recorded")
        created = self.torque.add_node(a.node, a.np or 1, props, note=join_note(a.cloud, a.instance),
                                       gpus=gpus)
        crashpoint("join.created")
        self._report(a.cloud, None)
        return Status.DONE, "" if created else "node already existed"

    def _undrain(self, a: Action) -> tuple[Status, str]:
        assert a.node
        fresh = self._fresh(a.node)
        if fresh is None:
            return Status.SKIPPED, f"Torque did not list node {a.node} when read again"
        if self._admin_held(fresh):
            return Status.SKIPPED, ADMIN_HELD
        self.torque.clear_offline(a.node, join_note(a.cloud or "?", a.instance or "?"))
        crashpoint("undrain.cleared")
        self._stage(a, Stage.IDLE, drain_started=None)
        return Status.DONE, ""

    def _drain(self, a: Action) -> tuple[Status, str]:
        assert a.node
        self._stage(a, Stage.DRAINING, drain_started=self.now)  # intent first: a restart resumes
        crashpoint("drain.recorded")
        why = self._secure(a.node, a.reason, a)
        return (Status.SKIPPED, why) if why else (Status.DONE, "")

    def _terminate(self, a: Action) -> tuple[Status, str]:
        assert a.cloud and a.instance
        name = a.node or self.dns.get(a.instance)
        if name:
            if a.node:
                why = self._secure(name, a.reason, a)
                if why:
                    return Status.SKIPPED, why
            elif self._fresh(name) is not None:
                # Planned as an instance without a node; Torque lists one now (it joined since,
                # or it was missing from one bad read): the next evaluation decides with it.
                return Status.SKIPPED, f"Torque lists node {name} now"
        self._stage(a, Stage.TERMINATING)
        self._report_fault(a)
        crashpoint("terminate.before")
        self.providers[a.cloud].terminate(a.instance)
        crashpoint("terminate.after")
        return Status.DONE, ""

    def _remove(self, a: Action) -> tuple[Status, str]:
        assert a.node
        if a.node in self.kept:
            return Status.SKIPPED, self.kept[a.node]
        fresh = self._fresh(a.node)
        if fresh is None:
            return Status.DONE, ALREADY_GONE
        if not fresh.is_idle and a.node not in self.evacuated:
            return Status.SKIPPED, RUNS_A_JOB
        if self._admin_held(fresh) and a.node not in self.evacuated:
            return Status.SKIPPED, ADMIN_HELD
        crashpoint("remove.before")
        self.torque.delete_node(a.node)
        crashpoint("remove.after")
        return Status.DONE, ""

    def _requeue(self, a: Action) -> tuple[Status, str]:
        """The cloud took the instance back: no new job may land on its node, and every job
        there is requeued (``qrerun -f``) before the node is removed (deleting a node whose mom
        is gone purges its jobs). pbs_server refuses a job that is not rerunnable: its work is
        lost with the instance; it is purged (``qdel -p``), and said so."""
        assert a.cloud and a.instance
        self._report_fault(a)  # backed off first: nothing is launched there meanwhile
        requeued: list[str] = []
        lost: dict[str, str] = {}
        failed: dict[str, str] = {}
        fresh = self._fresh(a.node) if a.node else None
        if fresh is not None and a.node:
            if not self._admin_held(fresh):
                self.torque.offline(a.node, interrupted_note(a.reason))
            for job in fresh.jobs:
                try:
                    self.torque.rerun(job)
                    requeued.append(job)
                except TorqueError as exc:
                    why = _refusal(exc)
                    if "not rerunnable" in why.lower():
                        lost[job] = why + "; " + self._purge(job)
                    elif "unknown job" not in why.lower():  # an unknown job has ended meanwhile
                        failed[job] = why
            if failed:
                # Deleting the node now would purge these jobs: it stays, and the next
                # evaluation tries again.
                self.kept[a.node] = ("could not requeue " + ", ".join(f"{j} ({w})" for j, w in failed.items())
                                     + "; the node stays until its jobs are requeued")
            else:
                # What may be left on it died with the instance; pbs_server ends it with the node.
                self.evacuated.add(a.node)
        if a.fault or requeued or lost:
            self.state.record_interruption(self.now, a.cloud, a.instance, a.node, requeued, lost)
        detail = "; ".join(filter(None, [
            f"requeued {', '.join(requeued)}" if requeued else "",
            "; ".join(f"{job} not requeued ({why}): its work is lost with the instance"
                      for job, why in lost.items()),
            self.kept[a.node] if failed and a.node else "",
        ])) or ("no job on its node" if fresh is not None else "no node in Torque")
        emit(log, EventType.INSTANCE_INTERRUPTED, "cloud %s: instance %s taken back by the cloud; "
             "node %s: %s", a.cloud, a.instance, a.node or "-", detail, level=logging.WARNING,
             cloud=a.cloud, instance=a.instance, node=a.node, requeued=requeued, lost=lost,
             first=a.fault)
        return Status.DONE, detail

    def _purge(self, job: JobId) -> str:
        """Purge a job that died with its instance and cannot be requeued; what became of it."""
        try:
            self.torque.purge(job)
        except TorqueError as exc:
            return f"not purged ({_refusal(exc)}): pbs_server ends it when the node is removed"
        return "purged (qdel -p)"

    def _cancel(self, a: Action) -> tuple[Status, str]:
        assert a.cloud and a.count
        self._report_fault(a)
        crashpoint("cancel.before")
        desired = self.providers[a.cloud].cancel_requests(a.count)
        self.state.save_capacity(a.cloud, desired, self.now)
        crashpoint("cancel.after")
        return Status.DONE, f"desired capacity now {desired}"

    def _launch(self, a: Action) -> tuple[Status, str]:
        assert a.cloud and a.count
        if a.cloud in self.failed_clouds:
            return Status.SKIPPED, f"cloud {a.cloud} failed during this evaluation (backed off)"
        cloud = self.snapshot.cloud(a.cloud)
        new = min(cloud.capacity + a.count, cloud.max_instances)
        if new <= cloud.desired:
            return Status.SKIPPED, AT_CAPACITY
        # Recorded first: a reply lost after the change was made, or a crash, must not leave a
        # cloud that then cannot be read counted at its old capacity against the budget.
        self.state.save_capacity(a.cloud, new, self.now, raise_only=True)
        crashpoint("launch.before")
        self.providers[a.cloud].set_desired(new)
        crashpoint("launch.after")
        self.raised[a] = new - cloud.desired
        return Status.DONE, f"desired capacity {cloud.desired} -> {new}"


#: What applies each kind of action.
HANDLERS: dict[Kind, Callable[[Executor, Action], tuple[Status, str]]] = {
    Kind.JOIN: Executor._join, Kind.UNDRAIN: Executor._undrain, Kind.DRAIN: Executor._drain,
    Kind.TERMINATE: Executor._terminate, Kind.REMOVE: Executor._remove, Kind.REQUEUE: Executor._requeue,
    Kind.CANCEL: Executor._cancel, Kind.LAUNCH: Executor._launch}
