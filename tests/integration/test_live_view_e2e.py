"""The daemon's live view of Torque, end to end: the real daemon process on the sandbox and a
moto server. A submit is answered from what changed (no full read), at once after a quiet
moment, and a reconciliation logs and counts what the view could not know."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.integration.kit import conf_text, wait_until
from tests.integration.test_daemon_e2e import desired, start_daemon  # noqa: F401 (fixture)

EVALUATION = re.compile(r"evaluation #\d+ \(([^)]*)\)")


def status(conf) -> dict:
    proc = subprocess.run([sys.executable, "-m", "phorque.cli.status", "-c", str(conf), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def reads(conf) -> dict:
    return status(conf)["daemon"].get("reads") or {}


def woken_by(text: str, reason: str) -> int:
    """How many logged evaluations name ``reason`` among the reasons that woke them."""
    return sum(1 for why in EVALUATION.findall(text) if reason in why)


def test_a_submit_is_answered_from_what_changed_without_a_full_read(
        make_sandbox, moto, tmp_path, start_daemon):  # noqa: F811
    sandbox = make_sandbox(nodes=1, np=2, boot_delay=60)
    daemon = start_daemon(conf_text(tmp_path, sandbox, moto, loop_sleep=120))
    conf = tmp_path / "phorque.conf"
    wait_until(lambda: reads(conf).get("full") == 1, 30, "the start's full read to be recorded")
    sandbox.qsub("-l", "nodes=1:ppn=4", runtime=600)
    wait_until(lambda: desired(moto) == 1, 60, "the launch for the submit")
    got = reads(conf)
    assert got["full"] == 1 and got["incremental"] >= 1, got
    # The submit's evaluation names what woke it; the reasons of one wake-up are joined, so the
    # job file and the Q record may share a line or come one per evaluation.
    wait_until(lambda: woken_by(daemon.text(), "accounting Q") or woken_by(daemon.text(), "job file queued"),
               30, "the submit's evaluation to be logged")
    # A job file of no job Torque knows is a file event that changes nothing: no cloud is read,
    # nothing is decided, and it is not counted as an evaluation. (Its look may share an
    # evaluation with something that did change, the launched instance joining or a look at it
    # while it boots: then another stray file is tried.)
    for attempt in range(3):
        answered = woken_by(daemon.text(), "job file")
        unchanged = reads(conf).get("unchanged", 0)
        stray = Path(sandbox.layout.jobs) / f"99999{attempt}.srv.test.JB"
        stray.write_text("")
        wait_until(lambda u=unchanged, a=answered: reads(conf).get("unchanged", 0) > u
                   or woken_by(daemon.text(), "job file") > a, 60, "the stray job file to be looked at")
        if reads(conf).get("unchanged", 0) > unchanged:
            break
    else:
        raise AssertionError("every stray job file was counted as an evaluation:\n" + daemon.text())
    assert woken_by(daemon.text(), "job file") == answered, daemon.text()
    assert daemon.stop() == 0


def test_the_reconciliation_logs_and_counts_what_the_view_could_not_know(
        make_sandbox, moto, tmp_path, start_daemon):  # noqa: F811
    sandbox = make_sandbox(nodes=2, np=2, boot_delay=60)
    daemon = start_daemon(conf_text(tmp_path, sandbox, moto, loop_sleep=4))
    conf = tmp_path / "phorque.conf"
    names = sorted(line.split()[0] for line in
                   sandbox.run("pbsnodes", "-l", "all", check=True).stdout.splitlines() if line.strip())
    wait_until(lambda: (reads(conf).get("full") or 0) >= 2, 60, "a reconciliation")
    assert status(conf)["daemon"].get("view_drift_total") == 0
    # An administrator's offline is written in no file Phorque watches: only the next full read
    # can see it, and it says what the view believed.
    sandbox.run("pbsnodes", "-o", "-N", "disk replaced", names[0], check=True)
    wait_until(lambda: (status(conf)["daemon"].get("view_drift_total") or 0) >= 1, 60,
               "the reconciliation to find the offline node")
    found = status(conf)["daemon"]["view_last_drift"]
    assert any(f"node {names[0]}: the view had free" in d and "Torque has offline" in d for d in found), found
    assert f"reconciliation: node {names[0]}" in daemon.text()
    text = subprocess.run([sys.executable, "-m", "phorque.cli.status", "-c", str(conf)],
                          capture_output=True, text=True, timeout=60).stdout
    assert "reconciliations found 1 difference(s) from the live view" in text, text
    # Submits between reconciliations are read by id, not with the whole queue.
    before = reads(conf).get("incremental") or 0
    sandbox.qsub("-l", "nodes=1:ppn=1", runtime=600)
    wait_until(lambda: (reads(conf).get("incremental") or 0) > before, 60, "an incremental read")
    assert daemon.stop() == 0


def test_a_submit_after_the_daemons_own_look_is_answered_at_once(
        make_sandbox, moto, tmp_path, start_daemon):  # noqa: F811
    # Gathering after every evaluation would hold this submit for ten minutes (and the next
    # reconciliation is two minutes away): the start, like a reconciliation or a wake-up, is the
    # daemon's own look, not a trigger that begins a burst to gather.
    sandbox = make_sandbox(nodes=1, np=2, boot_delay=60)
    daemon = start_daemon(conf_text(tmp_path, sandbox, moto, loop_sleep=120).replace(
        "event_delay_secs = 0.1", "event_delay_secs = 600"))
    conf = tmp_path / "phorque.conf"
    wait_until(lambda: reads(conf).get("full") == 1, 30, "the start's full read to be recorded")
    sandbox.qsub("-l", "nodes=1:ppn=4", runtime=600)
    wait_until(lambda: desired(moto) == 1, 60, "the launch for the submit")
    assert woken_by(daemon.text(), "accounting Q") or woken_by(daemon.text(), "job file queued")
    assert daemon.stop() == 0
