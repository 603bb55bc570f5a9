"""One evaluation: read Torque, the clouds and the state; run the policy; apply the plan.

Everything that changes a cloud, and the reads that decide it, happens while the cloud lock is
held, so the daemon, ``phorque-evaluate`` and the hooks never race. A dry run reads without the
lock and changes nothing (not even the state). A failed Torque read stops the evaluation before
any decision: a missing node in one bad read is not a vanished node.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from phorque.act.clusterview import ClusterView, Drift, Refreshed
from phorque.act.crashpoints import crashpoint
from phorque.act.events import EventType, emit
from phorque.act.executor import Executor, Outcome
from phorque.act.forgotten import check_nothing_forgotten
from phorque.act.snapshot import build, observe_all
from phorque.adapters.cloud.backoff import (
    CloudHealthRecord,
    health_at,
    record_failure,
    record_success,
    with_health,
)
from phorque.adapters.cloud.factory import make_provider
from phorque.adapters.cloud.lock import cloud_lock
from phorque.adapters.config import Config
from phorque.adapters.state import StateStore
from phorque.adapters.torque.commands import Torque
from phorque.core.errors import CloudError, PhorqueError, TorqueError, TransientError
from phorque.core.model import (
    CloudState,
    Health,
    Owned,
    Snapshot,
    Stage,
    summarize_snapshot,
)
from phorque.core.plan import Plan
from phorque.core.ports import CloudGroup, TorqueAdmin
from phorque.policy import make_policy
from phorque.policy.base import Policy

log = logging.getLogger("phorque.engine")


@dataclass
class Evaluation:
    """What one evaluation saw, decided and did."""

    time: float
    snapshot: Snapshot
    plan: Plan
    executed: bool
    outcomes: list[Outcome] = field(default_factory=list)
    #: How Torque was read: the whole queue (full) or what changed (incremental view).
    full_read: bool = True
    #: The incremental view found nothing changed: no cloud was read, nothing was decided.
    unchanged: bool = False
    #: What the full read found different from the incremental view (the first few), and
    #: how many differences there were.
    drift: list[Drift] = field(default_factory=list)
    drift_total: int = 0
    #: Nodes the view must read again soon (see ``Refreshed.unsettled``).
    unsettled: tuple[str, ...] = ()


class Engine:
    """Reads, decides and acts. Adapters are built from the configuration unless given."""

    def __init__(self, config: Config, torque: TorqueAdmin | None = None,
                 providers: Mapping[str, CloudGroup] | None = None,
                 state: StateStore | None = None, policy: Policy | None = None,
                 clock: Callable[[], float] = time.time, view: ClusterView | None = None):
        self.config = config
        self.torque: TorqueAdmin = torque or Torque(config.phorque.cluster_directory,
                                       config.phorque.command_timeout_secs)
        self._providers: dict[str, CloudGroup] | None = \
            dict(providers) if providers is not None else None
        self._state = state
        self.policy = policy or make_policy(config)
        self.clock = clock
        #: The daemon's live view of Torque; without one every evaluation reads the whole queue.
        self.view = view
        self._set_up: set[str] = set()
        self._refreshed: Refreshed | None = None

    @property
    def state(self) -> StateStore:
        if self._state is None:
            self._state = StateStore(self.config.phorque.state_path)
        return self._state

    @property
    def providers(self) -> dict[str, CloudGroup]:
        if self._providers is None:
            self._providers = {c.name: make_provider(c) for c in self.config.clouds}
        return self._providers

    # -- health ------------------------------------------------------------------------------
    def _health_records(self) -> dict[str, CloudHealthRecord]:
        return {name: CloudHealthRecord(**rec) for name, rec in self.state.health().items()}

    def _cloud_result(self, cloud: str, error: str | None) -> None:
        record = self._health_records().get(cloud, CloudHealthRecord())
        if error is None:
            updated = record_success(record, self.clock())
            if record.failures and updated != record:
                emit(log, EventType.CLOUD_RECOVERED, "cloud %s: answered again after %d failure(s)",
                     cloud, record.failures, cloud=cloud, failures=record.failures)
        else:
            updated = record_failure(record, self.clock(), error)
            if updated.failures == record.failures:
                emit(log, EventType.CLOUD_FAILURE, "cloud %s: failed again while backed off until %s (%s)",
                     cloud, _when(updated.backoff_until), error, level=logging.WARNING, cloud=cloud,
                     failures=updated.failures, backoff_until=updated.backoff_until, reason=error,
                     counted=False)
            else:
                emit(log, EventType.CLOUD_FAILURE, "cloud %s: failure %d recorded (%s); backing off until %s",
                     cloud, updated.failures, error, _when(updated.backoff_until), level=logging.WARNING,
                     cloud=cloud, failures=updated.failures, backoff_until=updated.backoff_until,
                     reason=error, counted=True)
        if updated != record:
            self.state.save_health(cloud, asdict(updated))

    # -- reading -------------------------------------------------------------------------------
    def _ensure_setup(self) -> None:
        for settings in self.config.clouds:
            if settings.name in self._set_up:
                continue
            try:
                self.providers[settings.name].ensure_setup()
                self._set_up.add(settings.name)
            except CloudError as exc:
                log.warning("cloud %s: set-up failed: %s", settings.name, exc)
                self._cloud_result(settings.name, str(exc))

    def read_clouds(self, now: float, records: Mapping[str, CloudHealthRecord],
                    record_errors: bool, fresh: bool = True) -> tuple[CloudState, ...]:
        """Every cloud's group; ``fresh=False`` lets a cloud reuse EC2's word on settled members
        (``CloudProvider.describe``)."""
        out = []
        believed = self.state.capacities()
        for settings in self.config.clouds:
            record = records.get(settings.name, CloudHealthRecord())
            try:
                group = self.providers[settings.name].describe(fresh=fresh)
            except CloudError as exc:
                if exc.code == "NoSuchGroup" and not record_errors:
                    # A dry run before the first start: the group will be created empty.
                    out.append(settings.state(health_at(record, now)))
                    continue
                known = self._known_capacity(settings.name, believed)
                emit(log, EventType.CLOUD_UNREACHABLE, "cloud %s: cannot read its group: %s; nothing is "
                     "launched or terminated there until it answers, and its %d known instance(s) "
                     "still count against price_per_hour", settings.name, exc, known,
                     level=logging.WARNING, cloud=settings.name, reason=str(exc), known=known)
                if record_errors:
                    self._cloud_result(settings.name, str(exc))
                # Its instances are unknown, not gone: what it last had (or what the state store
                # owns there) still costs money, so the budget is not spent twice.
                out.append(settings.state(Health.UNREACHABLE, desired=known, error=str(exc)))
                continue
            cloud = with_health(settings.state(desired=group.desired, instances=group.instances,
                                               launch_failure=group.launch_failure), record, now)
            if record_errors and believed.get(settings.name) != cloud.capacity:
                self.state.save_capacity(settings.name, cloud.capacity, now)
            out.append(cloud)
        return tuple(out)

    def _known_capacity(self, cloud: str, believed: Mapping[str, int]) -> int:
        """Instances a cloud that cannot be read is believed to have: the capacity it showed last
        or was asked for since (kept in the state, so that a restarted daemon and every
        ``phorque-evaluate`` know it too), or the live instances the state store owns there."""
        owned = sum(1 for o in self.state.owned() if o.cloud == cloud and o.stage.is_live)
        return max(owned, believed.get(cloud, 0))

    def read_torque(self, now: float, full: bool = True) -> Refreshed:
        """Jobs and nodes: the whole queue, or (with a live view and not ``full``) what changed
        since the last read. Raises TransientError when Torque cannot be read."""
        try:
            if self.view is None:
                return Refreshed(tuple(self.torque.jobs()), tuple(self.torque.nodes()), full=True,
                                 changed=True)
            # A booting instance's node turns up when its mom first reports, which is written
            # nowhere Phorque watches: read those nodes at every look.
            self.view.nodes_changed(o.node for o in self.state.owned()
                                    if o.stage.is_live and o.joined_at is None)
            return self.view.refresh(self.torque, now, full)
        except TorqueError as exc:
            raise TransientError(f"Torque could not be read, nothing decided: {exc}") from exc

    def snapshot(self, now: float, save: bool, torque: Refreshed | None = None,
                 fresh_clouds: bool = True) -> Snapshot:
        read = torque if torque is not None else self.read_torque(now)
        jobs, nodes = read.jobs, read.nodes
        clouds = self.read_clouds(now, self._health_records(), record_errors=save, fresh=fresh_clouds)
        seen = observe_all(now, clouds, nodes, self.state)
        stale = {o.node for o in seen.changed if o.node}
        if self.view is not None and not read.full and stale:
            # An instance changed (came up, went away, was taken back): its node is read again
            # now, as a full read would have, before anything is concluded about it.
            self.view.nodes_changed(stale)
            try:
                read = self.view.refresh(self.torque, now)
            except TorqueError as exc:
                raise TransientError(f"Torque could not be read, nothing decided: {exc}") from exc
            jobs, nodes = read.jobs, read.nodes
            seen = observe_all(now, clouds, nodes, self.state)  # nothing was saved in between
        if save:
            self._report_lost(seen.previous, seen.changed)
        if save and seen.changed:
            self.state.save(seen.changed, now)
            crashpoint("observe.saved")
            self._kick_scheduler_for_new_nodes(seen.previous, seen.changed)
        return build(now, jobs, nodes, clouds, seen, self.state, self.state.memory(), save=save,
                     forgotten=_report_forgotten, queue_index=read.queue_index)

    @staticmethod
    def _report_lost(previous: Sequence[Owned], changed: Sequence[Owned]) -> None:
        """Instances gone that Phorque did not terminate: taken back by the cloud (a spot
        reclaim, a failed host) or by someone else."""
        before = {o.instance_id: o for o in previous}
        for rec in changed:
            old = before.get(rec.instance_id)
            if rec.stage == Stage.GONE and old is not None and old.stage not in (
                    Stage.TERMINATING, Stage.GONE):
                emit(log, EventType.INSTANCE_LOST, "cloud %s: instance %s is gone, and Phorque did "
                     "not terminate it (it was %s)", rec.cloud, rec.instance_id, old.stage.value,
                     level=logging.WARNING, cloud=rec.cloud, instance=rec.instance_id,
                     node=old.node, stage=old.stage.value)

    def _kick_scheduler_for_new_nodes(self, previous: Sequence[Owned], changed: Sequence[Owned]) -> None:
        """A node of Phorque's that has just come up gets no job until the scheduler runs a cycle,
        and nothing Torque writes tells pbs_sched that a node came up: its next cycle may be
        `scheduler_iteration` (600 s by default) away. Ask for one now."""
        before = {o.instance_id: o for o in previous}
        up = [o.node for o in changed if o.joined_at is not None and o.node
              and (o.instance_id not in before or before[o.instance_id].joined_at is None)]
        if not up:
            return
        try:
            self.torque.schedule()
            log.info("node(s) %s came up: asked pbs_server for a scheduling cycle", ", ".join(up))
        except PhorqueError as exc:
            log.warning("could not ask pbs_server to schedule: %s", exc)

    # -- one evaluation --------------------------------------------------------------------------
    def evaluate(self, dry_run: bool = False, full: bool = True,
                 skip_unchanged: bool = False, fresh_clouds: bool | None = None) -> Evaluation:
        """Evaluate now. Raises TransientError when Torque cannot be read.

        With a live view, ``full=False`` reads only what changed in Torque; ``skip_unchanged``
        then ends the evaluation before any cloud is read when nothing did (a trigger that
        changes nothing a decision depends on costs no cloud call). ``fresh_clouds`` (default:
        ``full``) has EC2 describe every member again, settled ones included."""
        fresh = full if fresh_clouds is None else fresh_clouds
        if dry_run:
            if self._state is None and not os.path.exists(self.config.phorque.state_path):
                self._state = StateStore(":memory:")  # nothing is written by a dry run
            now = self.clock()
            snap = self.snapshot(now, save=False)
            return Evaluation(now, snap, self.policy.plan(snap), executed=False)
        lock = cloud_lock(self.config.phorque.lock_path)
        outcomes: list[Outcome] = []
        with lock:
            read = self.read_torque(self.clock(), full)
            if skip_unchanged and not read.full and not read.changed:
                snap = Snapshot(now=self.clock(), jobs=read.jobs, nodes=read.nodes)
                return Evaluation(snap.now, snap, Plan(), executed=False, full_read=False,
                                  unchanged=True, unsettled=read.unsettled)
            # Never act under a configuration that forgets instances Phorque owns.
            check_nothing_forgotten(self.config, self.state)
            self._ensure_setup()
            # A cloud that fails while the plan is applied is backed off: plan again at once
            # (Executor.fallen), at most 1 + clouds passes.
            for attempt in range(1 + len(self.config.clouds)):
                now = self.clock()
                snap = self.snapshot(now, save=True, torque=read if attempt == 0 else None,
                                     fresh_clouds=fresh or attempt > 0)
                plan = self.policy.plan(snap)
                executor = Executor(self.torque, self.providers,
                                    {c.name: c for c in self.config.clouds}, self.state, now,
                                    self._cloud_result)
                done = executor.apply(plan, snap)
                outcomes += done
                if self.view is not None:
                    self.view.nodes_changed(o.action.node for o in done)
                self.state.save_memory(dict(plan.memory))
                if done:
                    self.state.record_decisions(now, self.policy.name, [o.as_dict() for o in done])
                fallen = executor.fallen()
                if not fallen:
                    break
                log.warning("cloud(s) %s backed off during this evaluation: planning again, so "
                            "that the next cloud is used", ", ".join(fallen))
        for note in plan.notes:
            emit(log, EventType.NOTE, "note: %s", note, policy=self.policy.name, note=note)
        return Evaluation(now, snap, plan, executed=True, outcomes=outcomes, full_read=read.full,
                          drift=read.drift, drift_total=read.drift_total, unsettled=read.unsettled)


def _report_forgotten(names: list[str]) -> None:
    emit(log, EventType.NODES_FORGOTTEN, "node(s) %s of gone instances no longer listed by Torque: "
         "their names are released", ", ".join(names), nodes=names)


def evaluation_json(config: Config, ev: Evaluation) -> dict[str, Any]:
    """The ``phorque-evaluate --json`` object."""
    summary = summarize_snapshot(ev.snapshot, config.phorque.queues).as_dict()
    cluster = {k: summary[k] for k in ("queued_jobs", "queued_cores", "total_cores", "free_cores",
                                       "down_cores")}
    clouds = [{"name": c.name, "price": c.price, "desired": c.desired,
               "instances": len(c.valid_instances), "max_instances": c.max_instances,
               "health": c.health.value} for c in ev.snapshot.clouds]
    if ev.executed:
        actions = [o.as_dict() for o in ev.outcomes]
    else:
        actions = [a.as_dict() for a in ev.plan.ordered()]
    return {"time": _when(ev.time), "policy": config.policy.name, "cluster": cluster,
            "clouds": clouds, "actions": actions, "notes": list(ev.plan.notes),
            "executed": ev.executed}


def _when(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="seconds")
