"""Phorque's own files are created with safe modes even under a permissive umask (000).

Chosen modes: the state directory and the lock's directory 0700, their missing parents 0755;
the state database (and sqlite's -wal/-shm beside it), the lock file, the accounting position
and the log file 0600. The pid file is 0644: it holds only the daemon's pid, which ``ps`` shows
anyway, and it sits inside the 0700 state directory.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from tests.fake_torque import FakeTorque
from tests.integration.kit import wait_until

CONF = """
[Phorque]
cluster_directory = {torque}
torque_home = {torque}
state_dir = {state}
lock_file = {lock}
log_file = {log}
trigger_address =
loop_sleep_secs = 3600

[Policy]
name = OnDemand

[Cloud-local]
cloud_uri = {moto}
autoscale_uri = {moto}
access_id = testing
secret_key = testing
image_id = ami-12c6146b
autoscale_group_name = perms
launch_config_name = perms-lc
instance_type = t3.micro
instance_cores = 2
max_instances = 2
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def setup(tmp_path: Path, moto: str) -> tuple[Path, dict[str, Path]]:
    fake = FakeTorque(tmp_path / "torque")
    fake.script("qstat", stdout="<Data></Data>")
    fake.script("pbsnodes", stdout="<Data></Data>")
    accounting = fake.root / "server_priv" / "accounting"
    accounting.mkdir(parents=True)
    (fake.root / "server_priv" / "jobs").mkdir()
    (accounting / "20261125").write_text("11/25/2026 09:00:00;Q;1.srv;queue=batch\n")
    paths = {"state": tmp_path / "var" / "lib" / "phorque", "lock": tmp_path / "run" / "locks" / "phorque.lock",
             "log": tmp_path / "phorque.log"}
    conf = tmp_path / "phorque.conf"
    conf.write_text(CONF.format(torque=fake.root, moto=moto, **paths))
    return conf, paths


def assert_private(paths: dict[str, Path], tmp_path: Path) -> None:
    state = paths["state"]
    assert mode(state) == 0o700 and mode(paths["lock"].parent) == 0o700
    for parent in (tmp_path / "var", tmp_path / "var" / "lib", tmp_path / "run"):
        assert mode(parent) == 0o755, f"{parent}: {oct(mode(parent))}"
    assert mode(state / "phorque.db") == 0o600
    assert mode(paths["lock"]) == 0o600
    for path in state.iterdir():
        allowed = 0o644 if path.name == "phorque.pid" else 0o600
        try:
            found = mode(path)
        except FileNotFoundError:
            # A temporary file (the position's .position-XXXX) renamed into place since the
            # listing: the file it became is listed too.
            continue
        assert found == allowed, f"{path.name}: {oct(found)}"


def test_the_daemon_creates_its_files_private_under_umask_000(moto, tmp_path):
    conf, paths = setup(tmp_path, moto)
    with open(tmp_path / "daemon.out", "w") as out:
        daemon = subprocess.Popen([sys.executable, "-m", "phorque.cli.daemon", "-c", str(conf)], umask=0,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "evaluation #1 " in paths["log"].read_text() if paths["log"].exists() else False,
                   60, "the first evaluation")
        state = paths["state"]
        assert {"phorque.db", "phorque.pid", "accounting.pos"} <= {p.name for p in state.iterdir()}
        assert mode(state / "accounting.pos") == 0o600
        assert mode(state / "phorque.pid") == 0o644
        assert mode(paths["log"]) == 0o600
        assert_private(paths, tmp_path)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0, (tmp_path / "daemon.out").read_text()
    assert_private(paths, tmp_path)  # and after it stopped (sqlite may have left -wal, -shm)


def test_phorque_evaluate_alone_creates_them_private_too(moto, tmp_path):
    conf, paths = setup(tmp_path, moto)
    done = subprocess.run([sys.executable, "-m", "phorque.cli.evaluate", "--local", "-c", str(conf)], umask=0,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_private(paths, tmp_path)
    assert not paths["log"].exists()  # phorque-evaluate logs to standard error


def test_an_existing_state_directory_keeps_the_mode_its_administrator_gave_it(moto, tmp_path):
    conf, paths = setup(tmp_path, moto)
    paths["state"].mkdir(parents=True)
    os.chmod(paths["state"], 0o750)
    done = subprocess.run([sys.executable, "-m", "phorque.cli.evaluate", "--local", "-c", str(conf)], umask=0,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert mode(paths["state"]) == 0o750 and mode(paths["state"] / "phorque.db") == 0o600


def test_a_log_file_that_cannot_be_opened_is_a_configuration_error(moto, tmp_path):
    conf, paths = setup(tmp_path, moto)
    conf.write_text(conf.read_text().replace(str(paths["log"]), str(tmp_path / "missing" / "phorque.log")))
    done = subprocess.run([sys.executable, "-m", "phorque.cli.daemon", "--once", "-c", str(conf)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "[Phorque] log_file" in done.stderr and "Traceback" not in done.stderr
