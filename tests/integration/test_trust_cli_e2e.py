"""Honest exit codes and a way out: the commands against the sandbox and a moto server.

``phorque --once`` and ``phorque-evaluate`` (also through a running daemon) exit 1 when their
evaluation was skipped; ``phorque --check-config`` says when Torque's spool or commands are
missing; ``phorque-status`` exits 1 when Torque or a cloud cannot be read (same output);
``phorque --release`` drains and releases every instance, never killing a job.
"""

from __future__ import annotations

import json
import subprocess
import sys

from phorque.act.engine import Engine
from tests.integration.kit import conf_text, e2e_config, exit_statuses, wait_until
from tests.integration.test_daemon_e2e import free_udp_port
from tests.integration.test_engine_e2e import live_instances
from tests.integration.test_trust_e2e import node_names


def run(module: str, conf, *args: str, timeout: float = 300, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", module, "-c", str(conf), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_once_exits_1_when_its_evaluation_was_skipped(make_sandbox, moto, tmp_path):
    sandbox = make_sandbox(nodes=1, np=2)
    conf = tmp_path / "phorque.conf"
    conf.write_text(conf_text(tmp_path, sandbox, moto))
    assert run("phorque.cli.daemon", conf, "--once").returncode == 0
    sandbox.stop()
    proc = run("phorque.cli.daemon", conf, "--once")
    assert proc.returncode == 1, proc.stderr  # before: 0
    assert "skipped: Torque could not be read" in proc.stderr
    assert "nothing was decided" in proc.stderr


def test_evaluate_through_the_daemon_exits_1_when_the_daemon_skipped_it(make_sandbox, moto, tmp_path):
    sandbox = make_sandbox(nodes=1, np=2)
    port = free_udp_port()
    conf = tmp_path / "phorque.conf"
    conf.write_text(conf_text(tmp_path, sandbox, moto, trigger=f"127.0.0.1:{port}", watch=False))
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen([sys.executable, "-m", "phorque.cli.daemon", "-c", str(conf)],
                              stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "evaluation #1 " in log.read_text(), 120, "the first evaluation")
        good = run("phorque.cli.evaluate", conf, "--json")
        assert good.returncode == 0 and json.loads(good.stdout)["executed"] is True, good.stderr
        sandbox.stop()
        bad = run("phorque.cli.evaluate", conf, "--json")
        # Before: 0, with the previous evaluation's result printed as this one's.
        assert bad.returncode == 1, (bad.stdout, bad.stderr)
        assert json.loads(bad.stdout) == {"error": "the running daemon's evaluation was skipped or "
                                                   "failed (see its log); nothing was decided",
                                          "executed": False}
        assert "phorque-evaluate" in log.read_text()
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)


def test_check_config_says_when_torque_home_or_the_commands_are_missing(make_sandbox, moto, tmp_path):
    sandbox = make_sandbox(nodes=1, np=2, start=False)
    conf = tmp_path / "phorque.conf"
    conf.write_text(conf_text(tmp_path, sandbox, moto))
    bare = {"PATH": "/usr/bin:/bin"}
    good = run("phorque.cli.daemon", conf, "--check-config", env=bare)
    assert good.returncode == 0 and "OK" in good.stdout, good.stderr
    text = conf_text(tmp_path, sandbox, moto).replace(f"torque_home = {sandbox.root}",
                                                      f"torque_home = {tmp_path / 'no-spool'}")
    text = text.replace(f"cluster_directory = {sandbox.root}", f"cluster_directory = {tmp_path}")
    conf.write_text(text)
    bad = run("phorque.cli.daemon", conf, "--check-config", env=bare)
    assert bad.returncode == 1  # before: 0, and nothing said
    assert f"[Phorque] torque_home: {tmp_path / 'no-spool'}: no such directory" in bad.stderr
    for name in ("qstat", "pbsnodes", "qmgr"):
        assert f"[Phorque] cluster_directory: {name} not found in {tmp_path / 'bin'}" in bad.stderr
    assert str(conf) in bad.stderr and "OK" in bad.stdout


def test_status_exits_1_when_torque_or_a_cloud_cannot_be_read(make_sandbox, moto, tmp_path):
    sandbox = make_sandbox(nodes=1, np=2)
    conf = tmp_path / "phorque.conf"
    conf.write_text(conf_text(tmp_path, sandbox, moto))
    Engine(e2e_config(tmp_path, sandbox, moto)).evaluate()  # creates the group
    good = run("phorque.cli.status", conf)
    assert good.returncode == 0, good.stderr
    sandbox.stop()
    torque_down = run("phorque.cli.status", conf)
    assert torque_down.returncode == 1  # before: 0
    assert "Torque: unreachable" in torque_down.stdout
    sandbox.start()
    conf.write_text(conf_text(tmp_path, sandbox, "http://127.0.0.1:9"))
    cloud_down = run("phorque.cli.status", conf, "--json")
    assert cloud_down.returncode == 1
    assert json.loads(cloud_down.stdout)["clouds"][0]["health"] == "unreachable"


def test_release_drains_and_releases_every_instance_without_killing_a_job(make_sandbox, moto, tmp_path):
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=0.2)
    config = e2e_config(tmp_path, sandbox, moto, charge=3600, margin=60)
    engine = Engine(config)
    long_job = sandbox.qsub("-l", "nodes=1:ppn=4", runtime=6)
    short_job = sandbox.qsub("-l", "nodes=1:ppn=4", runtime=0.5)
    engine.evaluate()
    wait_until(lambda: len(sandbox.records("S")) == 2 if engine.evaluate() else False, 120,
               "both jobs to start on cloud nodes", interval=0.3)
    assert len(live_instances(moto)) == 2
    proc = run("phorque.cli.daemon", tmp_path / "phorque.conf", "--release", timeout=600)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "released: no instance of Phorque's groups is left (2 terminated now)" in proc.stdout
    assert "offline, released when they end" in proc.stdout or "offline until its jobs end" in proc.stderr
    assert live_instances(moto) == []
    assert node_names(sandbox) == set()
    assert exit_statuses(sandbox) == {long_job: 0, short_job: 0}  # no job killed
    assert sandbox.records("D") == [] and sandbox.records("R") == []


def test_a_restart_or_reload_that_forgets_owned_instances_is_refused(make_sandbox, moto, tmp_path):
    """Renaming the group (or removing the section) while it has an instance would orphan it:
    Phorque refuses the configuration at start-up and keeps the running one on a reload."""
    sandbox = make_sandbox(nodes=1, np=2, boot_delay=60)
    conf = tmp_path / "phorque.conf"
    good = conf_text(tmp_path, sandbox, moto)
    conf.write_text(good)
    sandbox.qsub("-l", "nodes=1:ppn=4", runtime=30)
    Engine(e2e_config(tmp_path, sandbox, moto)).evaluate()
    assert len(live_instances(moto)) == 1
    renamed = good.replace("phorque-e2e", "phorque-renamed")
    conf.write_text(renamed)
    refused = run("phorque.cli.daemon", conf, "--once")
    assert refused.returncode == 2, refused.stderr  # before: 0, and the instance was forgotten
    assert "[Cloud-local] now reaches" in refused.stderr and "phorque --release" in refused.stderr
    evaluated = run("phorque.cli.evaluate", conf, "--local")
    assert evaluated.returncode == 1 and "orphaned" in evaluated.stderr
    # A reload to the same change keeps the running configuration.
    conf.write_text(good)
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen([sys.executable, "-m", "phorque.cli.daemon", "-c", str(conf)],
                              stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "evaluation #1 " in log.read_text(), 120, "the first evaluation")
        conf.write_text(good.replace("[Cloud-local]", "[Cloud-elsewhere]"))
        daemon.send_signal(1)  # SIGHUP
        wait_until(lambda: "configuration reload failed" in log.read_text(), 120, "the refusal")
        assert "[Cloud-local] is gone, but Phorque owns 1 instance(s)" in log.read_text()
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)
    assert len(live_instances(moto)) == 1


def test_a_flood_of_nudges_costs_a_bounded_number_of_evaluations(make_sandbox, moto, tmp_path):
    import socket
    import time

    from phorque.core.schedule import MIN_EVALUATION_INTERVAL_SECS, RATE_BURST

    sandbox = make_sandbox(nodes=1, np=2)
    port = free_udp_port()
    conf = tmp_path / "phorque.conf"
    conf.write_text(conf_text(tmp_path, sandbox, moto, trigger=f"127.0.0.1:{port}", watch=False))
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen([sys.executable, "-m", "phorque.cli.daemon", "-c", str(conf)],
                              stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "evaluation #1 " in log.read_text(), 120, "the first evaluation")
        assert ("rate limit: file events and nudges cause at most one evaluation per "
                f"{MIN_EVALUATION_INTERVAL_SECS:.1f} s") in log.read_text()
        before = log.read_text().count("evaluation #")
        began = time.monotonic()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(20000):  # what a burst of qsubs through the submit filter sends
                sock.sendto(b"phorque submit", ("127.0.0.1", port))
        # The last datagrams are answered by one more evaluation at most an interval later.
        wait_until(lambda: "triggers gathered into one evaluation" in log.read_text(), 120,
                   "the rate limit to be logged")
        seen = log.read_text().count("evaluation #") - before
        elapsed = time.monotonic() - began
        # At most one per interval of the flood, the bucket's burst and one for its tail: a
        # bound that a slow machine only loosens. Without the limit the daemon evaluated back
        # to back.
        assert seen <= elapsed / MIN_EVALUATION_INTERVAL_SECS + RATE_BURST + 1, (seen, elapsed)
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)


def test_status_names_the_nodes_an_administrator_holds(make_sandbox, moto, tmp_path):
    from tests.integration.test_trust_e2e import joined_node

    sandbox = make_sandbox(nodes=0, np=4, boot_delay=0.2)
    engine = Engine(e2e_config(tmp_path, sandbox, moto))
    name = joined_node(engine, sandbox)
    sandbox.run("pbsnodes", "-o", "-N", "firmware update", "--", name, check=True)
    proc = run("phorque.cli.status", tmp_path / "phorque.conf", "--json")
    assert json.loads(proc.stdout)["phorque"]["admin_held"] == [name]
    text = run("phorque.cli.status", tmp_path / "phorque.conf").stdout
    assert f"Held by the administrator (offline with their own note; Phorque leaves them alone): {name}" in text
