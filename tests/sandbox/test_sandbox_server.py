"""The sandbox server: pbs_server down and back, and injected faults as Phorque sees them."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from phorque.adapters.torque.commands import Torque
from phorque.adapters.torque.xmlparse import XMLFormatError
from phorque.core.errors import CommandError
from phorque_testbed.sandbox import server


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phorque_testbed.sandbox.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_commands_fail_like_torque_clients_while_the_server_is_down(sandbox):
    assert cli("stop", str(sandbox.root)).returncode == 0
    refused = "Unable to communicate with srv.test(127.0.0.1)\nConnection refused\n"
    expected = {
        "qstat": (111, refused + "qstat: cannot connect to server srv.test (errno=111) Connection refused\n"),
        "qsub": (111, refused + "qsub: cannot connect to server srv.test (errno=111) Connection refused\n"),
        "qdel": (111, refused + "qdel: cannot connect to server srv.test (errno=111) Connection refused\n"),
        "pbsnodes": (1, refused + "pbsnodes: cannot connect to server srv.test, error=111 (Connection refused)\n"),
        "qmgr": (3, refused + "qmgr: cannot connect to server  (errno=111) Connection refused\n"),
    }
    for command, (code, err) in expected.items():
        args = {"qdel": ["1"], "qmgr": ["-c", "set server scheduling=true"]}.get(command, [])
        result = sandbox.run(command, *args, input="true\n")
        assert (result.returncode, result.stdout, result.stderr) == (code, "", err), command
    with pytest.raises(CommandError, match="cannot connect to server"):
        Torque(cluster_directory=str(sandbox.root)).jobs()
    assert "DOWN" in cli("status", str(sandbox.root)).stdout
    assert cli("stop", str(sandbox.root)).returncode == 1  # nothing to stop
    assert cli("start", str(sandbox.root)).returncode == 0
    assert sandbox.run("qstat").returncode == 0


def test_time_passes_while_the_server_is_down_but_nothing_starts(make_sandbox):
    sb = make_sandbox(nodes=1, np=1, speed=10)
    first = sb.qsub(runtime=10)
    second = sb.qsub(runtime=10)
    sb.wait_for(lambda: sb.records("S", first), what="the first job")
    sb.stop()
    time.sleep(2.0)  # the first job's second of real time ends meanwhile
    restarted = time.time()
    sb.start()
    sb.wait_for(lambda: sb.records("S", second), what="the second job")
    start = int(sb.records("S", first)[0][3].split("start=")[1].split(" ")[0])
    end = int(sb.records("E", first)[0][3].split(" end=")[1].split(" ")[0])
    assert end - start <= 2  # it ended on time, at its own moment
    second_start = int(sb.records("S", second)[0][3].split("start=")[1].split(" ")[0])
    assert second_start >= int(restarted)  # not before pbs_server was back


def test_one_server_per_cluster(sandbox):
    with pytest.raises(server.AlreadyRunning):
        server.start(sandbox.layout)
    result = cli("start", str(sandbox.root))
    assert result.returncode == 1 and "already serves" in result.stderr
    assert server.server_pid(sandbox.layout) is not None


def test_injected_faults_as_the_adapter_sees_them(sandbox):
    t = Torque(cluster_directory=str(sandbox.root), timeout=3)
    sandbox.qsub(runtime=600)
    root = str(sandbox.root)
    assert cli("fault", root, "qstat", "fail", "--count", "2").returncode == 0
    for _ in range(2):
        with pytest.raises(CommandError, match="Connection refused"):
            t.jobs()
    assert len(t.jobs()) == 1  # the fault is used up
    cli("fault", root, "qstat", "truncate", "--count", "1")
    with pytest.raises(XMLFormatError):
        t.jobs()
    cli("fault", root, "pbsnodes", "invalid", "--count", "1")
    with pytest.raises(XMLFormatError):
        t.nodes()
    assert len(t.nodes()) == 2
    cli("fault", root, "pbsnodes", "hang")
    with pytest.raises(CommandError) as caught:
        t.nodes()
    assert caught.value.timed_out
    assert cli("fault", root, "--clear").returncode == 0
    assert not (sandbox.root / "sandbox/faults.json").exists()
    assert len(t.nodes()) == 2


def test_status_overview(make_sandbox):
    sb = make_sandbox(nodes=1, np=2)
    job = sb.qsub("-N", "shown", runtime=600)
    sb.wait_for(lambda: sb.records("S", job), what="the job")
    out = cli("status", str(sb.root)).stdout
    assert "server srv.test: up (pid" in out
    assert "node01" in out and job in out and "shown" in out and "node01/0" in out
    assert "Jobs: 0 queued, 1 running, 0 completed" in out
