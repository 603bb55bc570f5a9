"""The crash-point aid kills the process at exactly the pass it names, also when several threads
(the parallel removals) pass the point at once, and says which pass it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from phorque.act.crashpoints import ENV

# Eight threads wait at a barrier, then pass the point together.
RACE = """
import threading
from phorque.act.crashpoints import crashpoint
barrier = threading.Barrier(8)
def run():
    barrier.wait()
    crashpoint("remove.before")
threads = [threading.Thread(target=run) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("survived")
"""


def run(spec: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, ENV: spec}
    return subprocess.run([sys.executable, "-c", RACE], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("spec, nth", [("remove.before", 1), ("remove.before:3", 3)])
def test_the_named_pass_kills_once_when_threads_pass_together(spec, nth):
    for _ in range(5):  # the threads interleave differently each time
        done = run(spec)
        assert done.returncode == -signal.SIGKILL, done
        lines = [line for line in done.stderr.splitlines() if "crash point" in line]
        assert lines == [f"phorque: crash point remove.before (pass {nth}): SIGKILL"], done.stderr
        assert "survived" not in done.stdout


def test_a_point_past_the_passes_made_lets_the_process_live():
    done = run("remove.before:9")
    assert done.returncode == 0 and done.stdout.strip() == "survived", done
    assert "crash point" not in done.stderr


def test_a_misspelt_point_is_said_and_ignored():
    done = run("remove.befor")
    assert done.returncode == 0 and "names no crash point" in done.stderr, done
