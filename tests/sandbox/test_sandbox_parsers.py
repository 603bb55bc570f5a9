"""Phorque's own accounting parser and tailer read everything the sandbox writes."""

from __future__ import annotations

from pathlib import Path

from phorque.adapters.torque.accounting import AccountingParser, parse_line
from phorque.adapters.torque.tailer import AccountingTailer


def test_parser_reads_every_record_the_sandbox_writes(make_sandbox):
    sb = make_sandbox(nodes=2, np=4, speed=20, keep_completed=0)
    serial = sb.qsub(runtime=20)
    wide = sb.qsub("-l", "nodes=2:ppn=3,walltime=00:10:00", runtime=40)
    array = sb.qsub("-t", "1-3", "-l", "nodes=1:ppn=2", runtime=20)
    killed = sb.qsub(runtime=600, exit_code=0)
    sb.wait_for(lambda: sb.records("S", killed), what="the last job to start")
    sb.run("qdel", killed, check=True)
    queued = sb.qsub("-l", "nodes=5")  # larger than the cluster
    sb.run("qdel", queued, check=True)
    failing = sb.qsub(runtime=20, exit_code=7)
    sb.wait_for(lambda: len(sb.records("E")) == 7, timeout=30, what="every job to end")

    parser = AccountingParser()
    records = []
    for path in sorted(Path(sb.layout.accounting).iterdir()):
        records += list(parser.parse_file(path))
    assert parser.bad == 0 and parser.parsed == len(records) == len(sb.accounting())
    by = {(r.type, r.job_id): r for r in records}
    number = array.split("[")[0]
    subjobs = [f"{number}[{i}].srv.test" for i in (1, 2, 3)]
    assert {r.job_id for r in records if r.type == "Q"} == {serial, wide, killed, queued, failing,
                                                            *subjobs}

    end = by[("E", wide)]
    assert (end.exit_status, end.execution_slots, end.cores) == (0, 6, 6)
    assert end.walltime_secs == 600 and end.used_walltime_secs == 40
    assert end.exec_host == "node01/1-3+node02/0-2"  # the serial job holds node01/0
    assert end.start is not None and end.end is not None and end.end >= end.start
    assert end.queue == "batch" and end.jobname == "STDIN" and end.owner.count("@") == 1
    assert by[("S", subjobs[0])].cores == 2 and by[("S", subjobs[0])].jobname == "STDIN-1"
    assert by[("E", killed)].exit_status == 271 and by[("D", killed)].requestor
    assert by[("E", failing)].exit_status == 7
    assert ("E", queued) not in by and ("S", queued) not in by and ("D", queued) in by
    for record in records:
        assert parse_line(f"{sb.accounting()[records.index(record)]}\n") == record


def test_tailer_follows_the_records_as_they_are_written(make_sandbox):
    sb = make_sandbox(nodes=1, np=1, speed=10, keep_completed=0)
    tailer = AccountingTailer(sb.layout.accounting, from_start=True)
    assert tailer.poll() == []
    collected = []

    def seen(kind: str, job: str) -> bool:
        collected.extend(tailer.poll())
        return any((r.type, r.job_id) == (kind, job) for r in collected)

    first = sb.qsub(runtime=5)
    sb.wait_for(lambda: seen("S", first), what="the first job to start")
    assert [(r.type, r.job_id) for r in collected] == [("Q", first), ("S", first)]
    second = sb.qsub(runtime=5)
    sb.wait_for(lambda: seen("E", second), what="the second job's end")
    order = [(r.type, r.job_id) for r in collected]
    assert order == [("Q", first), ("S", first), ("Q", second), ("E", first), ("S", second),
                     ("E", second)]
    assert [r.time for r in collected] == sorted(r.time for r in collected)
    assert tailer.poll() == []
    assert tailer.parser.bad == 0
