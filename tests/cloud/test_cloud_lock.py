"""The cloud lock: created 0600 in a new directory, exclusive across processes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import filelock
import pytest

from phorque.adapters.cloud.lock import cloud_lock

HOLDER = """
import sys, time
from phorque.adapters.cloud.lock import cloud_lock
with cloud_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_lock_file_is_private_and_its_directory_is_created(tmp_path) -> None:
    path = tmp_path / "new" / "dir" / "phorque.lock"
    with cloud_lock(str(path), timeout=1):
        assert path.exists()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) & 0o077 == 0


def test_a_second_process_waits_for_the_lock(tmp_path) -> None:
    path = str(tmp_path / "phorque.lock")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, path, "1.5"], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(filelock.Timeout):
            with cloud_lock(path, timeout=0.2):
                pass
        start = time.monotonic()
        with cloud_lock(path, timeout=10):
            waited = time.monotonic() - start
        assert waited > 0.3  # it really waited for the holder to let go
    finally:
        holder.wait(timeout=10)


def test_nested_use_in_one_thread_does_not_deadlock_but_threads_exclude(tmp_path) -> None:
    import threading

    path = str(tmp_path / "phorque.lock")
    outcome: list[str] = []

    def other_thread() -> None:
        try:
            with cloud_lock(path, timeout=0.2):
                outcome.append("acquired")
        except filelock.Timeout:
            outcome.append("timed out")

    with cloud_lock(path, timeout=1):
        with cloud_lock(path, timeout=1):  # e.g. an executor step inside an evaluation
            worker = threading.Thread(target=other_thread)
            worker.start()
            worker.join()
    assert outcome == ["timed out"]
    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert outcome == ["timed out", "acquired"]
