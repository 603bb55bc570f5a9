"""Torque's files trigger evaluations: real files, real watchdog observers."""

from __future__ import annotations

import os
import time

from phorque.adapters.torque.accounting import format_line
from phorque.runtime.triggers import Trigger
from phorque.runtime.watcher import TorqueWatcher
from tests.waiting import wait_for


def make_home(tmp_path):
    acct = tmp_path / "server_priv" / "accounting"
    jobs = tmp_path / "server_priv" / "jobs"
    acct.mkdir(parents=True)
    jobs.mkdir(parents=True)
    return acct, jobs


def append(path, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(line + "\n")


def test_accounting_records_fire_within_a_second(tmp_path):
    acct, _ = make_home(tmp_path)
    today = acct / time.strftime("%Y%m%d")
    append(today, format_line(time.time(), "Q", "1.srv", "queue=batch"))  # before start: not an event
    trigger = Trigger()
    watcher = TorqueWatcher(str(tmp_path), trigger, frozenset({"batch"}), str(tmp_path / "acct.pos"))
    watcher.start()
    try:
        assert not trigger.wait(timeout=0.3)
        append(today, format_line(time.time(), "Q", "2.srv", "queue=batch"))
        fired = trigger.wait(timeout=60)  # the event itself, not a time bound (bench/reaction.py times it)
        assert fired.reasons["accounting Q"] == 1
        append(today, format_line(time.time(), "Q", "3.srv", "queue=other"))  # another queue
        assert not trigger.wait(timeout=0.5)
        append(today, format_line(time.time(), "D", "3.srv", "requestor=a@b"))  # no queue: counts
        assert trigger.wait(timeout=60).reasons["accounting D"] == 1
    finally:
        watcher.stop()
    assert (tmp_path / "acct.pos").exists()


def test_reading_the_accounting_log_is_no_event(tmp_path):
    # Opening and closing a file are inotify events too; the watcher once read the log again for
    # each of them, its own reads included: thousands of reads a second on an idle cluster.
    acct, _ = make_home(tmp_path)
    today = acct / time.strftime("%Y%m%d")
    append(today, format_line(time.time(), "Q", "1.srv", "queue=batch"))
    trigger = Trigger()
    watcher = TorqueWatcher(str(tmp_path), trigger, None)
    watcher.start()
    try:
        for _ in range(50):  # other readers: an administrator's tail, a log shipper
            today.read_bytes()
        append(today, format_line(time.time(), "Q", "2.srv", "queue=batch"))
        assert trigger.wait(timeout=60).reasons["accounting Q"] == 1
        append(today, format_line(time.time(), "Q", "3.srv", "queue=batch"))
        assert trigger.wait(timeout=60).reasons["accounting Q"] == 1
        # One read at start, about one per append (a write can be two events): none for the
        # 50 readings or for the watcher's own.
        assert watcher.reads <= 6, watcher.reads
        assert watcher.records_seen == 2
    finally:
        watcher.stop()


def test_job_files_fire(tmp_path):
    _, jobs = make_home(tmp_path)
    trigger = Trigger()
    watcher = TorqueWatcher(str(tmp_path), trigger, None)
    watcher.start()
    try:
        (jobs / "7.srv.JB").write_bytes(b"<job/>")
        assert "job file queued" in trigger.wait(timeout=5).reasons
        os.unlink(jobs / "7.srv.JB")
        assert "job file purged" in trigger.wait(timeout=5).reasons
        sub = jobs / "7"
        sub.mkdir()
        (sub / "17.srv.JB").write_bytes(b"<job/>")  # use_jobs_subdirs layout
        assert "job file queued" in trigger.wait(timeout=5).reasons
    finally:
        watcher.stop()


def test_missing_directories_are_not_fatal_and_are_picked_up_later(tmp_path):
    trigger = Trigger()
    watcher = TorqueWatcher(str(tmp_path), trigger, None)
    watcher.start()
    try:
        assert watcher._watched == set()
        acct, _ = make_home(tmp_path)
        watcher.ensure()
        assert len(watcher._watched) == 2
        append(acct / time.strftime("%Y%m%d"), format_line(time.time(), "E", "9.srv", "queue=batch"))
        assert trigger.wait(timeout=5)
    finally:
        watcher.stop()


def test_resaving_a_known_job_file_fires_nothing(tmp_path):
    """A real pbs_server writes every queued job's .JB again at each scheduling cycle, through a
    .JC renamed over it: that is no news. A new job's files are."""
    _, jobs = make_home(tmp_path)
    (jobs / "8.srv.JB").write_bytes(b"<job/>")  # there before the watcher started
    trigger = Trigger()
    watcher = TorqueWatcher(str(tmp_path), trigger, None)
    watcher.start()
    try:
        for _ in range(3):
            (jobs / "8.srv.JC").write_bytes(b"<job again/>")
            os.rename(jobs / "8.srv.JC", jobs / "8.srv.JB")
            with open(jobs / "8.srv.JB", "ab") as handle:
                handle.write(b" ")
        # The marker: a new job's file fires "queued"; a re-save that fired would say "saved".
        (jobs / "9.srv.JB").write_bytes(b"")
        fired = trigger.wait(timeout=5)
        assert dict(fired.reasons) == {"job file queued": 1}
        # A new job written whole through a .JC is news too.
        (jobs / "10.srv.JC").write_bytes(b"<job/>")
        os.rename(jobs / "10.srv.JC", jobs / "10.srv.JB")
        assert dict(trigger.wait(timeout=5).reasons) == {"job file saved": 1}
    finally:
        watcher.stop()


def test_a_fifo_in_the_accounting_or_jobs_directory_never_blocks_the_watcher(tmp_path, caplog):
    import logging
    import threading

    acct, jobs = make_home(tmp_path)
    os.mkfifo(acct / "20991231")
    trigger = Trigger()
    watcher = TorqueWatcher(str(tmp_path), trigger, None, str(tmp_path / "acct.pos"))
    with caplog.at_level(logging.ERROR):
        started = threading.Thread(target=watcher.start, daemon=True)
        started.start()
        started.join(60)
        assert not started.is_alive(), "the watcher blocked on the FIFO"  # before: it did
        try:
            os.mkfifo(jobs / "9.srv.JB")
            today = acct / "20991232"
            append(today, format_line(time.time(), "Q", "2.srv", "queue=batch"))
            fired = trigger.wait(timeout=60)
            assert fired.reasons.get("accounting Q") == 1
            wait_for(lambda: any("9.srv.JB is not a regular file" in r.getMessage()
                                 for r in caplog.records), 60, "the job FIFO to be refused")
            assert "job file queued" not in fired.reasons
        finally:
            watcher.stop()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("20991231 is not a regular file" in m for m in messages), messages
