"""The real daemon process against the sandbox and a moto server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from phorque.adapters.config import load_config
from phorque.adapters.state import StateStore
from tests.integration.kit import conf_text, wait_until

HOOK = Path(__file__).resolve().parents[2] / "hooks" / "submit_filter"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def desired(moto: str) -> int:
    client = boto3.client("autoscaling", endpoint_url=moto, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=["phorque-e2e"])["AutoScalingGroups"]
    return groups[0]["DesiredCapacity"] if groups else 0


class Daemon:
    def __init__(self, conf: Path, log: Path):
        self.conf, self.log = conf, log
        self.proc = subprocess.Popen([sys.executable, "-m", "phorque.cli.daemon", "-c", str(conf)],
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text()

    def evaluations(self) -> int:
        return self.text().count("evaluation #")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture
def start_daemon(tmp_path):
    started: list[Daemon] = []

    def start(text: str) -> Daemon:
        conf = tmp_path / "phorque.conf"
        conf.write_text(text)
        daemon = Daemon(conf, tmp_path / f"daemon{len(started)}.log")
        started.append(daemon)
        wait_until(lambda: "evaluation #1 " in daemon.text() or daemon.proc.poll() is not None, 60,
                   "the daemon's first evaluation")
        assert daemon.proc.poll() is None, daemon.text()
        return daemon

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


def test_a_submit_launches_without_waiting_for_the_timer(make_sandbox, moto, tmp_path, start_daemon):
    sandbox = make_sandbox(nodes=1, np=2, boot_delay=60)
    daemon = start_daemon(conf_text(tmp_path, sandbox, moto, loop_sleep=120))
    assert desired(moto) == 0
    sandbox.qsub("-l", "nodes=1:ppn=4", runtime=30)
    # The timer is 120 s away (and the first evaluation is past): only the file event can make
    # the launch. How fast it comes is bench/reaction.py's figure, not a bound of this test.
    wait_until(lambda: desired(moto) == 1, 100, "the launch")
    assert "accounting Q" in daemon.text() or "job file queued" in daemon.text()
    assert daemon.stop() == 0
    assert "stopped after" in daemon.text()
    assert not (tmp_path / "state" / "phorque.pid").exists()


def test_the_periodic_reconciliation_alone_scales_with_file_events_off(make_sandbox, moto, tmp_path,
                                                                        start_daemon):
    sandbox = make_sandbox(nodes=1, np=2, boot_delay=60)
    daemon = start_daemon(conf_text(tmp_path, sandbox, moto, loop_sleep=3, watch=False))
    # The start's own evaluation first: a job it saw would be launched for by it, not by a
    # reconciliation.
    wait_until(lambda: daemon.evaluations() >= 1, 60, "the start's evaluation")
    sandbox.qsub("-l", "nodes=1:ppn=4", runtime=30)
    wait_until(lambda: desired(moto) == 1, 60, "the launch by the periodic reconciliation")
    assert "file watching is off" in daemon.text()
    assert "periodic reconciliation" in daemon.text()
    assert "accounting Q" not in daemon.text()


def test_evaluate_nudges_the_daemon_and_the_submit_filter_triggers(make_sandbox, moto, tmp_path, start_daemon):
    sandbox = make_sandbox(nodes=1, np=2, boot_delay=60)
    port = free_udp_port()
    daemon = start_daemon(conf_text(tmp_path, sandbox, moto, loop_sleep=120, watch=False,
                                    trigger=f"127.0.0.1:{port}"))
    conf = tmp_path / "phorque.conf"
    before = daemon.evaluations()
    proc = subprocess.run([sys.executable, "-m", "phorque.cli.evaluate", "-c", str(conf), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["executed"] is True and result["policy"] == "CostAware"
    assert daemon.evaluations() == before + 1 and "phorque-evaluate" in daemon.text()
    # The submit filter nudges the daemon (file events are off here, so only the nudge can).
    sandbox.qsub("-l", "nodes=1:ppn=4", runtime=30)
    script = b"#!/bin/sh\n#PBS -l nodes=1:ppn=4\nhostname\n"
    out = subprocess.run([str(HOOK), "-l", "nodes=1:ppn=4"], input=script, capture_output=True,
                         timeout=10, env={**os.environ, "PHORQUE_TRIGGER": f"127.0.0.1:{port}"})
    assert out.returncode == 0 and out.stdout == script
    wait_until(lambda: desired(moto) == 1, 100, "the launch after the submit filter's nudge")
    assert "submit filter" in daemon.text()
    # --async returns once the daemon acknowledged, without waiting for the evaluation.
    proc = subprocess.run([sys.executable, "-m", "phorque.cli.evaluate", "-c", str(conf), "--async"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "requested" in proc.stdout


def test_reload_keeps_the_old_configuration_when_the_new_one_is_broken(make_sandbox, moto, tmp_path,
                                                                        start_daemon):
    sandbox = make_sandbox(nodes=1, np=2, boot_delay=60)
    text = conf_text(tmp_path, sandbox, moto, loop_sleep=120)
    daemon = start_daemon(text)
    conf = tmp_path / "phorque.conf"
    conf.write_text(text.replace("max_instances = 3", "max_instances = lots"))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in daemon.text(), 10, "the reload to be refused")
    assert "max_instances" in daemon.text()
    conf.write_text(text.replace("max_instances = 3", "max_instances = 5"))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in daemon.text(), 10, "the reload")
    assert "max 5" in daemon.text()
    sandbox.qsub("-l", "nodes=1:ppn=4", runtime=30)
    wait_until(lambda: desired(moto) == 1, 10, "a launch after the reload")
    assert daemon.stop() == 0


def test_once_runs_one_cycle_and_a_second_daemon_is_refused(make_sandbox, moto, tmp_path, start_daemon):
    sandbox = make_sandbox(nodes=1, np=2, boot_delay=60)
    text = conf_text(tmp_path, sandbox, moto, loop_sleep=120)
    daemon = start_daemon(text)
    conf = tmp_path / "phorque.conf"
    second = subprocess.run([sys.executable, "-m", "phorque.cli.daemon", "-c", str(conf), "--once"],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1 and "another phorque daemon" in second.stderr
    daemon.stop()
    sandbox.qsub("-l", "nodes=1:ppn=4", runtime=30)
    once = subprocess.run([sys.executable, "-m", "phorque.cli.daemon", "-c", str(conf), "--once"],
                          capture_output=True, text=True, timeout=60)
    assert once.returncode == 0, once.stderr
    assert once.stderr.count("evaluation #") == 1 and desired(moto) == 1
    state = StateStore(load_config(conf).phorque.state_path).daemon()
    assert state["status"] == "stopped" and state["evaluations"] == 1
