"""Torque accounting logs as a replay input: jobs rebuilt from Q, S, E, D and A records."""

from __future__ import annotations

import pytest

from phorque.adapters.torque.accounting import format_line, format_text
from phorque.core.model import Chunk
from phorque.replay import ReplaySettings
from phorque.replay.accounting import read_accounting
from phorque.replay.sim import Simulation
from phorque.replay.trace import Window

T0 = 1_700_000_000  # 2023-11-14


def full(job: str, queued: int, start: int, nodes: str, walltime: str, hosts: str, end: int | None = None,
         extra: dict | None = None) -> str:
    pairs = {"user": "alice", "group": "users", "jobname": "work", "queue": "batch", "ctime": queued,
             "qtime": queued, "etime": queued, "start": start, "owner": "alice@head",
             "exec_host": hosts, **(extra or {})}
    pairs.update({f"Resource_List.{k}": v for k, v in (("nodes", nodes), ("walltime", walltime)) if v})
    if end is not None:
        pairs.update({"session": 4242, "end": end, "Exit_status": 0, "resources_used.walltime": "00:05:00"})
    return format_text(pairs)


def write_log(directory, lines_by_day: dict[str, list[str]]) -> None:
    directory.mkdir()
    for day, lines in lines_by_day.items():
        (directory / day).write_text("".join(lines))


@pytest.fixture
def log_dir(tmp_path):
    day1 = [
        format_line(T0, "Q", "1.head", "queue=batch"),
        format_line(T0 + 10, "S", "1.head", full("1.head", T0, T0 + 10, "1:ppn=2", "00:10:00", "n1/0-1")),
        format_line(T0 + 5, "Q", "2.head", "queue=batch"),
        format_line(T0 + 6, "Q", "3.head", "queue=batch"),
        format_line(T0 + 20, "D", "3.head", "requestor=alice@head"),
        "this is not an accounting line\n",
        format_line(T0 + 30, "Q", "4.head", "queue=batch"),
        format_line(T0 + 40, "Q", "5.head", "queue=batch"),
        format_line(T0 + 41, "S", "5.head", full("5.head", T0 + 40, T0 + 41, "2:ppn=2", "01:00:00",
                                                  "n1/2-3+n2/0-1")),
        format_line(T0 + 50, "Q", "6.head", "queue=batch"),
        format_line(T0 + 55, "S", "6.head", full("6.head", T0 + 50, T0 + 55, "", "00:30:00", "n2/2")),
    ]
    day2 = [
        format_line(T0 + 310, "E", "1.head", full("1.head", T0, T0 + 10, "1:ppn=2", "00:10:00", "n1/0-1",
                                                   end=T0 + 310)),
        # No S record kept for job 2 (its day was rotated away): the E record is enough.
        format_line(T0 + 400, "E", "2.head", full("2.head", T0 + 5, T0 + 100, "", "00:20:00", "n2/0-2",
                                                   end=T0 + 400, extra={"Resource_List.procs": 3})),
        # Job 6 was rerun: it started again at +200 and its E record says so.
        format_line(T0 + 60, "R", "6.head", ""),
        format_line(T0 + 200, "S", "6.head", full("6.head", T0 + 50, T0 + 200, "", "00:30:00", "n2/3")),
        format_line(T0 + 500, "E", "6.head", full("6.head", T0 + 50, T0 + 200, "", "00:30:00", "n2/3",
                                                   end=T0 + 500)),
    ]
    path = tmp_path / "accounting"
    write_log(path, {"20231114": day1, "20231115": day2})
    return path


def test_jobs_rebuilt_from_their_records(log_dir):
    trace = read_accounting([log_dir])
    jobs = {j.id: j for j in trace.jobs}
    assert list(jobs) == ["1.head", "2.head", "6.head"]
    one, two, six = jobs["1.head"], jobs["2.head"], jobs["6.head"]
    assert (one.submit, one.run_secs, one.cores, one.chunks, one.walltime_secs) == (
        T0, 300, 2, (Chunk(1, 2),), 600)
    assert one.original_wait == 10
    # procs=3 takes cores anywhere: no node shape.
    assert (two.submit, two.run_secs, two.cores, two.chunks, two.walltime_secs) == (T0 + 5, 300, 3, (), 1200)
    assert (six.run_secs, six.cores, six.original_wait) == (300, 1, 150)
    assert trace.problems == {
        "malformed lines": 1,
        "jobs deleted or aborted before they started": 1,
        "jobs still queued when the log stops": 1,
        "jobs started but not ended when the log stops": 1,
    }
    # The machine, from exec_host: n1 up to slot 3, n2 up to slot 3 -> two nodes of 4 cores.
    assert (trace.nodes, trace.node_cores, trace.max_cores) == (2, 4, 8)


def test_window_counts_days_from_the_first_submit(log_dir):
    trace = read_accounting([log_dir], Window("0", 40 / 86400))
    assert [j.id for j in trace.jobs] == ["1.head", "2.head"]


def test_replay_of_the_log_on_its_own_machine_gives_back_its_waits(log_dir):
    # Jobs 1, 2 and 6 fit together on two 4-core nodes: each starts when it is submitted in the
    # replay (the original waits came from its own scheduler and the rerun).
    trace = read_accounting([log_dir])
    settings = ReplaySettings()
    sim = Simulation(trace, settings.make_policy("LocalOnly"), settings, keep_jobs=True)
    result = sim.run()
    assert (sim.local_nodes, sim.local_np) == (2, 4)
    assert {j: (job.start - job.submit, job.run) for j, job in sim.jobs.items()} == {
        "1.head": (0, 300), "2.head": (0, 300), "6.head": (0, 300)}
    assert result.started == 3


def test_missing_log_is_an_error_not_a_crash(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_accounting([tmp_path / "nowhere"])


def test_cli_reads_an_accounting_directory(log_dir, capsys):
    import json

    from phorque.replay.cli import main

    assert main([str(log_dir), "--json", "--policy", "CostAware"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trace"] == "accounting" and data["jobs"] == 3
    assert data["setup"]["local_nodes"] == 2 and data["setup"]["local_np"] == 4
    assert data["skipped"]["malformed lines"] == 1
    assert [r["mean_wait_secs"] for r in data["results"]] == [0, 0, 0]


def test_jobs_keep_what_they_asked_for_besides_cores(tmp_path):
    lines = [
        format_line(T0, "Q", "1.head", "queue=batch"),
        format_line(T0 + 100, "E", "1.head", full("1.head", T0, T0 + 10, "2:ppn=4:ib", "01:00:00",
                                                   "n1/0-3+n2/0-3", end=T0 + 100) + " Resource_List.mem=16gb"),
        format_line(T0, "Q", "2.head", "queue=batch"),
        format_line(T0 + 100, "E", "2.head", full("2.head", T0, T0 + 10, "1:ppn=8:gpus=2", "01:00:00",
                                                   "g1/0-7", end=T0 + 100) + " Resource_List.pmem=2gb"),
        format_line(T0, "Q", "3.head", "queue=batch"),
        format_line(T0 + 100, "E", "3.head", full("3.head", T0, T0 + 10, "", "01:00:00", "n1/0-3",
                                                   end=T0 + 100, extra={"Resource_List.procs": 4,
                                                                        "Resource_List.mem": "8gb"})),
        format_line(T0, "Q", "4.head", "queue=batch"),
        format_line(T0 + 100, "E", "4.head", full("4.head", T0, T0 + 10, "", "01:00:00", "n1/0-3",
                                                   end=T0 + 100, extra={"Resource_List.procs": 4})),
        format_line(T0, "Q", "5.head", "queue=batch"),
        format_line(T0 + 100, "E", "5.head", full("5.head", T0, T0 + 10, "1", "01:00:00", "n1/0",
                                                   end=T0 + 100, extra={"Resource_List.gres": "gpu:1"})),
    ]
    (tmp_path / "20231114").write_text("".join(lines))
    jobs = {j.id: j for j in read_accounting([tmp_path / "20231114"]).jobs}
    assert jobs["1.head"].chunks == (Chunk(2, 4, mem_mb=8192, properties=("ib",)),)
    assert jobs["2.head"].chunks == (Chunk(1, 8, mem_mb=16384, gpus=2),)
    # Cores anywhere that ask for memory keep their shape; without asks they stay the default.
    assert jobs["3.head"].chunks == (Chunk(4, 1, spread=True, mem_mb=2048),)
    assert jobs["4.head"].chunks == () and jobs["4.head"].cores == 4
    assert jobs["5.head"].chunks == (Chunk(1, 1, gpus=1),)
