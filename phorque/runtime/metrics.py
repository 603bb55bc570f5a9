"""Prometheus metrics of the daemon, served on ``metrics_address`` (``/metrics``).

Gauges describe what the last completed evaluation saw (queue, nodes, instances, capacity,
spending, back-off); counters and histograms add up what happened since the daemon started.
The counters are fed by the same event records the log writes (:mod:`phorque.act.events`), through
a logging handler, so a metric and its log line can never disagree. Each daemon has its own
registry: nothing is global, and a reload keeps the counts.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from phorque import __version__
from phorque.act.events import EventType, event_of
from phorque.adapters.config import Config
from phorque.core.model import MOM_LIST_NOT_SENT, Snapshot, Stage, queue_tally, summarize_snapshot

log = logging.getLogger("phorque.metrics")

#: Evaluations take from milliseconds (a small queue) to seconds (100,000 jobs).
EVALUATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: From a job's queue time to the capacity asked for it: seconds to hours.
REACTION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                    7200.0, 21600.0)
#: Jobs whose reaction time was observed, remembered so that each counts once.
REACTION_MEMORY = 100_000

#: The reasons of the policies' actions, as a small fixed set of label values (a label of
#: free text would make a new time series for every number in a reason).
_REASONS: tuple[tuple[str, str], ...] = (
    (r"^idle|drained and still idle|LocalOnly", "idle"),
    (r"did not join|never came up", "boot_timeout"),
    (r"^instance failed", "instance_failed"),
    (r"^node down", "node_down"),
    (r"Torque node .* missing", "node_missing"),
    (r"interrupted termination", "resumed"),
    (r"taken back by the cloud|took instance \S+ back", "interrupted"),
    (r"no longer in any Phorque group", "orphan"),
    (r"^cloud \S+ .*\); \d+ requested instance", "launch_failure"),
    (r"stalled|never started|not started|requested .* ago|cancel", "stalled_request"),
    (r"launch|queued|demand|jobs? |cores|fill", "demand"),
)


def reason_label(reason: str) -> str:
    """The reason of an action as one of a fixed set of label values."""
    for pattern, label in _REASONS:
        if re.search(pattern, reason or ""):
            return label
    return "other"


def trigger_label(trigger: str) -> str:
    """A bounded label for what triggered an evaluation: the kind of its main trigger."""
    words = re.sub(r"^\d+ triggers: ", "", trigger).split(",")[0]
    return re.sub(r" x\d+$", "", words).strip() or "unknown"


def node_state(words: Iterable[str], jobs: int) -> str:
    """One state per node for the nodes gauge, the most telling first."""
    state = set(words)
    if "down" in state or "state-unknown" in state:
        return "down"
    if MOM_LIST_NOT_SENT in state:
        return "joining"
    if "offline" in state:
        return "offline"
    if jobs or state & {"job-exclusive", "busy", "reserve"}:
        return "busy"
    return "free"


class Metrics:
    """The daemon's metrics. ``serve()`` starts the HTTP endpoint; ``handler`` counts events."""

    def __init__(self, now: float):
        # The `_created` series of every counter only doubles what is exposed; the start time
        # tells when the counts began.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Gauge("phorque_info", "Phorque's version and policy (always 1)",
                          ["version", "policy"], registry=r)
        self.start_time = Gauge("phorque_start_time_seconds", "When the daemon started (Unix time)",
                                registry=r)
        self.start_time.set(now)
        self.last_success = Gauge("phorque_last_successful_evaluation_timestamp_seconds",
                                  "When the last evaluation completed (Unix time)", registry=r)
        self.queued_jobs = Gauge("phorque_queued_jobs", "Jobs queued in the queues Phorque serves",
                                 ["queue"], registry=r)
        self.queued_cores = Gauge("phorque_queued_cores", "Cores asked by queued jobs", ["queue"],
                                  registry=r)
        self.running_jobs = Gauge("phorque_running_jobs", "Jobs running in the queues Phorque serves",
                                  registry=r)
        self.nodes = Gauge("phorque_nodes", "Torque nodes by state and owner (static or phorque)",
                           ["state", "owner"], registry=r)
        self.node_cores = Gauge("phorque_node_cores", "Cores of Torque nodes by state and owner",
                                ["state", "owner"], registry=r)
        self.instances = Gauge("phorque_instances", "Phorque's instances per cloud by lifecycle stage "
                               "(requested: asked of the group, not yet started)",
                               ["cloud", "stage"], registry=r)
        self.desired = Gauge("phorque_desired_capacity", "Desired capacity of each cloud's group",
                             ["cloud"], registry=r)
        self.max_instances = Gauge("phorque_max_instances", "max_instances of each cloud", ["cloud"],
                                   registry=r)
        self.cloud_price = Gauge("phorque_cloud_price_per_hour", "Price of one instance per hour",
                                 ["cloud"], registry=r)
        self.spend_rate = Gauge("phorque_spending_rate_per_hour",
                                "What the live instances of every cloud cost per hour", registry=r)
        self.budget = Gauge("phorque_price_per_hour", "The budget per hour over all clouds "
                            "([Policy] price_per_hour; +Inf when unlimited)", registry=r)
        self.backed_off = Gauge("phorque_cloud_backed_off", "1 while a cloud is backed off after "
                                "failures (nothing is launched there), else 0", ["cloud"], registry=r)
        self.backoff_until = Gauge("phorque_cloud_backoff_until_timestamp_seconds",
                                   "When a backed-off cloud is tried again (0: not backed off)",
                                   ["cloud"], registry=r)
        self.consecutive = Gauge("phorque_cloud_consecutive_failures",
                                 "Failures of a cloud since its last success", ["cloud"], registry=r)
        self.reachable = Gauge("phorque_cloud_reachable", "1 when the cloud's group could be read",
                               ["cloud"], registry=r)
        self.launched = Counter("phorque_launched_instances_total",
                                "Instances asked of a cloud (desired capacity raised by)",
                                ["cloud", "reason"], registry=r)
        self.actions = Counter("phorque_actions_total", "Actions applied, by kind, cloud, reason "
                               "and outcome (done, skipped, failed)",
                               ["action", "cloud", "reason", "outcome"], registry=r)
        self.terminations = Counter("phorque_terminations_total", "Instances terminated",
                                    ["cloud", "reason"], registry=r)
        self.drains = Counter("phorque_drains_total", "Nodes drained (offline before termination)",
                              ["cloud", "reason"], registry=r)
        self.failures = Counter("phorque_failures_total", "Failed actions, by cloud, action and "
                                "the reason of the action", ["cloud", "action", "reason"], registry=r)
        self.cloud_failures = Counter("phorque_cloud_failures_total",
                                      "Cloud failures recorded for back-off", ["cloud"], registry=r)
        self.lost = Counter("phorque_instances_lost_total", "Instances gone without Phorque "
                            "terminating them (reclaimed by the cloud, or by someone else)",
                            ["cloud"], registry=r)
        self.interruptions = Counter("phorque_interruptions_total", "Instances the cloud took back "
                                     "(spot interruptions) that Phorque handled", ["cloud"], registry=r)
        self.requeued = Counter("phorque_jobs_requeued_total", "Jobs requeued (qrerun -f) from "
                                "instances the cloud took back", ["cloud"], registry=r)
        self.jobs_lost = Counter("phorque_jobs_lost_total", "Jobs that could not be requeued from "
                                 "instances the cloud took back (not rerunnable)", ["cloud"], registry=r)
        self.drift = Counter("phorque_reconciliation_drift_total", "Differences a reading found "
                             "between Phorque's record and Torque or the clouds", ["kind"], registry=r)
        self.evaluations = Counter("phorque_evaluations_total", "Evaluations by trigger and result "
                                   "(done, skipped, failed)", ["trigger", "result"], registry=r)
        self.duration = Histogram("phorque_evaluation_duration_seconds", "How long an evaluation took",
                                  ["trigger"], buckets=EVALUATION_BUCKETS, registry=r)
        self.reaction = Histogram("phorque_reaction_seconds", "From a job's queue time to the "
                                  "evaluation that asked a cloud for capacity for it",
                                  buckets=REACTION_BUCKETS, registry=r)
        self._reacted: dict[str, None] = {}
        self._backoff: dict[str, float] = {}  # cloud -> until, from the failure events
        self._lock = threading.Lock()
        self.handler = _EventHandler(self)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- serving -----------------------------------------------------------------------------
    def serve(self, host: str, port: int) -> int:
        """Start serving ``/metrics``; the port it listens on."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- what an evaluation saw ----------------------------------------------------------------
    def observe(self, config: Config, snap: Snapshot, ok_at: float) -> None:
        """Set the gauges from a completed evaluation's snapshot."""
        self.info.clear()
        self.info.labels(__version__, config.policy.name).set(1)
        self.last_success.set(ok_at)
        queues = config.phorque.queues
        self.queued_jobs.clear()
        self.queued_cores.clear()
        for queue, (n, cores) in queue_tally(snap, queues).items():
            self.queued_jobs.labels(queue).set(n)
            self.queued_cores.labels(queue).set(cores)
        self.running_jobs.set(summarize_snapshot(snap, queues).running_jobs)
        mine = {o.node for o in snap.owned if o.node} | set(snap.recorded_nodes)
        self.nodes.clear()
        self.node_cores.clear()
        for node in snap.nodes:
            labels = (node_state(node.state, len(node.jobs)), "phorque" if node.name in mine else "static")
            self.nodes.labels(*labels).inc()
            self.node_cores.labels(*labels).inc(node.np)
        self.instances.clear()
        for cloud in snap.clouds:
            for stage in (s for s in Stage if s.is_live):
                self.instances.labels(cloud.name, stage.value).set(0)
            for owned in snap.owned:
                if owned.cloud == cloud.name:
                    self.instances.labels(cloud.name, owned.stage.value).inc()
            started = len(cloud.valid_instances)
            self.instances.labels(cloud.name, "requested").set(max(0, cloud.capacity - started))
            self.desired.labels(cloud.name).set(cloud.capacity)
            self.max_instances.labels(cloud.name).set(cloud.max_instances)
            self.cloud_price.labels(cloud.name).set(cloud.price)
            # A failure is recorded after the reading that met it: the event knows it first.
            until = max(cloud.backoff_until or 0.0, self._backoff.get(cloud.name, 0.0))
            backed = until > snap.now
            self.backed_off.labels(cloud.name).set(1 if backed else 0)
            self.backoff_until.labels(cloud.name).set(until if backed else 0)
            self.reachable.labels(cloud.name).set(0 if cloud.health.value == "unreachable" else 1)
        self.spend_rate.set(snap.spend_rate)
        budget = config.policy.price_per_hour
        self.budget.set(math.inf if budget is None else budget)

    def cloud_health(self, cloud: str, failures: int) -> None:
        self.consecutive.labels(cloud).set(failures)

    def reacted(self, job_id: str, queued_at: float | None, asked_at: float) -> None:
        """The first time capacity is asked for a job: its reaction time."""
        if queued_at is None:
            return
        with self._lock:
            if job_id in self._reacted:
                return
            self._reacted[job_id] = None
            while len(self._reacted) > REACTION_MEMORY:
                self._reacted.pop(next(iter(self._reacted)))
        self.reaction.observe(max(0.0, asked_at - queued_at))

    def evaluation(self, trigger: str, result: str, seconds: float | None) -> None:
        label = trigger_label(trigger)
        self.evaluations.labels(label, result).inc()
        if seconds is not None:
            self.duration.labels(label).observe(seconds)

    # -- what happened (from the event records) ----------------------------------------------
    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        cloud = str(fields.get("cloud") or "")
        try:
            kind = EventType(event)
        except ValueError:
            return
        action = kind.action
        if action is not None:
            outcome = str(fields.get("outcome") or "")
            reason = reason_label(str(fields.get("reason") or ""))
            self.actions.labels(action, cloud, reason, outcome).inc()
            if outcome == "failed":
                self.failures.labels(cloud, action, reason).inc()
            elif outcome == "done":
                if kind == EventType.LAUNCH:
                    self.launched.labels(cloud, reason).inc(int(fields.get("added") or 0))
                elif kind == EventType.TERMINATE:
                    self.terminations.labels(cloud, reason).inc()
                elif kind == EventType.DRAIN:
                    self.drains.labels(cloud, reason).inc()
        elif kind == EventType.CLOUD_FAILURE:
            self.cloud_failures.labels(cloud).inc()
            self.consecutive.labels(cloud).set(int(fields.get("failures") or 0))
            if fields.get("backoff_until"):
                self._backoff[cloud] = float(fields["backoff_until"])
                self.backed_off.labels(cloud).set(1)
                self.backoff_until.labels(cloud).set(self._backoff[cloud])
        elif kind == EventType.CLOUD_RECOVERED:
            self.consecutive.labels(cloud).set(0)
            self._backoff.pop(cloud, None)
            self.backed_off.labels(cloud).set(0)
            self.backoff_until.labels(cloud).set(0)
        elif kind == EventType.INSTANCE_LOST:
            self.lost.labels(cloud).inc()
            self.drift.labels("instance_lost").inc()
        elif kind == EventType.INSTANCE_INTERRUPTED:
            if fields.get("first"):
                self.interruptions.labels(cloud).inc()
            self.requeued.labels(cloud).inc(len(fields.get("requeued") or ()))
            self.jobs_lost.labels(cloud).inc(len(fields.get("lost") or ()))
        elif kind == EventType.NODES_FORGOTTEN:
            self.drift.labels("node_gone").inc(len(fields.get("nodes") or ()))
        elif kind == EventType.VIEW_DRIFT:
            self.drift.labels("view").inc(int(fields.get("total") or 0))


class _EventHandler(logging.Handler):
    """Counts Phorque's event records into the metrics; plain log lines pass by."""

    def __init__(self, metrics: Metrics):
        super().__init__(level=logging.DEBUG)
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        event, fields = event_of(record)
        if event is not None:
            self.metrics.on_event(event, fields)
