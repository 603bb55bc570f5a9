"""``phorque --check-config``: the configuration checked by the real command, in a process of
its own, as an administrator runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.unit.test_config import ENV, SEED, write


def torque_install(tmp_path: Path, text: str) -> str:
    """``text`` pointing at a Torque spool and commands that exist (the sandbox's layout)."""
    root = tmp_path / "torque"
    (root / "server_priv").mkdir(parents=True, exist_ok=True)
    (root / "bin").mkdir(exist_ok=True)
    for name in ("qstat", "pbsnodes", "qmgr"):
        (root / "bin" / name).write_text("#!/bin/sh\nexit 0\n")
        (root / "bin" / name).chmod(0o755)
    return text.replace("cluster_directory = /opt/torque-3.0.6/",
                        f"cluster_directory = {root}\ntorque_home = {root}")


def run_check(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "phorque.cli.daemon", "--check-config", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, env={**env, "PATH": "/usr/bin:/bin"})


def test_check_config_command(tmp_path):
    good = run_check(write(tmp_path, torque_install(tmp_path, SEED)), ENV)
    assert good.returncode == 0, good.stderr
    assert good.stdout.count("\n") == 1 and "OK" in good.stdout and "OnDemandPlusPlus" in good.stdout
    bad = run_check(write(tmp_path, SEED.replace("1024", "lots")), ENV)
    assert bad.returncode == 2
    assert "[Cloud-hotel] max_instances" in bad.stderr and "phorque.conf" in bad.stderr
    for out in (good.stdout + good.stderr, bad.stdout + bad.stderr):
        assert ENV["SECRET_KEY"] not in out and ENV["ACCESS_ID"] not in out


def test_config_from_environment_variable_path(tmp_path):
    path = write(tmp_path, torque_install(tmp_path, SEED))
    proc = subprocess.run([sys.executable, "-m", "phorque.cli.daemon", "--check-config"],
                          capture_output=True, text=True, timeout=60,
                          env={**ENV, "PHORQUE_CONFIG": str(path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and str(path) in proc.stdout
