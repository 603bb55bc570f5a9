"""Torque's own files, written by a real pbs_server: the accounting tailer on the live log and the
file watcher on the live `server_priv/jobs` and `server_priv/accounting`."""

from __future__ import annotations

import os

from phorque.adapters.torque.tailer import AccountingTailer
from phorque.runtime.triggers import Trigger
from phorque.runtime.watcher import TorqueWatcher
from tests import waiting


def test_the_tailer_reads_every_record_of_the_live_log(real_torque):
    tailer = AccountingTailer(str(real_torque.server_priv / "accounting"))
    tailer.poll()  # what earlier tests left
    ok = real_torque.qsub("-l", "nodes=1:ppn=2", script="sleep 1\n")
    failing = real_torque.qsub(script="exit 3\n")
    deleted = real_torque.qsub("-h")
    real_torque.run("qdel", deleted)
    seen: dict[tuple[str, str], object] = {}

    def read() -> bool:
        for record in tailer.poll():
            seen[(record.type, record.job_id)] = record
        # The E records come with the moms' obits, seconds after the jobs end.
        return all(k in seen for k in (("E", ok), ("E", failing), ("D", deleted)))

    waiting.wait_for(read, 120, "Q, S, E and D records of the jobs", interval=0.3)
    assert ("Q", ok) in seen and ("S", ok) in seen and ("Q", deleted) in seen
    started = seen[("S", ok)]
    assert started.cores == 2 and started.get("exec_host", "").startswith("torque-mom")
    assert seen[("E", ok)].exit_status == 0
    assert seen[("E", failing)].exit_status == 3
    assert seen[("D", deleted)].get("requestor", "").startswith("root@")


def test_the_watcher_fires_for_new_jobs_and_not_for_resaved_job_files(real_torque):
    # pbs_sched tries a procs job at every scheduling cycle, pbs_server refuses it and saves its
    # .JB again each time: the re-saves of one waiting job, as a real server makes them.
    queued = real_torque.qsub("-l", "procs=3")
    waiting.wait_for(lambda: "Unknown node-attribute" in (real_torque.job_attr(queued, "comment") or ""),
                     60, "the first refused cycle", interval=0.3)
    job_file = next(real_torque.server_priv.joinpath("jobs").rglob(queued.split(".")[0] + ".*JB"))
    trigger = Trigger()
    watcher = TorqueWatcher(real_torque.torque_home, trigger, None)
    watcher.start()
    try:
        for _ in range(3):
            before = os.stat(job_file)
            real_torque.qmgr("set server scheduling = true")  # one scheduling cycle
            waiting.wait_for(lambda b=before: _changed(job_file, b), 60, "the job file saved again",
                             interval=0.1)
        # The marker: a new job. Had a re-save fired, its reason would be among these.
        real_torque.qsub("-h")
        fired = trigger.wait(timeout=30)
        assert fired, "no trigger for a new job"
        assert set(fired.reasons) <= {"accounting Q", "job file queued"}, fired.reasons
    finally:
        watcher.stop()


def _changed(path, before: os.stat_result) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return (now.st_ino, now.st_mtime_ns, now.st_size) != (before.st_ino, before.st_mtime_ns, before.st_size)
