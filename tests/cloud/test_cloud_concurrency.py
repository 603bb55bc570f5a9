"""Twenty processes provision the same group at once: with the cloud lock the group ends at
exactly the demand; without it, the same step over-launches (lost read-modify-write)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from phorque.adapters.cloud import make_provider
from tests.cloud.cloudkit import aws_settings

PROCESSES = 20
DEMAND = 4
SCRIPT = Path(__file__).with_name("provision_step.py")


def run_step_everywhere(url: str, lock_file: str, barrier: Path) -> list[int]:
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), url, lock_file, str(DEMAND), str(barrier), str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(PROCESSES)]
    try:
        deadline = time.monotonic() + 90
        while len(list(barrier.glob("ready-*"))) < PROCESSES:
            assert time.monotonic() < deadline, "the step processes did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
            time.sleep(0.05)
        (barrier / "go").touch()  # all at once
        launched = []
        for proc in procs:
            out, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, err
            launched.append(json.loads(out)["launched"])
        return launched
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def prepared(url: str):
    provider = make_provider(aws_settings(url, max_instances=100))
    provider.ensure_setup()
    return provider


def test_with_the_lock_twenty_steps_launch_exactly_the_demand(moto: str, tmp_path: Path) -> None:
    provider = prepared(moto)
    launched = run_step_everywhere(moto, str(tmp_path / "lock" / "phorque.lock"), tmp_path)
    view = provider.describe()
    assert view.desired == DEMAND
    assert len(view.live) == DEMAND
    assert sorted(launched) == [0] * (PROCESSES - 1) + [DEMAND]  # one step launched, the rest saw it


def test_without_the_lock_the_same_step_over_launches(moto: str, tmp_path: Path) -> None:
    provider = prepared(moto)
    launched = run_step_everywhere(moto, "-", tmp_path)
    view = provider.describe()
    # Several processes read the group before any of them raised it, and each added the full
    # demand on top of what the others had written.
    assert sum(1 for n in launched if n) >= 2
    assert view.desired > DEMAND
    assert len(view.live) > DEMAND  # instances really launched, and paid for
