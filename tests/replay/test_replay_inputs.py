"""Reading workloads: SWF lines good and bad, windows, compression."""

from __future__ import annotations

import gzip

import pytest

from phorque.replay.swf import read_swf
from phorque.replay.trace import DAY, Window, parse_start
from tests.replay.swfdata import HEADER, swf_line

BAD = (
    "1 0 -1 100 4\n"                                    # 5 fields
    "2 x -1 100 4 -1 -1 4 200 -1 1 1 1 -1 1 -1 -1 -1\n"  # not a number
    + swf_line(3, 10, -1, 4, 200)                        # no run time
    + swf_line(4, 20, 100, -1, 200).replace(" 4 ", " -1 ", 1)  # no processor count
)


def test_bad_and_incomplete_lines_are_counted_and_skipped(tmp_path):
    path = tmp_path / "t.swf"
    path.write_text(HEADER.format(procs=8) + swf_line(10, 0, 50, 2, 100) + BAD + swf_line(11, 30, 60, 1, -1))
    trace = read_swf(path)
    assert [j.id for j in trace.jobs] == ["10.swf", "11.swf"]
    assert trace.problems == {
        "lines without 18 fields": 1,
        "lines with a field that is not a number": 1,
        "jobs with no run time": 1,
        "jobs with no processor count": 1,
    }
    assert trace.bad == 4
    assert trace.max_cores == 8
    first, second = trace.jobs
    assert (first.submit, first.run_secs, first.cores, first.walltime_secs) == (1e9, 50, 2, 100)
    # No requested time: twice the run time, at least a minute.
    assert second.walltime_secs == 120
    assert any("no requested time" in note for note in trace.notes)


def test_allocated_processors_else_requested(tmp_path):
    path = tmp_path / "t.swf"
    line = swf_line(1, 0, 10, 6, 100).split()
    line[4] = "-1"          # allocated unknown
    line[7] = "3"           # requested 3
    path.write_text(HEADER.format(procs=8) + " ".join(line) + "\n")
    assert read_swf(path).jobs[0].cores == 3


def test_window_by_days_and_by_date_on_a_compressed_trace(tmp_path):
    path = tmp_path / "t.swf.gz"
    lines = "".join(swf_line(i + 1, int(i * DAY / 2), 10, 1, 100) for i in range(10))  # every half day
    with gzip.open(path, "wt") as out:
        out.write(HEADER.format(procs=4) + lines)
    trace = read_swf(path, Window("1", 2))
    assert [j.id for j in trace.jobs] == ["3.swf", "4.swf", "5.swf", "6.swf"]
    assert trace.start == 1e9 + DAY and trace.end == 1e9 + 3 * DAY
    # 1e9 is 2001-09-09 01:46:40 UTC: the window from 2001-09-11 00:00 holds submits from day 1.93.
    assert [j.id for j in read_swf(path, Window("2001-09-11", 1)).jobs] == ["5.swf", "6.swf"]


def test_window_start_must_be_days_or_a_date():
    assert parse_start("0.5", 100.0) == 100.0 + DAY / 2
    with pytest.raises(ValueError, match="date"):
        parse_start("next tuesday", 0.0)
    with pytest.raises(ValueError):
        Window(None, 0).bounds(0.0)
