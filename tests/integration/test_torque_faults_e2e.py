"""Torque faults under the real daemon: commands failing, hanging or printing broken or partial
output, pbs_server down for a while, the accounting file rotated, truncated or deleted.

Phorque keeps its state, decides nothing on a failed read (in particular it never drains or
terminates because a node is missing from one bad answer), and recovers when Torque does.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import boto3

from phorque_testbed.sandbox import faults as sandbox_faults
from tests.integration.faultkit import Cloud, conf_text
from tests.integration.kit import exit_statuses, wait_until


def ec2(moto: str):
    return boto3.client("ec2", endpoint_url=moto, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def live_instances(moto: str) -> dict[str, float]:
    """Instance id -> launch time of every pending or running instance."""
    out = {}
    for reservation in ec2(moto).describe_instances()["Reservations"]:
        for inst in reservation["Instances"]:
            if inst["State"]["Name"] in ("pending", "running"):
                out[inst["InstanceId"]] = inst["LaunchTime"].timestamp()
    return out


def state_rows(tmp_path: Path, sql: str, args=()) -> list[sqlite3.Row]:
    db = sqlite3.connect(tmp_path / "state" / "phorque.db", timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def log_time(line: str) -> float:
    """The epoch time of a daemon log line (its first 23 characters, local time)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def set_fault(sandbox, command: str, mode: str) -> None:
    sandbox_faults.write(sandbox.layout, {command: {"mode": mode}})


def test_pbs_server_down_for_a_while(make_sandbox, moto, daemons, tmp_path):
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=1)
    cloud = Cloud("local", "moto", moto, "g-local", price=0.1, max_instances=3, boot_timeout=4)
    daemon = daemons(conf_text(tmp_path, sandbox, [cloud], loop_sleep=1, command_timeout=2))
    running = [sandbox.qsub("-l", "nodes=1:ppn=4", runtime=14) for _ in range(2)]
    wait_until(lambda: len(sandbox.records("S")) == 2, 20, "two jobs to run on cloud nodes")
    late = sandbox.qsub("-l", "nodes=1:ppn=4", runtime=2)
    wait_until(lambda: len(live_instances(moto)) == 3, 20, "a third instance")
    sandbox.stop()  # pbs_server goes down before the new instance could join
    down_at = time.time()
    before = {r["instance_id"]: dict(r) for r in state_rows(tmp_path, "SELECT * FROM instances")}
    wait_until(lambda: time.time() - down_at > 10, 15, "an outage longer than boot_timeout_secs")
    # A read that was under way while the server stopped may end otherwise (a cut connection);
    # command_timeout is 2 s, so by down_at + 3 s every read of before has ended. A read that
    # began once the server was down gets a Torque client's first line with pbs_server down, as
    # on a real 6.1.3, or, on a loaded machine, its own timeout: nothing else.
    outage = [line for line in daemon.lines("skipped: Torque could not be read")
              if log_time(line) > down_at + 3]
    refused = [line for line in outage if "exit status 111: Unable to communicate with" in line]
    assert len(refused) >= 3, outage
    assert all(line in refused or "timed out after 2 s" in line for line in outage), outage
    assert len(live_instances(moto)) == 3
    assert state_rows(tmp_path, "SELECT * FROM decisions WHERE time > ?", (down_at,)) == []
    sandbox.start()
    wait_until(lambda: len(sandbox.records("E")) == 3, 30, "every job to end after the outage")
    assert exit_statuses(sandbox) == {job: 0 for job in [*running, late]}
    # Nothing was lost or given up: the instances of before are there, the late one joined and
    # ran its job, and the cloud was never blamed for what was Torque's outage.
    after = {r["instance_id"]: dict(r) for r in state_rows(tmp_path, "SELECT * FROM instances")}
    assert set(before) <= set(after) and len(after) == 3
    for iid, row in before.items():
        # The late instance may already be recorded, not joined, when the server stops; it
        # joins after the outage (checked below). One that had joined keeps its join.
        if row["joined_at"] is not None:
            assert after[iid]["joined_at"] == row["joined_at"] and after[iid]["node"] == row["node"]
    assert all(row["joined_at"] is not None and row["stage"] != "gone" for row in after.values())
    assert len(live_instances(moto)) == 3
    assert not daemon.lines("terminate") and not daemon.lines("recorded (")
    assert not daemon.lines("failed again")
    assert daemon.stop() == 0


def test_failed_or_partial_reads_never_scale_in(make_sandbox, moto, daemons, tmp_path):
    """Idle instances reach their drain moment while qstat and pbsnodes fail, hang, or print
    truncated, invalid or partial output: nothing is drained, terminated or removed, and no record
    changes; once Torque answers again they are scaled in at their next boundary as usual."""
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=1)
    # Drain moments: 57-60 s, then 117-120 s after each launch. A period long enough that the
    # set-up and the eight faults fit before the first moment on a loaded machine too.
    charge, margin = 60, 3
    cloud = Cloud("local", "moto", moto, "g-local", price=0.1, max_instances=2, charge=charge,
                  boot_timeout=3)
    daemon = daemons(conf_text(tmp_path, sandbox, [cloud], loop_sleep=1, command_timeout=1,
                               policy_lines=f"scale_in_margin_secs = {margin}\n"))
    jobs = [sandbox.qsub("-l", "nodes=1:ppn=4", runtime=2) for _ in range(2)]
    launched = wait_until(lambda: live_instances(moto) if len(live_instances(moto)) == 2 else None, 60,
                          "two instances")
    start = max(launched.values())

    def age() -> float:
        return time.time() - start

    wait_until(lambda: len(sandbox.records("E")) == 2, 120, "the jobs to end")
    assert exit_statuses(sandbox) == {job: 0 for job in jobs}
    wait_until(lambda: all(r["stage"] == "idle" for r in state_rows(tmp_path, "SELECT * FROM instances")),
               60, "the nodes to be idle")
    before = [dict(r) for r in state_rows(tmp_path, "SELECT instance_id, node, joined_at, launch_time "
                                                     "FROM instances ORDER BY instance_id")]
    assert age() < charge - margin - 20, "too slow to reach the first drain moment under faults"
    fault_from = time.time()
    # A partial node list first: the missing node is older than boot_timeout_secs (3 s), yet only
    # the reads are wrong, and for less than boot_timeout_secs.
    set_fault(sandbox, "pbsnodes", "partial")
    # Until an evaluation has seen the partial list (and said so), not for a fixed time.
    wait_until(lambda: daemon.lines("note: node", "is missing from Torque's node list"), 60,
               "an evaluation on the partial node list")
    argv = {"qstat": "qstat -f -x -t:", "pbsnodes": "pbsnodes -x:"}
    for mode in ("fail", "hang", "truncate", "invalid"):
        for command in ("qstat", "pbsnodes"):
            seen = len(daemon.lines("skipped: Torque could not be read", argv[command]))
            set_fault(sandbox, command, mode)
            wait_until(lambda c=command, n=seen: len(daemon.lines("skipped: Torque could not be read",
                                                                  argv[c])) > n,
                       60, f"an evaluation skipped for {command} {mode}")
            sandbox_faults.write(sandbox.layout, {command: {"mode": "fail"}})  # no gap in between
    wait_until(lambda: age() > charge + 0.5, 2 * charge, "the drain moment to pass under faults")
    sandbox_faults.write(sandbox.layout, {})
    fault_to = time.time()
    assert age() < 2 * charge - margin - 2, "the faults outlasted the next drain moment"
    assert len(live_instances(moto)) == 2
    assert state_rows(tmp_path, "SELECT * FROM decisions WHERE time >= ?", (fault_from,)) == []
    assert state_rows(tmp_path, "SELECT * FROM transitions WHERE time >= ? AND stage != 'idle'",
                      (fault_from,)) == []
    after = [dict(r) for r in state_rows(tmp_path, "SELECT instance_id, node, joined_at, launch_time "
                                                    "FROM instances ORDER BY instance_id")]
    assert after == before
    assert daemon.lines("note: node", "is missing from Torque's node list")
    for reason in ("exit status 111", "exit status 1:", "timed out after 1 s", "truncated output",
                   "invalid XML"):
        assert daemon.lines("skipped: Torque could not be read", reason), reason
    # Torque answers again: the next drain moment is used as usual.
    wait_until(lambda: not live_instances(moto), 2 * charge, "the scale-in at the next boundary",
               interval=0.5)
    assert age() > 2 * charge - margin - 1
    def terminations() -> list[sqlite3.Row] | None:
        rows = state_rows(tmp_path, "SELECT * FROM decisions WHERE action = 'terminate'")
        return rows if len(rows) == 2 else None

    retired = wait_until(terminations, 60, "the terminations to be recorded")
    assert all(r["time"] > fault_to for r in retired)
    assert all(r["outcome"] == "done" for r in retired)
    assert "<Node>" not in sandbox.run("pbsnodes", "-x").stdout
    assert daemon.stop() == 0


def test_accounting_file_rotated_truncated_and_deleted_under_the_tailer(make_sandbox, moto, daemons,
                                                                       tmp_path):
    """The daemon's tailer follows the accounting file through a rotation (renamed away and
    started afresh), a truncation and a deletion: every record is read once, none is lost."""
    sandbox = make_sandbox(nodes=1, np=4)
    cloud = Cloud("local", "moto", moto, "g-local", price=0.1, max_instances=1)
    # No timer and no nudges: only Torque's files make the daemon evaluate.
    daemon = daemons(conf_text(tmp_path, sandbox, [cloud], loop_sleep=600), debug=True)
    directory = Path(sandbox.layout.accounting)

    def current() -> Path:
        (path,) = [p for p in directory.iterdir() if p.name.isdigit()]
        return path

    def read_once(job: str) -> None:
        wait_until(lambda: daemon.lines("phorque.watcher: accounting Q", job), 10, f"the Q record of {job}")

    jobs = [sandbox.qsub("-l", "nodes=1:ppn=1", runtime=1)]
    read_once(jobs[-1])
    steps = {
        "rotated": lambda path: path.rename(path.with_name(path.name + ".1")),
        "truncated": lambda path: os.truncate(path, 0),
        "deleted": lambda path: path.unlink(),
    }
    for what, change in steps.items():
        # (The sandbox's own records are in the files changed here: the daemon's log tells.)
        wait_until(lambda: daemon.lines("phorque.watcher: accounting E", jobs[-1]), 20,
                   "the last job to end")
        evaluations = len(daemon.lines("evaluation #", "accounting Q"))
        change(current())
        jobs.append(sandbox.qsub("-l", "nodes=1:ppn=1", runtime=1))
        read_once(jobs[-1])
        wait_until(lambda n=evaluations: len(daemon.lines("evaluation #", "accounting Q")) > n,
                   10, f"an evaluation for the record after the file was {what}")
    warnings = daemon.text()
    assert "was replaced" in warnings and "was truncated" in warnings
    wait_until(lambda: len(daemon.lines("phorque.watcher: accounting E")) == len(jobs), 10,
               "every E record")
    # Every record once: one Q, S and E per job, whatever happened to the file.
    for kind in "QSE":
        seen = [line.rsplit(" ", 1)[-1] for line in daemon.lines(f"phorque.watcher: accounting {kind} ")]
        assert sorted(seen) == sorted(jobs), (kind, seen)
    # The saved position is at the end of the file pbs_server writes now.
    position = json.loads((tmp_path / "state" / "accounting.pos").read_text())
    path = current()
    assert (position["file"], position["inode"], position["offset"]) == (
        path.name, path.stat().st_ino, path.stat().st_size)
    assert daemon.stop() == 0


def test_a_node_the_fresh_read_does_not_show_is_not_terminated(make_sandbox, moto, tmp_path):
    """Draining re-reads the node after marking it offline; an answer without the node (here a
    partial one) cannot vouch that it is empty, so the instance is not terminated."""
    from phorque.act.engine import Engine
    from phorque.adapters.config import load_config

    sandbox = make_sandbox(nodes=0, np=4, boot_delay=0.5)
    charge = 8
    cloud = Cloud("local", "moto", moto, "g-local", price=0.1, max_instances=2, charge=charge)
    conf = tmp_path / "phorque.conf"
    conf.write_text(conf_text(tmp_path, sandbox, [cloud], policy_lines="scale_in_margin_secs = 2\n"))
    engine = Engine(load_config(conf, environ={}))
    for _ in range(2):
        sandbox.qsub("-l", "nodes=1:ppn=4", runtime=1)
    engine.evaluate()
    engine.evaluate()  # joins both
    start = max(live_instances(moto).values())
    wait_until(lambda: len(sandbox.records("E")) == 2, 20, "the jobs to end")
    wait_until(lambda: time.time() - start > charge - 1.8, charge, "the drain moment")
    # pbsnodes leaves out its last node: the full list lacks one node, and the re-read of the
    # other (the only node of its answer) shows nothing at all.
    set_fault(sandbox, "pbsnodes", "partial")
    ev = engine.evaluate()
    drains = [o for o in ev.outcomes if o.action.kind == "drain"]
    assert drains and all(o.status == "failed" and "does not list" in o.detail for o in drains)
    assert not [o for o in ev.outcomes if o.action.kind in ("terminate", "remove") and o.status == "done"]
    assert len(live_instances(moto)) == 2
    # Torque's fault is not the cloud's: no backoff for it.
    assert engine.state.health().get("local", {}).get("failures", 0) == 0
    sandbox_faults.write(sandbox.layout, {})
    ev = engine.evaluate()  # Torque answers: the drained, idle nodes go as planned
    assert [o.status for o in ev.outcomes if o.action.kind == "terminate"] == ["done", "done"]
    assert not live_instances(moto)


def test_a_skipped_evaluation_is_retried_soon_not_at_the_next_reconciliation(make_sandbox, moto, daemons,
                                                                             tmp_path):
    # loop_sleep_secs 120: without the retry, the job submitted while qstat fails would wait
    # for the next reconciliation, two minutes away.
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=1)
    cloud = Cloud("local", "moto", moto, "g-retry", price=0.1, max_instances=2)
    daemon = daemons(conf_text(tmp_path, sandbox, [cloud], loop_sleep=120))
    sandbox_faults.write(sandbox.layout, {"qstat": {"mode": "fail", "count": 2}})
    sandbox.qsub("-l", "nodes=1:ppn=4", runtime=2)
    # Before the reconciliation 120 s away: only the retry can launch by then.
    wait_until(lambda: live_instances(moto), 100, "a launch for the job submitted while qstat failed")
    skipped = daemon.lines("skipped: Torque could not be read")
    assert len(skipped) == 2, daemon.text()
    # Backing off: 5 s, then 10 s between tries (at most loop_sleep_secs).
    assert [line.split("next try in ")[1] for line in daemon.lines("next try in")] == ["5 s", "10 s"]
    assert daemon.lines("(retry):"), daemon.text()
    wait_until(lambda: len(sandbox.records("E")) == 1, 60, "the job to run on the cloud node")
    assert list(exit_statuses(sandbox).values()) == [0]
