"""hooks/submit_filter, as qsub runs it: the script passes through byte for byte, a nudge goes
out without waiting, and it exits 0 quickly whether Phorque is there, absent or broken."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

HOOK = Path(__file__).resolve().parents[2] / "hooks" / "submit_filter"
# The system's Python, without Phorque installed: what a submit host usually has.
BARE_PATH = "/usr/bin:/bin"


def run(script: bytes, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run([str(HOOK), *args], input=script, capture_output=True, timeout=10, env=env)
    return proc, time.monotonic() - started


@pytest.fixture
def listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    yield sock
    sock.close()


SCRIPT = b"#!/bin/bash\n#PBS -N test\n#PBS -l nodes=2:ppn=4\necho $HOSTNAME 'quoted' \"$(date)\" \\\n\x00\xff\n"


def test_present_nudges_the_daemon(listener):
    port = listener.getsockname()[1]
    proc, took = run(SCRIPT, {"PATH": BARE_PATH, "PHORQUE_TRIGGER": f"127.0.0.1:{port}"}, "-q", "batch")
    assert proc.returncode == 0 and proc.stdout == SCRIPT and proc.stderr == b""
    assert listener.recvfrom(64)[0] == b"phorque submit"
    del took  # how fast is a figure (the hook never waits for an answer); a hang fails run()'s timeout


def test_address_from_the_configuration_file(listener, tmp_path):
    port = listener.getsockname()[1]
    conf = tmp_path / "phorque.conf"
    conf.write_text(f"[Phorque]\ntrigger_address = 127.0.0.1:{port}\n")
    proc, _ = run(SCRIPT, {"PATH": BARE_PATH, "PHORQUE_CONFIG": str(conf)})
    assert proc.returncode == 0 and proc.stdout == SCRIPT
    assert listener.recvfrom(64)[0] == b"phorque submit"


@pytest.mark.parametrize("env", [
    {},                                                        # Phorque absent: nothing listens
    {"PHORQUE_TRIGGER": "not an address"},
    {"PHORQUE_TRIGGER": "127.0.0.1:99999"},
    {"PHORQUE_TRIGGER": "no-such-host.invalid:15099"},
    {"PHORQUE_CONFIG": "/nonexistent/phorque.conf"},
    {"PHORQUE_CONFIG": "/"},                                   # a directory
    {"PHORQUE_CONFIG": "/dev/null"},
], ids=["absent", "garbage-address", "bad-port", "unresolvable", "missing-config", "config-is-dir",
        "empty-config"])
def test_absent_or_broken_phorque_never_fails_qsub(env):
    # Never fails, never hangs (a hang fails run()'s timeout); its speed is no test of a loaded machine.
    for _ in range(3):
        proc, _took = run(SCRIPT, {"PATH": BARE_PATH, **env}, "-l", "walltime=1:00:00")
        assert proc.returncode == 0 and proc.stdout == SCRIPT


def test_broken_configuration_file_contents(tmp_path):
    conf = tmp_path / "phorque.conf"
    conf.write_bytes(b"\xff\xfe[Phorque\ntrigger_address = = =\n\x00")
    proc, _ = run(SCRIPT, {"PATH": BARE_PATH, "PHORQUE_CONFIG": str(conf)})
    assert proc.returncode == 0 and proc.stdout == SCRIPT


def test_empty_script_and_large_script():
    proc, _ = run(b"", {"PATH": BARE_PATH})
    assert proc.returncode == 0 and proc.stdout == b""
    big = os.urandom(3 << 20)
    proc, _ = run(big, {"PATH": BARE_PATH})
    assert proc.returncode == 0 and proc.stdout == big


@settings(max_examples=15, deadline=None)
@given(st.binary(max_size=5000))
def test_any_bytes_pass_through_unchanged(script):
    proc, _ = run(script, {"PATH": BARE_PATH})
    assert proc.returncode == 0 and proc.stdout == script
