"""A mixed workload on a sandbox cluster, checked record by record.

Two nodes of four cores, time ten times faster. Everything is submitted with scheduling off, so
that the first scheduling cycle takes every decision at one moment and the outcome is exact:

    serial1   1 core, 20 s           starts at T0, ends T0+20
    wide      nodes=2:ppn=4, 10 s    waits for the whole cluster (after serial2 is deleted)
    arr[0-3]  1 core each, 10 s      start at T0, end T0+10
    serial2   1 core, 600 s          starts at T0, deleted while running (D then E, 271)
    gone      nodes=2:ppn=4          deleted while queued (D and no E)
    huge      nodes=3                larger than the cluster (an is_transit queue takes it):
                                     stays queued, then deleted
    procs3    procs=3, 10 s          never runs, as under a real pbs_sched 6.1.3 (pbs_server:
                                     Unknown node-attribute); deleted at the end
    overrun   walltime=5, 100 s      killed at its walltime (Exit_status=-11)
    failing   5 s, exit 3            ends with Exit_status=3
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from phorque.adapters.torque import xmlparse
from phorque.adapters.torque.resources import count_slots
from phorque_testbed.sandbox.jobattrs import hashname
from phorque_testbed.sandbox.placement import parse_exec_host

NOT_RUNNING = "Not Running: Not enough of the right type of nodes are available"
UNKNOWN_NODE_ATTRIBUTE = "Not Running - PBS Error: Unknown node-attribute "
FOLDERS = {str(d) for d in range(10)}


def fields(text: str) -> dict[str, str]:
    return dict(token.split("=", 1) for token in text.strip().split(" "))


def states(sb) -> dict[str, str]:
    body = sb.run("qstat", "-f", "-x", "-t", check=True).stdout.split("\n")[1]
    root = ET.fromstring(xmlparse.sanitize(body))
    return {job.findtext("Job_Id"): job.findtext("job_state") for job in root}


def test_mixed_workload(make_sandbox):
    sb = make_sandbox(nodes=2, np=4, speed=10, keep_completed=0)
    sb.run("qmgr", "-c", "set server scheduling=false", check=True)
    jobs = {
        "serial1": sb.qsub("-N", "serial1", runtime=20),
        "wide": sb.qsub("-N", "wide", "-l", "nodes=2:ppn=4", runtime=10),
        "arr": sb.qsub("-N", "arr", "-t", "0-3", runtime=10),
        "serial2": sb.qsub("-N", "serial2", runtime=600),
        "gone": sb.qsub("-N", "gone", "-l", "nodes=2:ppn=4", runtime=10),
        "huge": sb.qsub("-N", "huge", "-l", "nodes=3"),
        "procs3": sb.qsub("-N", "procs3", "-l", "procs=3", runtime=10),
        "overrun": sb.qsub("-N", "overrun", "-l", "walltime=5", runtime=100),
        "failing": sb.qsub("-N", "failing", runtime=5, exit_code=3),
    }
    number = jobs["arr"].split("[")[0]
    subjobs = [f"{number}[{i}].srv.test" for i in range(4)]
    everyone = [j for k, j in jobs.items() if k != "arr"] + subjobs

    # -- queued, nothing scheduled: Q records for jobs and sub-jobs, none for the template
    assert set(states(sb).values()) == {"Q"}
    assert sorted(r[2] for r in sb.records("Q")) == sorted(everyone)
    assert all(r[3] == "queue=batch" for r in sb.records("Q"))
    assert {f"{hashname(j)}.JB" for j in everyone} | {f"{number}.srv.test.TA"} <= sb.job_files()
    assert sb.run("qdel", jobs["gone"], check=True).stdout == ""
    assert sb.run("qmgr", "-c", "set server scheduling=true", check=True).returncode == 0

    # -- the first cycle: FIFO that skips what does not fit
    now = states(sb)
    running = {jobs["serial1"], *subjobs, jobs["serial2"], jobs["overrun"], jobs["failing"]}
    assert {j for j, s in now.items() if s == "R"} == running
    assert jobs["gone"] not in now  # completed and purged at once (keep_completed = 0)
    assert {j for j, s in now.items() if s == "Q"} == {jobs["wide"], jobs["huge"], jobs["procs3"]}
    t0 = {fields(r[3])["start"] for r in sb.records("S")}
    assert len(t0) == 1  # one cycle started them all

    # -- serial1 ends at T0+20; procs3 waits for good
    sb.wait_for(lambda: sb.records("E", jobs["serial1"]), timeout=30, what="serial1 to end")
    assert states(sb)[jobs["wide"]] == "Q"
    assert sb.run("qdel", jobs["serial2"], check=True).returncode == 0
    sb.wait_for(lambda: sb.records("E", jobs["wide"]), timeout=30, what="wide to run")
    huge = ET.fromstring(xmlparse.sanitize(
        sb.run("qstat", "-f", "-x", jobs["huge"]).stdout.split("\n")[1]))[0]
    assert huge.findtext("job_state") == "Q" and huge.findtext("comment") == NOT_RUNNING
    sb.run("qdel", jobs["huge"], check=True)
    procs3 = ET.fromstring(xmlparse.sanitize(
        sb.run("qstat", "-f", "-x", jobs["procs3"]).stdout.split("\n")[1]))[0]
    assert procs3.findtext("job_state") == "Q"
    assert procs3.findtext("comment") == UNKNOWN_NODE_ATTRIBUTE
    sb.run("qdel", jobs["procs3"], check=True)

    # -- every record, job by job
    started = [j for j in everyone if j not in (jobs["gone"], jobs["huge"], jobs["procs3"])]
    assert sorted(r[2] for r in sb.records("S")) == sorted(started)
    assert sorted(r[2] for r in sb.records("E")) == sorted(started)
    assert sorted(r[2] for r in sb.records("D")) == sorted(
        [jobs["gone"], jobs["serial2"], jobs["huge"], jobs["procs3"]])
    assert all(fields(r[3])["requestor"].count("@") == 1 for r in sb.records("D"))
    assert not sb.records("A") and not sb.records("R")
    lines = sb.accounting()
    for job in everyone:
        kinds = [line.split(";")[1] for line in lines if line.split(";")[2] == job]
        expected = {jobs["gone"]: ["Q", "D"], jobs["huge"]: ["Q", "D"], jobs["procs3"]: ["Q", "D"],
                    jobs["serial2"]: ["Q", "S", "D", "E"]}.get(job, ["Q", "S", "E"])
        assert kinds == expected, job
    stamps = [line[:19] for line in lines]
    assert stamps == sorted(stamps, key=lambda s: (s[6:10], s[:5], s[11:]))  # written in order

    ends = {r[2]: fields(r[3]) for r in sb.records("E")}
    starts = {r[2]: fields(r[3]) for r in sb.records("S")}
    exits = {job: int(f["Exit_status"]) for job, f in ends.items()}
    assert exits.pop(jobs["serial2"]) == 271
    assert exits.pop(jobs["overrun"]) == -11
    assert exits.pop(jobs["failing"]) == 3
    assert set(exits.values()) == {0}
    used = {job: f["resources_used.walltime"] for job, f in ends.items()}
    assert used[jobs["serial1"]] == "00:00:20" and used[jobs["failing"]] == "00:00:05"
    assert used[jobs["overrun"]] == "00:00:05"  # stopped at its walltime
    assert all(used[j] == "00:00:10" for j in [*subjobs, jobs["wide"]])
    assert starts[jobs["wide"]]["start"] == ends[jobs["serial2"]]["end"]
    assert starts[jobs["wide"]]["exec_host"] == "node01/0-3+node02/0-3"
    assert fields(sb.records("E", jobs["wide"])[0][3])["total_execution_slots"] == "8"
    assert ends[jobs["wide"]]["start_count"] == "1"

    # -- no slot ever served two jobs at once
    intervals = []
    for job, start in starts.items():
        slots, hosts = count_slots(start["exec_host"])
        assert (slots, hosts) == (int(ends[job]["total_execution_slots"]),
                                  int(ends[job]["unique_node_count"]))
        for host, numbers in parse_exec_host(start["exec_host"]).items():
            for slot in numbers:
                intervals.append((host, slot, int(start["start"]), int(ends[job]["end"]), job))
    for i, (host, slot, begin, end, job) in enumerate(intervals):
        for other in intervals[i + 1:]:
            if (other[0], other[1]) == (host, slot):
                assert end <= other[2] or other[3] <= begin, (job, other[4])

    # -- every job is gone, with its files (keep_completed = 0)
    sb.wait_for(lambda: sb.job_files() == FOLDERS, timeout=10, what="the job files to go")
    assert sb.run("qstat", "-t").stdout == ""
