"""A replay of the accounting log a Torque sandbox wrote gives back what happened in it.

A small workload runs on a real sandbox server with two static nodes of 4 cores (pbs_sched's
FIFO, as the replay's): one job fills node01, one needs both nodes, two share node02. The
replay of the sandbox's accounting directory under LocalOnly on the same nodes must start every
job when the sandbox started it (the log's timestamps are whole seconds) and run it as long.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from phorque.replay import ReplaySettings
from phorque.replay.accounting import read_accounting
from phorque.replay.sim import Simulation
from phorque_testbed.sandbox import cluster, server

WORKLOAD = [  # (qsub resource request, sandbox run time in seconds)
    ("nodes=1:ppn=4", 3),
    ("nodes=2:ppn=4", 2),   # waits for both nodes: until the first and last jobs end
    ("nodes=1:ppn=2", 2),   # not procs=2: a real pbs_sched 6.1.3 never starts procs jobs
    ("nodes=1:ppn=2", 3),
]


@pytest.fixture
def sandbox(tmp_path: Path):
    # No obit delay: the test holds the log's run times (end - start) to the scripts' to the
    # second; the mom's obit delay itself is tested in tests/sandbox/test_sandbox_real.py.
    layout = cluster.init(str(tmp_path / "cluster"), 2, 4, "head.test",
                          {"keep_completed": 0, "obit_delay": 0})
    server.start(layout)
    yield layout
    server.stop(layout)


def submit(layout, request: str, runtime: int) -> str:
    script = f"#!/bin/sh\n#SANDBOX runtime={runtime}\ntrue\n"
    done = subprocess.run([layout.command("qsub"), "-l", request, "-l", "walltime=00:01:00"], input=script,
                          text=True, capture_output=True, timeout=30, check=True)
    return done.stdout.strip()


def ended(layout) -> set[str]:
    out = set()
    for path in Path(layout.accounting).iterdir():
        for line in path.read_text().splitlines():
            parts = line.split(";", 3)
            if len(parts) == 4 and parts[1] == "E":
                out.add(parts[2])
    return out


def test_replay_of_a_sandbox_log_matches_the_sandbox(sandbox):
    ids = [submit(sandbox, request, runtime) for request, runtime in WORKLOAD]
    deadline = time.monotonic() + 60
    while not set(ids) <= ended(sandbox):
        assert time.monotonic() < deadline, "the sandbox did not finish the workload"
        time.sleep(0.1)

    trace = read_accounting([sandbox.accounting])
    assert [j.id for j in trace.jobs] == ids
    assert not trace.problems
    settings = ReplaySettings(local_nodes=2, local_np=4)
    sim = Simulation(trace, settings.make_policy("LocalOnly"), settings, keep_jobs=True)
    result = sim.run()
    assert result.started == len(ids) and result.cost == 0

    for job in trace.jobs:
        replayed = sim.jobs[job.id]
        assert replayed.run == job.run_secs
        assert abs((replayed.start - replayed.submit) - job.original_wait) <= 1.0, job.id
        # The log's run times are the scripts' run times, to the second.
        assert abs(job.run_secs - dict(zip(ids, (r for _, r in WORKLOAD), strict=True))[job.id]) <= 1.0
    both_nodes = sim.jobs[ids[1]]
    assert both_nodes.start - both_nodes.submit >= 2  # it really waited, in both
    assert [share[0].name for share in both_nodes.alloc] == ["node1", "node2"]
