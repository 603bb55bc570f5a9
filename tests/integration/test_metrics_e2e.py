"""The daemon's metrics scraped by a real Prometheus server, and its JSON events, end to end.

The daemon runs against the Torque sandbox and a moto server, with a second cloud whose
endpoint refuses connections; a real ``prometheus`` (Debian's package, installed by ``dev.py
test``) scrapes ``/metrics`` every second, and the test asks it over its HTTP API.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from phorque.act.events import EventType
from tests.integration.kit import conf_text, dead_cloud, free_tcp_port, wait_until
from tests.integration.test_daemon_e2e import desired, start_daemon  # noqa: F401 (a fixture)

DASHBOARD = Path(__file__).resolve().parents[2] / "etc" / "phorque" / "grafana-dashboard.json"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class Prometheus:
    """A real Prometheus server scraping one target every second, its data in a temp folder."""

    def __init__(self, root: Path, target: str):
        if not os.path.exists(PROMETHEUS):
            pytest.fail("the prometheus server is not installed: `python3 dev.py test` installs "
                        "Debian's prometheus package (apt-get install --no-install-recommends prometheus)")
        root.mkdir()
        (root / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: phorque\n    static_configs:\n"
            f"      - targets: ['{target}']\n")
        self.port = free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "prometheus.log"
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={root / 'prometheus.yml'}",
             f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        wait_until(self._ready, 120, "prometheus to be ready")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as reply:
                return reply.status == 200
        except OSError:
            return False

    def query(self, expr: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as reply:
            body = json.load(reply)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        """The value of a query with one result (None when it has none yet)."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()




def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def events(log: Path) -> list[dict]:
    """Every line the daemon wrote, each a JSON object (a line that is not fails the test)."""
    out = []
    for line in log.read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def test_prometheus_scrapes_what_the_daemon_does(make_sandbox, moto, tmp_path, start_daemon):  # noqa: F811
    sandbox = make_sandbox(nodes=1, np=2, boot_delay=1)
    metrics_port = free_tcp_port()
    text = conf_text(tmp_path, sandbox, moto, max_instances=3, cores=4, price=0.1, budget="10",
                     extra_cloud=dead_cloud(free_tcp_port(), 0.5))
    text = text.replace("[Phorque]\n", f"[Phorque]\nmetrics_address = 127.0.0.1:{metrics_port}\n"
                                       "log_format = json\n", 1)
    daemon = start_daemon(text)
    prom = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{metrics_port}")
    try:
        wait_until(lambda: prom.value('up{job="phorque"}') == 1, 120, "the first successful scrape")
        started = prom.value("phorque_start_time_seconds")
        assert started is not None and abs(started - os.path.getmtime(daemon.conf)) < 600
        assert prom.value("phorque_price_per_hour") == 10
        assert prom.value('phorque_max_instances{cloud="local"}') == 3
        assert prom.value('phorque_cloud_reachable{cloud="dead"}') == 0
        wait_until(lambda: (prom.value('phorque_cloud_failures_total{cloud="dead"}') or 0) >= 1, 120,
                   "the dead cloud's failure counted")
        assert prom.value('phorque_cloud_backed_off{cloud="dead"}') == 1
        assert (prom.value('phorque_cloud_backoff_until_timestamp_seconds{cloud="dead"}') or 0) > started

        job = sandbox.qsub("-l", "nodes=1:ppn=4", runtime=3)
        wait_until(lambda: desired(moto) == 1, 120, "one instance launched")
        wait_until(lambda: prom.value('phorque_launched_instances_total{cloud="local"}') == 1, 120,
                   "the launch counted")
        assert prom.value('sum(phorque_launched_instances_total{cloud="dead"})') in (None, 0)
        wait_until(lambda: prom.value('phorque_desired_capacity{cloud="local"}') == 1, 60,
                   "the desired capacity")
        assert prom.value("phorque_spending_rate_per_hour") == pytest.approx(0.1)
        # The job was queued before the launch: its reaction time is observed once.
        assert prom.value("phorque_reaction_seconds_count") == 1
        assert 0 <= (prom.value("phorque_reaction_seconds_sum") or -1) < 600
        wait_until(lambda: prom.value('sum(phorque_nodes{owner="phorque"})') == 1, 180,
                   "the new node in Torque")
        wait_until(lambda: sandbox.records("E", job), 180, "the job to finish")
        wait_until(lambda: prom.value("sum(phorque_queued_jobs)") in (None, 0), 120, "an empty queue")
        evaluations = prom.value("sum(phorque_evaluations_total)")
        assert evaluations is not None and evaluations >= 3
        assert prom.value('sum(phorque_evaluations_total{result="done"})') == evaluations
        assert (prom.value("sum(phorque_evaluation_duration_seconds_count)") or 0) >= 3
        assert (prom.value("phorque_last_successful_evaluation_timestamp_seconds") or 0) > started
        # Every query of the shipped dashboard is valid PromQL to the real server, and those of
        # the gauges and counters show data after this run.
        empty = []
        for expr in dashboard_queries():
            try:
                result = prom.query(expr.replace("$cloud", ".*"))
            except urllib.error.HTTPError as exc:
                raise AssertionError(f"{expr}: {exc.read().decode()}") from None
            if not result:
                empty.append(expr)
        # Rates of what did not happen (terminations, failures) and the queue, empty again by
        # now, have no data; everything else has.
        quiet = ("quantile", "increase(", "rate(", "queued")
        assert not [e for e in empty if not any(word in e for word in quiet)], empty
        assert len(empty) < len(dashboard_queries()) // 2, empty
    finally:
        prom.stop()
    assert daemon.stop() == 0

    seen = events(daemon.log)
    kinds = [e["event"] for e in seen]
    assert EventType.DAEMON_STARTED.value in kinds and kinds[-1] == EventType.DAEMON_STOPPED.value
    for entry in seen:
        assert {"time", "level", "logger", "event", "message"} <= set(entry)
    launch = [e for e in seen if e["event"] == EventType.LAUNCH.value and e["outcome"] == "done"]
    assert len(launch) == 1 and launch[0]["cloud"] == "local" and launch[0]["added"] == 1
    assert launch[0]["count"] == 1 and "queued" in launch[0]["reason"]
    joins = [e for e in seen if e["event"] == EventType.JOIN.value and e["outcome"] == "done"]
    assert len(joins) == 1 and joins[0]["instance"] and joins[0]["node"]
    failures = [e for e in seen if e["event"] == EventType.CLOUD_FAILURE.value]
    assert failures and all(f["cloud"] == "dead" and f["level"] == "WARNING" for f in failures)
    assert failures[0]["failures"] == 1 and failures[0]["backoff_until"] > 0 and failures[0]["reason"]
    done = [e for e in seen if e["event"] == EventType.EVALUATION.value]
    assert done and all(isinstance(e["duration_secs"], float) for e in done)
    assert any(e["queued_jobs"] == 1 and e["queued_cores"] == 4 for e in done)
    assert all(e["price_per_hour"] == 10 and set(e["desired"]) == {"local", "dead"} for e in done)
    # The credentials of the configuration never reach the log, in a message or a field.
    assert "testing" not in daemon.log.read_text()
