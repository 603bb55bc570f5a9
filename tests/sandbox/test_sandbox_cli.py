"""``phorque-sandbox``: creating, configuring and looking at clusters."""

from __future__ import annotations

import os
import subprocess
import sys

from phorque_testbed.sandbox.cloud import moms_up
from phorque_testbed.sandbox.layout import COMMANDS


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phorque_testbed.sandbox.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_init_creates_a_torque_like_tree(tmp_path):
    root = tmp_path / "c"
    result = cli("init", str(root), "--nodes", "3", "--np", "8", "--server", "head.example",
                 "--properties", "local", "--speed", "5", "--keep-completed", "30")
    assert result.returncode == 0, result.stderr
    for folder in ("server_priv/accounting", "server_priv/jobs", "server_priv/arrays", "sandbox"):
        assert (root / folder).is_dir()
    assert (root / "server_name").read_text() == "head.example\n"
    assert (root / "server_priv/nodes").read_text() == (
        "node01 np=8 local\nnode02 np=8 local\nnode03 np=8 local\n")
    for name in COMMANDS:
        script = root / "bin" / name
        assert os.access(script, os.X_OK)
        first = script.read_text().split("\n", 1)[0]
        assert first == f"#!{sys.executable} -S"  # the Python that ran init, without site
    status = cli("status", str(root)).stdout
    assert "server head.example: DOWN" in status and "speed x5" in status
    assert "keep_completed 30" in status and status.count("free") == 3
    again = cli("init", str(root))
    assert again.returncode == 1 and "already holds a sandbox cluster" in again.stderr


def test_configure_changes_settings(tmp_path):
    root = str(tmp_path / "c")
    cli("init", root, "--nodes", "0")
    assert cli("configure", root).returncode == 2
    assert cli("configure", root, "--cloud-endpoint", "http://127.0.0.1:9", "--boot-delay", "45",
               "--scheduler", "strict").returncode == 0
    status = cli("status", root).stdout
    assert "cloud-linked to http://127.0.0.1:9 (45.0 s after launch)" in status
    assert "scheduler strict" in status
    assert cli("configure", root, "--fixed-boot").returncode == 0
    assert "new nodes boot after 45.0 s" in cli("status", root).stdout
    missing = cli("status", str(tmp_path / "none"))
    assert missing.returncode != 0 and "no sandbox cluster" in missing.stderr


def test_strict_fifo_stops_at_the_first_job_that_does_not_fit(make_sandbox):
    sb = make_sandbox(nodes=1, np=2, scheduler="strict")
    sb.run("qmgr", "-c", "set server scheduling=false", check=True)
    first = sb.qsub(runtime=600)
    blocked = sb.qsub("-l", "nodes=1:ppn=2", runtime=10)
    small = sb.qsub(runtime=10)
    sb.run("qmgr", "-c", "set server scheduling=true", check=True)
    assert sb.records("S", first) and not sb.records("S", blocked)
    assert not sb.records("S", small)  # the default FIFO would have started it


def test_moms_up_needs_the_instance_for_the_boot_delay():
    launched = {"a.example": 100.0, "c.example": 101.5}
    assert moms_up(["a.example", "b.example", "c.example"], launched, 102.0, 1.0) == {
        "a.example": True, "b.example": False, "c.example": False}
