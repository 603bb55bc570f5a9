"""The live view on a real pbs_server: fed by the watcher from the server's own accounting log and
job files, read by id and by name between full reads, it holds what a full read holds once the
jobs have started and ended, array sub-jobs included."""

from __future__ import annotations

import time

from phorque.act.clusterview import ClusterView
from phorque.adapters.torque.commands import Torque
from phorque.core.model import COMPLETED, QUEUED
from phorque.runtime.triggers import Trigger
from phorque.runtime.watcher import TorqueWatcher
from tests import waiting


def _states(jobs) -> dict[str, tuple]:
    return {j.id: (j.state, j.exec_hosts) for j in jobs if j.state != COMPLETED}


def test_the_view_follows_real_submits_starts_and_ends_and_agrees_with_a_full_read(real_torque):
    torque = Torque(real_torque.cluster_directory, 30)
    view, trigger = ClusterView(), Trigger()
    watcher = TorqueWatcher(real_torque.torque_home, trigger, None, None, view=view)
    watcher.start()
    try:
        assert watcher.watching_all
        first = view.refresh(torque, time.time())
        assert first.full and _states(first.jobs) == {}
        # Four slots (two moms of np=2): two short jobs, an array of three, one long job.
        short = [real_torque.qsub("-l", "nodes=1:ppn=1", script="sleep 3\n") for _ in range(2)]
        array = real_torque.qsub("-t", "0-2", "-l", "nodes=1:ppn=1", script="sleep 2\n")
        long_job = real_torque.qsub("-l", "nodes=1:ppn=1", script="sleep 300\n")
        base = array.split("[")[0]
        subs = [f"{base}[{k}]{array.split(']', 1)[1]}" for k in range(3)]
        read_by_id = started_seen = 0
        ended = short + subs

        def settled() -> bool:
            nonlocal read_by_id, started_seen
            if trigger.wait(2.0):
                got = view.refresh(torque, time.time())
                assert not got.full
                read_by_id += got.jobs_read
                states = _states(got.jobs)
                started_seen = max(started_seen, sum(1 for s, _ in states.values() if s == "R"))
                # A job the view holds as queued is one Torque has not ended.
                for job in got.jobs:
                    if job.state == QUEUED and job.id in ended:
                        assert real_torque.exit_status(job.id) is None, job.id
            return (all(real_torque.exit_status(j) is not None for j in ended)
                    and real_torque.records("S", long_job) != [])

        waiting.wait_for(settled, 240, "the short jobs and the array to end, the long job to start",
                         interval=0.1)
        # Records written after the last look (the long job's S, the last E) are read now.
        while trigger.wait(1.0):
            pass
        last = view.refresh(torque, time.time())
        for _ in range(20):  # nodes that still listed an ended job are read again
            if not last.unsettled:
                break
            trigger.wait(1.0)
            last = view.refresh(torque, time.time())
        assert not last.unsettled
        believed = _states(last.jobs)
        assert set(believed) == {long_job}, believed
        assert believed[long_job][0] == "R" and believed[long_job][1][0] in real_torque.nodes()
        read_by_id += last.jobs_read
        assert read_by_id >= 1 and started_seen >= 1   # submits read by id; starts from S records
        full = view.refresh(torque, time.time(), full=True)
        assert full.drift_total == 0, [d.describe() for d in full.drift]
        assert _states(full.jobs) == believed
    finally:
        watcher.stop()
