"""Concurrency: fifty ``phorque-evaluate`` processes, the daemon and a storm of submit-filter calls
at once against one sandbox and one moto server; then the same with some of them killed while
they hold the lock.

What must hold: the group ends at what one evaluation decides (no update lost, nothing launched
twice), everything finishes within a bound (no deadlock), and a process killed with the lock
leaves no stale lock behind: the kernel drops its ``flock`` and the next process takes it at once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3

from tests.integration.faultkit import Cloud, conf_text, set_faults
from tests.integration.kit import wait_until

HOOK = Path(__file__).resolve().parents[2] / "hooks" / "submit_filter"
SCRIPT = b"#!/bin/sh\n#PBS -l nodes=1:ppn=4\nhostname\n"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group(moto: str, name: str) -> dict:
    client = boto3.client("autoscaling", endpoint_url=moto, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    (found,) = client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return found


def evaluate(conf: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "phorque.cli.evaluate", "-c", str(conf), "--json",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def submit_filter(port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HOOK)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env={**os.environ, "PHORQUE_TRIGGER": f"127.0.0.1:{port}"})


def finish(procs: list[subprocess.Popen], deadline: float, stdin: bytes | None = None) -> list[tuple]:
    """(exit status, stdout, stderr) of each, or fail when one is still running at ``deadline``."""
    out = []
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(stdin, timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise AssertionError(f"pid {proc.pid} still running at the deadline: a deadlock?") from None
        out.append((proc.returncode, stdout, stderr))
    return out


def lock_holders(lock: Path) -> set[int]:
    """Pids holding a flock on ``lock``, from the kernel's own table."""
    inode = os.stat(lock).st_ino
    holders = set()
    with open("/proc/locks") as table:
        for line in table:
            fields = line.split()
            if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
                continue
            if int(fields[5].rsplit(":", 1)[-1]) == inode:
                holders.add(int(fields[4]))
    return holders


def launched(tmp_path: Path) -> list[tuple[int, int]]:
    """(from, to) desired capacity of every launch done, from the state's decisions."""
    import sqlite3

    db = sqlite3.connect(tmp_path / "state" / "phorque.db", timeout=30)
    try:
        rows = db.execute("SELECT outcome FROM decisions WHERE action = 'launch' AND outcome LIKE 'done%'")
        out = []
        for (outcome,) in rows:
            words = outcome.split()
            out.append((int(words[-3]), int(words[-1])))
        return sorted(out)
    finally:
        db.close()


def setup(make_sandbox, url: str, tmp_path: Path, jobs: int, port: int):
    """A cluster with ``jobs`` queued jobs whose instances never boot, and the configuration;
    returns both and the launch one evaluation would make."""
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=600)
    for _ in range(jobs):
        sandbox.qsub("-l", "nodes=1:ppn=4", runtime=60)
    cloud = Cloud("local", "moto", url, "g-storm", price=0.1, max_instances=40, read_timeout=10)
    conf = tmp_path / "phorque.conf"
    conf.write_text(conf_text(tmp_path, sandbox, [cloud], loop_sleep=300, trigger=f"127.0.0.1:{port}"))
    ((code, out, err),) = finish([evaluate(conf, "--dry-run")], time.monotonic() + 300)
    assert code == 0, err
    (launch,) = [a for a in json.loads(out)["actions"] if a["action"] == "launch"]
    return sandbox, conf, launch["count"]


def test_fifty_evaluations_the_daemon_and_a_submit_storm_at_once(make_sandbox, moto, proxies, daemons,
                                                                tmp_path):
    url = proxies()
    port = free_udp_port()
    sandbox, conf, expected = setup(make_sandbox, url, tmp_path, jobs=12, port=port)
    assert expected == 12
    daemon = daemons(conf.read_text())
    # Slower group reads while the storm starts: wider windows for a lost update, were there no lock.
    set_faults(url, rules=[{"kind": "delay", "seconds": 0.2, "action": "DescribeAutoScalingGroups",
                            "times": 30}])
    started = time.monotonic()
    locals_ = [evaluate(conf, "--local") for _ in range(50)]
    nudgers = [evaluate(conf) for _ in range(5)]
    storm = [submit_filter(port) for _ in range(200)]
    more = [sandbox.qsub("-l", "nodes=1:ppn=4", runtime=60) for _ in range(8)]  # demand changes
    expected += len(more)
    deadline = started + 600  # generous: on a loaded machine 55 processes start slowly
    hooks = finish(storm, deadline, SCRIPT)
    results = finish(locals_ + nudgers, deadline)
    took = time.monotonic() - started
    assert all(code == 0 and out == SCRIPT for code, out, _ in hooks)
    for code, out, err in results:
        assert code == 0, err.decode()
        assert json.loads(out)["executed"] is True
    # One evaluation settles it: nothing left to launch (its dry run says so).
    ((code, out, err),) = finish([evaluate(conf, "--dry-run")], time.monotonic() + 300)
    assert code == 0 and not [a for a in json.loads(out)["actions"] if a["action"] == "launch"], out
    # Every job has its instance, each launched once: the launches chain without overlapping.
    found = group(moto, "g-storm")
    assert found["DesiredCapacity"] == expected
    assert len({i["InstanceId"] for i in found["Instances"]}) == expected
    steps = launched(tmp_path)
    assert steps[0][0] == 0 and steps[-1][1] == expected
    assert all(a[1] == b[0] for a, b in zip(steps, steps[1:], strict=False)), steps
    # The daemon answered the nudges, and coalesced the storm into a few evaluations.
    assert daemon.lines("submit filter") and daemon.lines("phorque-evaluate")
    assert 1 < len(daemon.lines("evaluation #")) < 60
    assert lock_holders(tmp_path / "state" / "phorque.lock") <= {daemon.proc.pid}
    print(f"55 evaluations and 200 submit-filter calls finished in {took:.1f} s; "
          f"{len(daemon.lines('evaluation #'))} daemon evaluations")
    assert daemon.stop() == 0


def test_processes_killed_holding_the_lock_leave_no_stale_lock(make_sandbox, moto, proxies, daemons,
                                                             tmp_path):
    url = proxies()
    port = free_udp_port()
    _sandbox, conf, expected = setup(make_sandbox, url, tmp_path, jobs=6, port=port)
    lock = tmp_path / "state" / "phorque.lock"
    # Slow group reads: each evaluation holds the lock for a second or more.
    set_faults(url, rules=[{"kind": "delay", "seconds": 0.7, "action": "DescribeAutoScalingGroups"}])
    daemon = daemons(conf.read_text())
    procs = [evaluate(conf, "--local") for _ in range(8)]
    pids = {p.pid for p in procs}
    killed: list[int] = []
    handovers: list[float] = []
    for _ in range(3):
        (holder,) = wait_until(lambda: lock_holders(lock) & (pids - set(killed)) or None, 300,
                               "an evaluation to hold the lock")
        os.kill(holder, signal.SIGKILL)
        at = time.monotonic()
        killed.append(holder)
        # The kernel releases a dead holder's flock at once; the deadline only bounds a hang
        # (the handover times are printed: on a quiet machine a fraction of a second).
        wait_until(lambda h=holder: lock_holders(lock) - {h}, 120, "the next process to take the lock",
                   interval=0.01)
        handovers.append(time.monotonic() - at)
    # The daemon too, while it holds the lock (a nudge makes it evaluate).
    hook = submit_filter(port)
    finish([hook], time.monotonic() + 120, SCRIPT)
    wait_until(lambda: daemon.proc.pid in lock_holders(lock), 300, "the daemon to hold the lock",
               interval=0.01)
    daemon.proc.send_signal(signal.SIGKILL)
    at = time.monotonic()
    daemon.proc.wait()
    wait_until(lambda: lock_holders(lock) - {daemon.proc.pid} or all(p.poll() is not None for p in procs),
               120, "the lock to pass on", interval=0.01)
    handovers.append(time.monotonic() - at)
    results = {p.pid: r for p, r in zip(procs, finish(procs, time.monotonic() + 600), strict=True)}
    for pid, (code, _out, err) in results.items():
        if pid in killed:
            assert code == -signal.SIGKILL
        else:
            assert code == 0, err.decode()
    print("lock handed over", ", ".join(f"{h * 1000:.0f} ms" for h in handovers),
          "after each SIGKILL of its holder")
    # The daemon's pid file is stale now: phorque-evaluate sees it and evaluates by itself.
    assert (tmp_path / "state" / "phorque.pid").exists()
    set_faults(url, rules=[])
    ((code, out, err),) = finish([evaluate(conf)], time.monotonic() + 300)
    assert code == 0 and json.loads(out)["executed"] is True, err.decode()
    assert lock_holders(lock) == set()
    found = group(moto, "g-storm")
    assert found["DesiredCapacity"] == expected == len(found["Instances"])
    # A new daemon starts over the stale pid file.
    again = daemons(conf.read_text(), name="daemon-again")
    assert again.stop() == 0
