"""Events (the JSON log) and the metrics they feed, in process."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from phorque.act.engine import Engine
from phorque.act.events import EventType, JsonFormatter, emit
from phorque.adapters.config import load_config
from phorque.cli.common import setup_logging
from phorque.core.errors import ConfigError
from phorque.core.model import Health, Stage
from phorque.policy import make_policy
from phorque.runtime.metrics import Metrics, node_state, reason_label, trigger_label
from tests import builders as b

README = Path(__file__).resolve().parents[2] / "README.md"

CONF = """
[Phorque]
state_dir = {state}
{phorque}
[Policy]
name = CostAware
price_per_hour = 2.5

[Cloud-hotel]
image_id = ami-1
autoscale_group_name = g
instance_type = m1.small
instance_cores = 4
max_instances = 5
price = 0.25
access_id = AKIDSECRET123
secret_key = verysecretkey
"""


def conf(tmp_path: Path, phorque: str = "") -> Path:
    path = tmp_path / "phorque.conf"
    path.write_text(CONF.format(state=tmp_path / "state", phorque=phorque))
    return path


def record(event: EventType | None, text: str, **fields) -> logging.LogRecord:
    """A record as the logging module makes it, through a logger of our own."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            seen.append(rec)

    logger = logging.getLogger("phorque.test.events")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = Keep()
    logger.addHandler(handler)
    try:
        if event is None:
            logger.info(text)
        else:
            emit(logger, event, text, **fields)
    finally:
        logger.removeHandler(handler)
    return seen[0]


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# -- configuration -------------------------------------------------------------------------
def test_metrics_and_log_format_options(tmp_path):
    config = load_config(conf(tmp_path), environ={})
    assert config.phorque.metrics is None and config.phorque.log_format == "text"
    config = load_config(conf(tmp_path, "metrics_address = 127.0.0.1:9464\nlog_format = JSON"), environ={})
    assert config.phorque.metrics == ("127.0.0.1", 9464) and config.phorque.log_format == "json"


@pytest.mark.parametrize("line, option", [("metrics_address = 9464", "metrics_address"),
                                          ("metrics_address = host:99999", "metrics_address"),
                                          ("log_format = xml", "log_format")])
def test_bad_metrics_or_log_format_names_the_option(tmp_path, line, option):
    with pytest.raises(ConfigError) as caught:
        load_config(conf(tmp_path, line), environ={})
    text = str(caught.value)
    assert "[Phorque]" in text and option in text and "phorque.conf" in text


# -- the JSON log --------------------------------------------------------------------------
def test_an_event_is_one_json_object_with_its_fields():
    rec = record(EventType.LAUNCH, "launch +2 on hotel", cloud="hotel", count=2, reason="queued",
                 outcome="done", instance=None, message="not a field")
    out = json.loads(JsonFormatter().format(rec))
    assert out["event"] == "action.launch" and out["level"] == "INFO"
    assert out["message"] == "launch +2 on hotel" and out["logger"] == "phorque.test.events"
    assert out["cloud"] == "hotel" and out["count"] == 2 and out["outcome"] == "done"
    assert "instance" not in out  # None fields are left out
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", out["time"])


def test_a_plain_line_and_a_traceback_in_json():
    out = json.loads(JsonFormatter().format(record(None, "hello")))
    assert out["event"] == "log" and out["message"] == "hello"
    try:
        raise ValueError("boom")
    except ValueError:
        logger = logging.getLogger("phorque.test.exc")
        rec = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info())
    out = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in out["exception"] and out["level"] == "ERROR"


def test_credentials_are_redacted_in_messages_and_fields(tmp_path):
    config = load_config(conf(tmp_path), environ={})
    log_file = tmp_path / "phorque.log"
    setup_logging(False, str(log_file), ["AKIDSECRET123", "verysecretkey"], "json")
    try:
        emit(logging.getLogger("phorque.engine"), EventType.CLOUD_FAILURE,
             "cloud hotel: failure 1 (%s)", "key AKIDSECRET123 refused", level=logging.WARNING,
             cloud="hotel", reason="signature of verysecretkey", nested={"a": ["AKIDSECRET123"]})
    finally:
        setup_logging(False)
    line = log_file.read_text().strip()
    assert "AKIDSECRET123" not in line and "verysecretkey" not in line
    out = json.loads(line)
    assert out["message"] == "cloud hotel: failure 1 (key *** refused)"
    assert out["reason"] == "signature of ***" and out["nested"] == {"a": ["***"]}
    assert config.clouds[0].name == "hotel"


# -- labels ----------------------------------------------------------------------------------
@pytest.mark.parametrize("reason, label", [
    ("idle, 55 s before its next charge", "idle"),
    ("idle, and the queue does not need it", "idle"),
    ("idle for 300 s", "idle"),
    ("drained and still idle", "idle"),
    ("LocalOnly: no cloud instances are kept", "idle"),
    ("did not join Torque within boot_timeout_secs=900 (instance running)", "boot_timeout"),
    ("node never came up within boot_timeout_secs=900", "boot_timeout"),
    ("instance failed (Unhealthy)", "instance_failed"),
    ("node down for 700 s", "node_down"),
    ("its Torque node vm-1 has been missing for 400 s", "node_missing"),
    ("finishing an interrupted termination", "resumed"),
    ("its instance is no longer in any Phorque group", "orphan"),
    ("the cloud took instance i-1 back (Server.SpotInstanceTermination: Spot instance termination)",
     "interrupted"),
    ("1 instance(s) taken back by the cloud: not replaced", "interrupted"),
    ("2 requested instance(s) never started within boot_timeout_secs=900", "stalled_request"),
    ("cloud aws cannot launch (InsufficientInstanceCapacity: none left); 2 requested instance(s) "
     "cancelled", "launch_failure"),
    ("8 queued cores not covered by free, pending or down cores", "demand"),
    ("queued jobs packed onto new instances of this cloud", "demand"),
    ("LaunchMax: fill to max_instances", "demand"),
    ("something new", "other"),
])
def test_reasons_become_a_few_label_values(reason, label):
    assert reason_label(reason) == label


def test_the_reasons_of_real_plans_have_labels(tmp_path):
    config = load_config(conf(tmp_path), environ={})
    policy = make_policy(config)
    # An idle instance just before its next charge, and a queue that needs a new one.
    snap = b.snapshot(
        jobs=[b.job("1.s", cores=8)],
        nodes=[b.cloud_node("vm-1", np=4)],
        clouds=[b.cloud("hotel", instances=(b.inst("i-vm-1", dns="vm-1", age=3600 - 30),))],
        owned=[b.owned("i-vm-1", node_name="vm-1", idle_for=600, age=3600 - 30)])
    labels = {(a.kind.value, reason_label(a.reason)) for a in policy.plan(snap).ordered()}
    assert ("launch", "demand") in labels
    assert all(label != "other" for _, label in labels), labels


def test_trigger_and_node_state_labels():
    assert trigger_label("job file queued") == "job file queued"
    assert trigger_label("5 triggers: accounting E x3, job file purged x2") == "accounting E"
    assert trigger_label("periodic reconciliation") == "periodic reconciliation"
    assert node_state({"free"}, 0) == "free" and node_state({"free"}, 1) == "busy"
    assert node_state({"down", "offline"}, 0) == "down"
    assert node_state({"offline"}, 2) == "offline"
    assert node_state({"offline", "MOM-list-not-sent"}, 0) == "joining"


# -- metrics ---------------------------------------------------------------------------------
def test_gauges_describe_the_snapshot(tmp_path):
    config = load_config(conf(tmp_path), environ={})
    snap = b.snapshot(
        jobs=[b.job("1.s", cores=8), b.job("2.s", cores=2, queue="long"), b.job("3.s", cores=1),
              b.job("4.s", state="R", cores=4, hosts=("n1",))],
        nodes=[b.node("n1", np=4, state="job-exclusive", jobs=("4.s",) * 4), b.node("n2", state="down"),
               b.cloud_node("vm-1"), b.cloud_node("vm-2", draining=True)],
        clouds=[b.cloud("hotel", price=0.25, max_instances=5, desired=3,
                        instances=(b.inst("i-vm-1", "vm-1"), b.inst("i-vm-2", "vm-2")))],
        owned=[b.owned("i-vm-1", node_name="vm-1", stage=Stage.IDLE),
               b.owned("i-vm-2", node_name="vm-2", stage=Stage.DRAINING)])
    m = Metrics(now=123.0)
    m.observe(config, snap, ok_at=b.NOW)
    assert sample(m, "phorque_start_time_seconds") == 123.0
    assert sample(m, "phorque_last_successful_evaluation_timestamp_seconds") == b.NOW
    assert sample(m, "phorque_queued_jobs", queue="batch") == 2
    assert sample(m, "phorque_queued_cores", queue="batch") == 9
    assert sample(m, "phorque_queued_jobs", queue="long") == 1
    assert sample(m, "phorque_running_jobs") == 1
    assert sample(m, "phorque_nodes", state="busy", owner="static") == 1
    assert sample(m, "phorque_nodes", state="down", owner="static") == 1
    assert sample(m, "phorque_nodes", state="free", owner="phorque") == 1
    assert sample(m, "phorque_nodes", state="offline", owner="phorque") == 1
    assert sample(m, "phorque_node_cores", state="busy", owner="static") == 4
    assert sample(m, "phorque_instances", cloud="hotel", stage="idle") == 1
    assert sample(m, "phorque_instances", cloud="hotel", stage="draining") == 1
    assert sample(m, "phorque_instances", cloud="hotel", stage="booting") == 0
    assert sample(m, "phorque_instances", cloud="hotel", stage="requested") == 1
    assert sample(m, "phorque_desired_capacity", cloud="hotel") == 3
    assert sample(m, "phorque_max_instances", cloud="hotel") == 5
    assert sample(m, "phorque_spending_rate_per_hour") == pytest.approx(0.75)
    assert sample(m, "phorque_price_per_hour") == 2.5
    assert sample(m, "phorque_cloud_backed_off", cloud="hotel") == 0
    assert sample(m, "phorque_cloud_reachable", cloud="hotel") == 1
    assert sample(m, "phorque_info", version=__import__("phorque").__version__, policy="CostAware") == 1
    # The next reading replaces the last: a queue that emptied is gone from the gauges.
    m.observe(config, b.snapshot(clouds=[b.cloud("hotel", health=Health.UNREACHABLE)]), ok_at=b.NOW + 1)
    assert sample(m, "phorque_queued_jobs", queue="batch") is None
    assert sample(m, "phorque_cloud_reachable", cloud="hotel") == 0


def test_counters_follow_the_events():
    m = Metrics(now=0.0)
    logger = logging.getLogger("phorque.test.metrics")
    logger.addHandler(m.handler)
    logger.setLevel(logging.INFO)
    try:
        emit(logger, EventType.LAUNCH, "launch", cloud="hotel", count=3, added=2, outcome="done",
             reason="queued jobs packed onto new instances of this cloud")
        emit(logger, EventType.LAUNCH, "launch", cloud="hotel", count=1, outcome="skipped",
             reason="queued jobs packed onto new instances of this cloud")
        emit(logger, EventType.DRAIN, "drain", cloud="hotel", node="vm-1", outcome="done",
             reason="idle, 40 s before its next charge")
        emit(logger, EventType.TERMINATE, "terminate", cloud="hotel", instance="i-1", outcome="done",
             reason="idle, 40 s before its next charge")
        emit(logger, EventType.TERMINATE, "terminate", cloud="hotel", instance="i-2", outcome="failed",
             reason="node down for 900 s")
        emit(logger, EventType.CLOUD_FAILURE, "failure", cloud="hotel", failures=2,
             backoff_until=b.NOW + 120, reason="throttled")
        m.observe(load_config_free(), b.snapshot(clouds=[b.cloud("hotel")]), ok_at=b.NOW)
        assert sample(m, "phorque_cloud_backed_off", cloud="hotel") == 1
        assert sample(m, "phorque_cloud_backoff_until_timestamp_seconds", cloud="hotel") == b.NOW + 120
        emit(logger, EventType.CLOUD_RECOVERED, "recovered", cloud="hotel", failures=2)
        emit(logger, EventType.INSTANCE_LOST, "lost", cloud="hotel", instance="i-3")
        emit(logger, EventType.NODES_FORGOTTEN, "forgotten", nodes=["vm-7", "vm-8"])
        logger.info("a plain line counts nothing")
    finally:
        logger.removeHandler(m.handler)
    assert sample(m, "phorque_launched_instances_total", cloud="hotel", reason="demand") == 2
    assert sample(m, "phorque_actions_total", action="launch", cloud="hotel", reason="demand",
                  outcome="skipped") == 1
    assert sample(m, "phorque_drains_total", cloud="hotel", reason="idle") == 1
    assert sample(m, "phorque_terminations_total", cloud="hotel", reason="idle") == 1
    assert sample(m, "phorque_terminations_total", cloud="hotel", reason="node_down") is None
    assert sample(m, "phorque_failures_total", cloud="hotel", action="terminate",
                  reason="node_down") == 1
    assert sample(m, "phorque_cloud_failures_total", cloud="hotel") == 1
    assert sample(m, "phorque_cloud_consecutive_failures", cloud="hotel") == 0
    assert sample(m, "phorque_cloud_backed_off", cloud="hotel") == 0
    assert sample(m, "phorque_instances_lost_total", cloud="hotel") == 1
    assert sample(m, "phorque_reconciliation_drift_total", kind="instance_lost") == 1
    assert sample(m, "phorque_reconciliation_drift_total", kind="node_gone") == 2


def load_config_free():
    """A configuration object without a file: only what ``observe`` reads."""
    from phorque.adapters.config import Config, PhorqueSettings, PolicySettings

    return Config(path="-", phorque=PhorqueSettings(), policy=PolicySettings(name="CostAware"), clouds=())


def test_each_job_reacts_once_and_evaluations_count():
    m = Metrics(now=0.0)
    m.reacted("1.s", queued_at=100.0, asked_at=103.5)
    m.reacted("1.s", queued_at=100.0, asked_at=200.0)
    m.reacted("2.s", queued_at=None, asked_at=200.0)
    assert sample(m, "phorque_reaction_seconds_count") == 1
    assert sample(m, "phorque_reaction_seconds_sum") == 3.5
    assert sample(m, "phorque_reaction_seconds_bucket", le="5.0") == 1
    m.evaluation("3 triggers: job file queued x2, accounting Q", "done", 0.04)
    m.evaluation("periodic reconciliation", "skipped", None)
    assert sample(m, "phorque_evaluations_total", trigger="job file queued", result="done") == 1
    assert sample(m, "phorque_evaluations_total", trigger="periodic reconciliation", result="skipped") == 1
    assert sample(m, "phorque_evaluation_duration_seconds_count", trigger="job file queued") == 1


def test_an_instance_phorque_did_not_terminate_is_reported_lost(caplog):
    before = [b.owned("i-1", node_name="vm-1", stage=Stage.BUSY),
              b.owned("i-2", node_name="vm-2", stage=Stage.TERMINATING)]
    after = [b.owned("i-1", node_name="vm-1", stage=Stage.GONE),
             b.owned("i-2", node_name="vm-2", stage=Stage.GONE)]
    with caplog.at_level(logging.INFO, logger="phorque.engine"):
        Engine._report_lost(before, after)
    lost = [r for r in caplog.records if getattr(r, "phorque_event", None) == "instance.lost"]
    assert len(lost) == 1 and lost[0].phorque_fields == {
        "cloud": "hotel", "instance": "i-1", "node": "vm-1", "stage": "busy"}


def test_the_readme_lists_every_metric_and_event():
    text = README.read_text()
    m = Metrics(now=0.0)
    names = {metric.name for metric in m.registry.collect()}
    documented = set(re.findall(r"`(phorque_[a-z_]+)`", text))
    counters = {metric.name for metric in m.registry.collect() if metric.type == "counter"}
    missing = {n for n in names if n not in documented and f"{n}_total" not in documented}
    assert not missing, f"metrics missing from the README: {sorted(missing)}"
    assert {f"{n}_total" for n in counters} <= documented
    for event in EventType:
        assert f"`{event.value}`" in text, f"event {event.value} missing from the README"


def test_the_dashboard_uses_only_metrics_that_exist():
    board = json.loads((README.parent / "etc" / "phorque" / "grafana-dashboard.json").read_text())
    names = set()
    for metric in Metrics(now=0.0).registry.collect():
        names |= {s.name for s in metric.samples} | {metric.name}
        names |= {f"{metric.name}_{suffix}" for suffix in ("total", "bucket", "count", "sum")}
    used = {n for p in board["panels"] for t in p["targets"]
            for n in re.findall(r"\bphorque_[a-z_]+", t["expr"])}
    assert used and used <= names, sorted(used - names)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and board["uid"] == "phorque"


def test_every_action_kind_has_its_event():
    from phorque.core.plan import Kind

    for kind in Kind:
        event = EventType.of_action(kind.value)
        assert event.action == kind.value and event.value == f"action.{kind.value}"
    assert EventType.CLOUD_FAILURE.action is None
