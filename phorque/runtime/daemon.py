"""The daemon's loop: wait for a trigger, evaluate, answer nudges, repeat.

Triggers are Torque's files (:mod:`phorque.runtime.watcher`), nudges from ``phorque-evaluate`` and the
submit filter (:mod:`phorque.runtime.nudge`), the policy's own wake-up time (an idle instance reaching
its drain moment), a retry after a skipped evaluation (5 s, doubling up to ``loop_sleep_secs``)
and a full reconciliation every ``loop_sleep_secs``; when each is due is
:class:`phorque.core.schedule.Schedule`'s to say, which the replay follows too. SIGTERM and SIGINT stop
the loop after the current step; SIGHUP reloads the configuration (a broken file is reported and
the running configuration kept).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from filelock import Timeout as LockTimeout

from phorque.act.clusterview import ClusterView
from phorque.act.engine import Engine, Evaluation, evaluation_json
from phorque.act.events import EventType, emit
from phorque.act.forgotten import check_nothing_forgotten
from phorque.adapters.config import Config, load_config
from phorque.adapters.private import private_dir
from phorque.adapters.state import StateStore
from phorque.core.errors import ConfigError, PhorqueError, TransientError
from phorque.core.model import Job, summarize_snapshot
from phorque.core.plan import Kind, Status
from phorque.core.schedule import MIN_EVALUATION_INTERVAL_SECS, RATE_BURST, Schedule
from phorque.policy.why import WhyKind, explain
from phorque.runtime.clock import SYSTEM, Clock
from phorque.runtime.nudge import NudgeListener
from phorque.runtime.spotwatch import REASON as SPOT_REASON
from phorque.runtime.spotwatch import SpotWatch
from phorque.runtime.triggers import Fired, Trigger
from phorque.runtime.watcher import TorqueWatcher, is_file_event

if TYPE_CHECKING:
    from phorque.runtime.metrics import Metrics

log = logging.getLogger("phorque.daemon")

#: Triggers gathered into one evaluation from which the rate limit is logged.
RATE_LOG_THRESHOLD = 20
#: Triggers that may find nothing changed in Torque, and then cost no evaluation: file events,
#: and the submit filter's nudge (sent before its job exists; the job's Q record follows).
SKIPPABLE = frozenset({"submit filter"})


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_daemon(config: Config) -> int | None:
    """The pid of a running daemon for this configuration's state, if any."""
    try:
        with open(config.phorque.pid_path) as handle:
            pid = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and pid_alive(pid) else None


class AlreadyRunning(PhorqueError):
    pass


class Daemon:
    """One daemon process. ``run()`` returns when stopped."""

    def __init__(self, config: Config, once: bool = False, engine: Engine | None = None,
                 clock: Clock = SYSTEM):
        self.config = config
        self.once = once
        self.clock = clock
        self.trigger = Trigger(clock.monotonic)
        self.stopping = False
        self.reload_requested = False
        #: Built from the configuration unless given (the component tests give one on
        #: in-memory ports); a reload builds a new one from the new configuration.
        self.engine = engine or Engine(config, clock=clock.time)
        self.watcher: TorqueWatcher | None = None
        self.listener: NudgeListener | None = None
        self.evaluations = 0
        self.last_ok = False  # did the last evaluation complete (for --once's exit status)?
        self.metrics: Metrics | None = None
        self.spot_watch: SpotWatch | None = None
        #: The live view of Torque the watcher feeds (None without file watching: every
        #: evaluation then reads the whole queue).
        self.view: ClusterView | None = None
        self.reads = {"full": 0, "incremental": 0, "unchanged": 0}
        self.drift_total = 0
        self.last_drift: list[str] = []

    @property
    def state(self) -> StateStore:
        return self.engine.state

    # -- signals ---------------------------------------------------------------------------
    def _on_stop(self, signum: int, _frame: Any) -> None:
        log.info("%s received: stopping after the current step", signal.Signals(signum).name)
        self.stopping = True
        self.trigger.fire("stop")

    def _on_hup(self, _signum: int, _frame: Any) -> None:
        log.info("SIGHUP received: reloading the configuration")
        self.reload_requested = True
        self.trigger.fire("reload")

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    # -- start and stop --------------------------------------------------------------------
    def _claim_pidfile(self) -> None:
        other = running_daemon(self.config)
        if other is not None and other != os.getpid():
            raise AlreadyRunning(f"another phorque daemon runs with this state_dir (pid {other})")
        private_dir(self.config.phorque.state_dir)
        tmp = f"{self.config.phorque.pid_path}.{os.getpid()}"
        with open(os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644), "w") as handle:
            handle.write(f"{os.getpid()}\n")
        os.replace(tmp, self.config.phorque.pid_path)

    def _release_pidfile(self) -> None:
        try:
            with open(self.config.phorque.pid_path) as handle:
                if int(handle.read().strip() or 0) == os.getpid():
                    os.unlink(self.config.phorque.pid_path)
        except (OSError, ValueError):
            pass

    def _start_inputs(self) -> None:
        p = self.config.phorque
        if p.trigger is not None:
            try:
                self.listener = NudgeListener(p.trigger, self.trigger)
                self.listener.start()
                log.info("taking nudges on udp %s:%d", p.trigger[0], self.listener.port)
            except OSError as exc:
                log.warning("cannot listen for nudges on %s: %s (file events and the timer go on)",
                            p.trigger_address, exc)
                self.listener = None
        if p.watch_files:
            view = ClusterView()
            self.watcher = TorqueWatcher(p.torque_home, self.trigger, p.queues,
                                         os.path.join(p.state_dir, "accounting.pos"), view=view)
            try:
                self.watcher.start()
                self.view = view
            except Exception as exc:  # inotify limits and the like: the timer covers it
                log.warning("file watching unavailable (%s); polling every %d s", exc, p.loop_sleep_secs)
                self.watcher = None
                self.view = None
        else:
            log.info("file watching is off: evaluating every %d s and on nudges", p.loop_sleep_secs)
        self.spot_watch = SpotWatch(self.config.clouds, self.trigger, p.interruption_poll_secs)
        self.spot_watch.start()

    def _start_metrics(self) -> None:
        address = self.config.phorque.metrics
        if address is None or self.metrics is not None:
            return
        from phorque.runtime.metrics import Metrics  # prometheus_client only where metrics are on

        metrics = Metrics(self.clock.time())
        try:
            port = metrics.serve(*address)
        except OSError as exc:
            log.warning("cannot serve metrics on %s: %s (the daemon goes on without them)",
                        self.config.phorque.metrics_address, exc)
            return
        logging.getLogger().addHandler(metrics.handler)
        self.metrics = metrics
        log.info("serving Prometheus metrics on http://%s:%d/metrics", address[0], port)

    def _stop_metrics(self) -> None:
        if self.metrics is not None:
            logging.getLogger().removeHandler(self.metrics.handler)
            self.metrics.stop()
            self.metrics = None

    def _stop_inputs(self) -> None:
        self.view = None
        self.engine.view = None
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        if self.spot_watch is not None:
            self.spot_watch.stop()
            self.spot_watch = None

    def _reload(self, path: str) -> None:
        self.reload_requested = False
        try:
            config = load_config(path)
            check_nothing_forgotten(config, self.state)
        except ConfigError as exc:
            emit(log, EventType.CONFIG_REJECTED, "configuration reload failed, keeping the running "
                 "configuration: %s", exc, level=logging.ERROR, reason=str(exc))
            return
        self._stop_inputs()
        moved = config.phorque.metrics_address != self.config.phorque.metrics_address
        if moved:
            self._stop_metrics()
        self.config = config
        self.engine = Engine(config, state=self.engine.state, clock=self.clock.time)
        self._start_inputs()
        if moved:
            self._start_metrics()
        emit(log, EventType.CONFIG_RELOADED, "configuration reloaded: %s", config.summary(),
             policy=config.policy.name, clouds=[c.name for c in config.clouds])

    # -- the loop ----------------------------------------------------------------------------
    def _live_view(self) -> ClusterView | None:
        """The view, when the watcher follows both the accounting log and the jobs directory;
        else None (what it misses would go unseen until the next reconciliation)."""
        if self.view is None:
            return None
        if self.watcher is None or not self.watcher.watching_all:
            self.view.invalidate()  # nothing is kept for a view that is not used
            return None
        return self.view

    def evaluate(self, fired: Fired, reason: str, full: bool = True,
                 may_skip: bool = True, fresh_clouds: bool | None = None) -> Evaluation | None:
        """One evaluation: a full read of Torque when ``full`` (start, reconciliation, retry),
        else what the live view says changed. An incremental one that only file events asked
        for ends at once when Torque changed in nothing (and counts as no evaluation)."""
        started = self.clock.monotonic()
        why = fired.describe() if fired else reason
        view = self._live_view()
        self.engine.view = view
        skippable = (may_skip and view is not None and not full and bool(fired)
                     and all(is_file_event(r) or r in SKIPPABLE for r in fired.reasons))
        try:
            ev = self.engine.evaluate(full=full or view is None, skip_unchanged=skippable,
                                      fresh_clouds=fresh_clouds)
        except Exception as exc:  # the daemon goes on, whatever one evaluation raised
            self.evaluations += 1
            self._not_evaluated(self.evaluations, why, exc)
            return None
        if ev.unchanged:
            self.reads["unchanged"] += 1
            log.debug("%s: nothing changed in Torque; no evaluation", why)
            try:
                self.state.set_daemon(reads=dict(self.reads))
            except PhorqueError as exc:
                log.warning("cannot record the reads in the state: %s", exc)
            return ev
        self.evaluations += 1
        n = self.evaluations
        self.reads["full" if ev.full_read else "incremental"] += 1
        if ev.drift_total:
            self._drift(ev)
        return self._finish(ev, n, why, started)

    def _not_evaluated(self, n: int, why: str, exc: Exception) -> None:
        """Log and record an evaluation that could not be made: skipped when the cause passes
        (Torque or a cloud unreachable, the lock busy), failed otherwise."""
        if isinstance(exc, TransientError):
            self._skipped(n, why, str(exc), "skipped")
        elif isinstance(exc, LockTimeout):
            self._skipped(n, why, f"lock busy: {exc}", "skipped")
        elif isinstance(exc, PhorqueError):
            self._skipped(n, why, str(exc), "failed")
        else:
            log.error("evaluation #%d (%s) failed unexpectedly; the daemon goes on", n, why,
                      exc_info=exc)
            self._skipped(n, why, f"unexpected: {exc!r}", "failed", logged=True)

    def _drift(self, ev: Evaluation) -> None:
        """Log and count what the reconciliation found different from the incremental view."""
        self.drift_total += ev.drift_total
        self.last_drift = [d.describe() for d in ev.drift]
        more = ev.drift_total - len(ev.drift)
        emit(log, EventType.VIEW_DRIFT, "reconciliation: the full read found %d difference(s) from "
             "the live view%s", ev.drift_total, f" ({more} not listed)" if more > 0 else "",
             level=logging.WARNING, total=ev.drift_total, differences=self.last_drift)
        for text in self.last_drift:
            log.warning("reconciliation: %s", text)

    def _finish(self, ev: Evaluation, n: int, why: str, started: float) -> Evaluation:
        took = self.clock.monotonic() - started
        done = sum(1 for o in ev.outcomes if o.status == Status.DONE)
        queue = summarize_snapshot(ev.snapshot, self.config.phorque.queues)
        emit(log, EventType.EVALUATION, "evaluation #%d (%s): %d action(s), %d done, %.2f s", n, why,
             len(ev.outcomes), done, took, number=n, trigger=why, actions=len(ev.outcomes), done=done,
             duration_secs=round(took, 4), queued_jobs=queue.queued_jobs,
             queued_cores=queue.queued_cores, desired={c.name: c.capacity for c in ev.snapshot.clouds},
             spending_per_hour=round(ev.snapshot.spend_rate, 4),
             price_per_hour=self.config.policy.price_per_hour)
        if self.metrics is not None:
            self.metrics.evaluation(why, "done", took)
            self.metrics.observe(self.config, ev.snapshot, self.clock.time())
            self._reactions(ev)
        try:
            self.state.set_daemon(last_evaluation=ev.time, last_reason=why, last_duration=round(took, 3),
                                  evaluations=self.evaluations,
                                  last_result=evaluation_json(self.config, ev),
                                  reads=dict(self.reads), view_drift_total=self.drift_total,
                                  view_last_drift=self.last_drift)
        except PhorqueError as exc:
            log.warning("cannot record the evaluation in the state: %s", exc)
        return ev

    def _skipped(self, n: int, why: str, error: str, result: str, logged: bool = False) -> None:
        if not logged:
            level = logging.WARNING if result == "skipped" else logging.ERROR
            event = EventType.EVALUATION_SKIPPED if result == "skipped" else EventType.EVALUATION_FAILED
            emit(log, event, "evaluation #%d (%s) %s: %s", n, why, result, error, level=level,
                 number=n, trigger=why, reason=error)
        if self.metrics is not None:
            self.metrics.evaluation(why, result, None)

    def _reactions(self, ev: Evaluation) -> None:
        """Time, for each job an executed launch was for, from its queue time to the launch."""
        if not any(o.status == Status.DONE and o.action.kind == Kind.LAUNCH for o in ev.outcomes):
            return
        assert self.metrics is not None
        try:
            whys = explain(ev.snapshot, ev.plan, self.config.policy.price_per_hour,
                           self.config.phorque.queues, launches_only=True)
        except Exception:  # a metric never stops the daemon
            log.exception("cannot tell which jobs this evaluation launched for")
            return
        queued: dict[str, Job] = {j.id: j for j in ev.snapshot.jobs if j.is_queued}
        for job_id, why in whys.items():
            if why.kind == WhyKind.LAUNCHING and job_id in queued:
                self.metrics.reacted(job_id, queued[job_id].queued_at, ev.time)

    def run(self, config_path: str) -> None:
        check_nothing_forgotten(self.config, self.state)  # before anything starts: refused
        self._claim_pidfile()
        try:
            self.state.set_daemon(pid=os.getpid(), started=self.clock.time(), status="running",
                                  heartbeat=self.clock.time())
            self._start_metrics()
            self._start_inputs()
            emit(log, EventType.DAEMON_STARTED, "started: %s", self.config.summary(), pid=os.getpid(),
                 policy=self.config.policy.name, clouds=[c.name for c in self.config.clouds])
            log.info("rate limit: file events and nudges cause at most one evaluation per %.1f s "
                     "(more are gathered into it), %d back to back after a quiet moment",
                     MIN_EVALUATION_INTERVAL_SECS, RATE_BURST)
            self._loop(config_path)
        finally:
            self._stop_inputs()
            try:
                self.state.set_daemon(status="stopped", heartbeat=self.clock.time())
            except PhorqueError:
                pass
            self._release_pidfile()
            self._stop_metrics()
            emit(log, EventType.DAEMON_STOPPED, "stopped after %d evaluation(s)", self.evaluations,
                 evaluations=self.evaluations)

    def _loop(self, config_path: str) -> None:
        p = self.config.phorque
        schedule = Schedule.starting(self.clock.monotonic(), p.loop_sleep_secs, p.event_delay_secs)
        fired = Fired()
        reloaded = False
        while not self.stopping:
            if self.reload_requested:
                self._reload(config_path)
                reloaded = True
                schedule.loop_secs = float(self.config.phorque.loop_sleep_secs)
                schedule.event_delay_secs = float(self.config.phorque.event_delay_secs)
            due = schedule.due(self.clock.monotonic(), self.clock.time(), bool(fired))
            if due is not None:
                if due.sweep and self.watcher is not None:
                    self.watcher.ensure()
                if fired.total >= RATE_LOG_THRESHOLD:
                    log.info("rate limit: %d triggers gathered into one evaluation (at most one per "
                             "%.1f s)", fired.total, MIN_EVALUATION_INTERVAL_SECS)
                # The whole queue is read at start, at each reconciliation, after a reload, when
                # retrying and when asked by hand: the live view is then (re)built, and what it
                # got wrong is logged.
                # phorque-evaluate is an administrator's "look now": at everything.
                full = due.full or reloaded or "phorque-evaluate" in fired.reasons
                # A spot interruption is news of the cloud's: EC2 is asked about every instance.
                fresh = full or SPOT_REASON in fired.reasons
                ev = self.evaluate(fired, due.look.value, full=full, may_skip=not due.wake,
                                   fresh_clouds=fresh)
                if ev is not None and ev.unchanged:
                    schedule.found_unchanged(self.clock.monotonic(), self.clock.time(), bool(fired),
                                             bool(ev.unsettled))
                    fired = self._wait(schedule)
                    continue
                schedule.evaluated(self.clock.monotonic(), self.clock.time(), due, bool(fired),
                                   completed=ev is not None,
                                   wake_at=ev.plan.wake_at if ev is not None else None,
                                   unsettled=ev is not None and bool(ev.unsettled))
                self.last_ok = ev is not None
                reloaded = False
                # "skipped" when it did not complete: phorque-evaluate must not report the
                # previous result as this one's.
                answer = "done" if ev is not None else "skipped"
                for nonce, sender in fired.waiters:
                    if self.listener is not None:
                        self.listener.reply(sender, f"{answer} {nonce}")
                if ev is None:
                    log.info("next try in %.0f s", schedule.retry_secs)
                self._heartbeat()
            if self.once or self.stopping:
                return
            fired = self._wait(schedule)

    def _wait(self, schedule: Schedule) -> Fired:
        """Wait for the next trigger, the policy's wake-up or the reconciliation. The first
        trigger after a quiet moment is answered at once; triggers that come while an
        evaluation runs, or within event_delay_secs after an evaluation triggers asked for, are
        gathered until then, or until event_delay_secs after the first of them when it came
        while the evaluation ran (and the rate limit may hold a flood a little longer)."""
        mono = self.clock.monotonic()
        fired = self.trigger.wait(schedule.timeout(mono, self.clock.time()),
                                  not_before=schedule.gather_until(mono, self.trigger.pending_since()))
        fired.reasons.pop("stop", None)
        fired.reasons.pop("reload", None)
        return fired

    def _heartbeat(self) -> None:
        try:
            self.state.set_daemon(heartbeat=self.clock.time(), status="running")
        except PhorqueError as exc:
            log.warning("cannot write the heartbeat: %s", exc)


def daemon_status(config: Config) -> dict[str, Any]:
    """The daemon's health, from its pid file and the state store."""
    pid = running_daemon(config)
    try:
        info = StateStore(config.phorque.state_path).daemon() if os.path.exists(
            config.phorque.state_path) else {}
    except PhorqueError as exc:
        return {"running": pid is not None, "pid": pid, "error": str(exc)}
    info.pop("last_result", None)
    out = {"running": pid is not None, "pid": pid, **info}
    if pid is None and info.get("status") == "running":
        out["status"] = "dead (stale state)"
    heartbeat = info.get("heartbeat")
    if heartbeat:
        out["heartbeat_age_secs"] = round(time.time() - heartbeat, 1)
    return json.loads(json.dumps(out, default=str))
