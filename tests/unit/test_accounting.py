"""Torque's accounting lines: the real samples, the grammar's corners, hostile input."""

from __future__ import annotations

import json
import logging
import time
import tracemalloc
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from phorque.adapters.torque.accounting import (
    KNOWN_KEYS,
    RECORD_TYPES,
    AccountingFormatError,
    AccountingParser,
    Record,
    format_line,
    format_text,
    parse_line,
    reset_time_cache,
    tokenize,
)
from phorque.adapters.torque.resources import Asks, count_slots
from phorque.core.errors import TorqueError
from phorque.core.model import Chunk

FIXTURES = Path(__file__).parents[1] / "fixtures" / "accounting"
REFERENCE = json.loads((FIXTURES / "reference-lines.json").read_text())["lines"]
# Central European time with its daylight saving rules, written out so no tzdata is needed.
CET = "CET-1CEST,M3.5.0,M10.5.0/3"
PROPERTIES = ("queue", "user", "group", "jobname", "owner", "exec_host", "requestor", "ctime",
              "qtime", "etime", "start", "end", "exit_status", "cores", "walltime_secs",
              "used_walltime_secs", "execution_slots", "resources", "resources_used")


def local_time(stamp: str) -> float:
    return time.mktime(time.strptime(stamp, "%m/%d/%Y %H:%M:%S"))


@pytest.fixture
def timezone(monkeypatch):
    """Switch the process's time zone for one test, and back."""
    def use(tz: str) -> None:
        monkeypatch.setenv("TZ", tz)
        time.tzset()
        reset_time_cache()
    yield use
    monkeypatch.undo()
    time.tzset()
    reset_time_cache()


# --- the real lines of the reference ----------------------------------------------------------

@pytest.mark.parametrize("sample", REFERENCE, ids=[s["line"][:30] for s in REFERENCE])
def test_reference_line(sample):
    record = parse_line(sample["line"] + "\n")
    assert record.type == sample["type"]
    assert record.job_id == sample["job_id"]
    assert record.time == local_time(sample["line"][:19])
    assert dict(record.fields) == sample["fields"]
    # Key order as written (S/E records follow acct_job's order).
    assert list(record.fields) == list(sample["fields"])
    if "text" in sample:
        assert record.text == sample["text"]
    for name, expected in sample["expect"].items():
        assert getattr(record, name) == expected, name


@pytest.mark.parametrize("sample", [s for s in REFERENCE if "cet_time" in s],
                         ids=lambda s: s["type"])
def test_reference_line_time_matches_its_own_start_or_end_in_cet(sample, timezone):
    # The Ghent server ran in Central European time: its S line is stamped with the job's start,
    # its E line with the job's end, which the record also carries as epoch seconds.
    timezone(CET)
    assert parse_line(sample["line"]).time == sample["cet_time"]


def test_reference_log_file_parses_whole(tmp_path):
    parser = AccountingParser()
    records = list(parser.parse_file(FIXTURES / "reference-lines.log"))
    assert [r.job_id for r in records] == [s["job_id"] for s in REFERENCE]
    assert (parser.parsed, parser.bad) == (len(REFERENCE), 0)


# --- timestamps ---------------------------------------------------------------------------------

def test_time_cache_follows_daylight_saving_changes(timezone):
    timezone(CET)
    spring = [parse_line(f"03/29/2026 {hh}:30:00;Q;1.s;queue=a").time for hh in ("01", "03")]
    assert spring[1] - spring[0] == 3600  # 02:00 CET became 03:00 CEST
    autumn = [parse_line(f"10/25/2026 {hh}:30:00;Q;1.s;queue=a").time for hh in ("01", "03")]
    assert autumn[1] - autumn[0] == 3 * 3600  # 03:00 CEST became 02:00 CET
    for day in ("03/29/2026", "10/25/2026", "07/01/2026"):
        for hour in range(24):
            if day == "10/25/2026" and hour == 2:
                continue  # the hour that happens twice: mktime may pick either
            for minute, second in ((0, 0), (17, 42), (59, 59)):
                stamp = f"{day} {hour:02d}:{minute:02d}:{second:02d}"
                assert parse_line(f"{stamp};E;1.s;").time == local_time(stamp), stamp


@given(st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2099, 12, 30)))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_time_equals_mktime(timezone, moment):
    timezone(CET)
    # Skip the hour that happens twice (the last Sunday of October, 02:xx): mktime may pick
    # either of its two times.
    assume(not (moment.month == 10 and moment.day > 24 and moment.weekday() == 6
                and moment.hour == 2))
    stamp = moment.strftime("%m/%d/%Y %H:%M:%S")
    assert parse_line(f"{stamp};S;7.srv;user=a").time == local_time(stamp)


@pytest.mark.parametrize("stamp", [
    "13/01/2020 00:00:00", "02/30/2020 00:00:00", "00/10/2020 10:00:00", "01/00/2020 10:00:00",
    "01/01/2020 24:00:00", "01/01/2020 10:60:00", "01/01/2020 10:00:61", "1/01/2020 10:00:00",
    "01/01/20 10:00:00", "01-01-2020 10:00:00", "01/01/2020T10:00:00", "01/01/2020 10:00",
    "01/01/2020 10:00:00 ", " 01/01/2020 10:00:00", "01/01/0000 10:00:00", "０1/01/2020 10:00:00",
    "", "garbage",
])
def test_bad_timestamps_are_rejected(stamp):
    with pytest.raises(AccountingFormatError, match="timestamp|expected"):
        parse_line(f"{stamp};Q;1.srv;queue=batch")


def test_leap_day_and_leap_second_parse():
    assert parse_line("02/29/2024 12:00:00;Q;1.s;").time == local_time("02/29/2024 12:00:00")
    assert parse_line("12/31/2016 23:59:60;Q;1.s;").time == local_time("12/31/2016 23:59:59") + 1


# --- header grammar -----------------------------------------------------------------------------

@pytest.mark.parametrize("line, problem", [
    ("06/28/2017 14:31:09;X;80.m;queue=default", "record type"),
    ("06/28/2017 14:31:09;QS;80.m;queue=default", "record type"),
    ("06/28/2017 14:31:09;;80.m;queue=default", "record type"),
    ("06/28/2017 14:31:09;Q;;queue=default", "job id"),
    ("06/28/2017 14:31:09;Q;80 m;queue=default", "job id"),
    ("06/28/2017 14:31:09;Q;80.m", "expected"),
    ("06/28/2017 14:31:09", "expected"),
    ("", "expected"),
    ("\n", "expected"),
])
def test_bad_headers_are_rejected(line, problem):
    with pytest.raises(AccountingFormatError, match=problem):
        parse_line(line)


def test_format_error_is_a_torque_error():
    assert issubclass(AccountingFormatError, TorqueError)


def test_every_record_type_parses():
    for rtype in RECORD_TYPES:
        assert parse_line(f"11/25/2026 10:00:00;{rtype};5.srv;").type == rtype


def test_rerun_checkpoint_and_restart_records():
    rerun = parse_line("11/25/2026 10:00:00;R;12.srv;\n")
    assert (rerun.type, rerun.text, dict(rerun.fields)) == ("R", "", {})
    held = parse_line("11/25/2026 10:00:01;C;12.srv;Checkpointed and held")
    assert (held.type, held.text, dict(held.fields)) == ("C", "Checkpointed and held", {})
    restart = parse_line("11/25/2026 10:00:02;T;12.srv;Restart from checkpoint\n")
    assert (restart.type, restart.text) == ("T", "Restart from checkpoint")
    assert restart.fields == {} and restart.queue is None and restart.cores is None


def test_array_ids_and_semicolons_in_text():
    sub = parse_line("11/25/2026 10:00:00;Q;123[4].srv;queue=batch")
    assert sub.job_id == "123[4].srv"
    record = parse_line("11/25/2026 10:00:00;C;123[].srv;Checkpointed; then held")
    assert (record.job_id, record.text) == ("123[].srv", "Checkpointed; then held")


def test_line_endings_are_not_part_of_text():
    assert parse_line("11/25/2026 10:00:00;A;1.s;\r\n").text == ""
    assert parse_line("11/25/2026 10:00:00;Q;1.s;queue=a \n").text == "queue=a "


def test_overlong_line_is_rejected():
    with pytest.raises(AccountingFormatError, match="exceeds"):
        parse_line("11/25/2026 10:00:00;E;1.s;" + "x" * (1 << 20))


# --- TEXT ---------------------------------------------------------------------------------------

TORQUE6_S = (
    "11/25/2026 09:00:00;S;4821.srv6;user=alice group=phys jobname=sim/step_3 queue=batch "
    "ctime=1795600000 qtime=1795600000 etime=1795600001 start_count=1 start=1795600800 "
    "owner=alice@login1 exec_host=n1/0-3+n2/0-3 Resource_List.walltime=02:00:00 "
    "Resource_List.nodect=2 Resource_Request_2.0=-L tasks=2:lprocs=4:usecores:memory=4GB "
    "-L tasks=1:lprocs=1:usecores:memory=4GB "
)


def test_resource_request_2_keeps_spaces_and_inner_equals():
    record = parse_line(TORQUE6_S)
    assert record.fields["Resource_Request_2.0"] == (
        "-L tasks=2:lprocs=4:usecores:memory=4GB -L tasks=1:lprocs=1:usecores:memory=4GB")
    assert record.fields["start_count"] == "1"
    assert record.jobname == "sim/step_3"
    assert record.cores == 9  # 2x4 + 1x1, no nodes= or procs=
    assert record.execution_slots == 8
    assert record.walltime_secs == 7200
    assert list(record.fields)[-1] == "Resource_Request_2.0"


def test_resource_request_2_ends_at_a_known_key():
    text = ("Resource_Request_2.0=-L tasks=1:lprocs=2 -L tasks=3 x=PARTITION:a "
            "session=77 Exit_status=-3 resources_used.walltime=17 ")
    fields = tokenize(text)
    assert fields == {"Resource_Request_2.0": "-L tasks=1:lprocs=2 -L tasks=3",
                      "x": "PARTITION:a", "session": "77", "Exit_status": "-3",
                      "resources_used.walltime": "17"}


def test_tokenizer_rules():
    # A token without '=' belongs to the value before it; an unknown key starts its own pair.
    assert tokenize("account=big project queue=q") == {"account": "big project", "queue": "q"}
    assert tokenize("exec_host=n1/0 exec_gpus=n1-gpu/0 end=5") == {
        "exec_host": "n1/0", "exec_gpus": "n1-gpu/0", "end": "5"}
    assert tokenize("queue=batch   ") == {"queue": "batch"}
    assert tokenize("user=a  group=b") == {"user": "a", "group": "b"}
    assert tokenize("Resource_List.nodes=2:ppn=8+n1:ppn=2 ") == {
        "Resource_List.nodes": "2:ppn=8+n1:ppn=2"}
    assert tokenize("x=a=b=c") == {"x": "a=b=c"}
    assert tokenize("queue=") == {"queue": ""}
    assert tokenize("") == {} and tokenize("   ") == {} and tokenize("Checkpointed") == {}
    assert tokenize("user=a user=b") == {"user": "b"}


def test_fields_are_read_only_and_record_is_immutable():
    record = parse_line(TORQUE6_S)
    with pytest.raises(TypeError):
        record.fields["user"] = "mallory"  # type: ignore[index]
    with pytest.raises(AttributeError):
        record.job_id = "other"  # type: ignore[misc]
    assert record == parse_line(TORQUE6_S) and hash(record) == hash(parse_line(TORQUE6_S))


def test_exec_host_slot_counting():
    hosts = "+".join(f"{n}/0-31" for n in range(2, 11))
    assert count_slots(hosts) == (288, 9)
    record = parse_line(f"11/25/2026 09:00:00;S;1.s;user=a exec_host={hosts} Resource_List.nodes=9:ppn=32")
    assert record.execution_slots == 288
    assert record.cores == 288
    comma = parse_line("11/25/2026 09:00:00;S;1.s;exec_host=a/0,3+a/5-7+b/1-3,5-7")
    assert comma.execution_slots == 2 + 3 + 6
    # total_execution_slots, when Torque wrote it, is the ground truth.
    ended = parse_line(f"11/25/2026 09:00:00;E;1.s;exec_host={hosts} total_execution_slots=300")
    assert ended.execution_slots == 300


@pytest.mark.parametrize("text, cores", [
    ("Resource_List.nodes=2:ppn=8", 16),
    ("Resource_List.nodes=1:ppn=4+8:ppn=1", 12),
    ("Resource_List.procs=4", 4),
    ("Resource_List.nodes=2:ppn=2 Resource_List.procs=3", 7),
    ("Resource_List.walltime=01:00:00", 1),
    ("Resource_List.ncpus=8", 8),  # ncpus alone: N cores, as the schedulers treat it
    ("queue=batch", None),
])
def test_cores(text, cores):
    assert parse_line(f"11/25/2026 09:00:00;S;1.s;{text}").cores == cores


def test_numbers_and_durations():
    record = parse_line("11/25/2026 09:00:00;E;1.s;start=12 end=x Exit_status=271 "
                        "Resource_List.walltime=1:00:00:00 resources_used.walltime=12767")
    assert record.start == 12.0 and record.end is None
    assert record.exit_status == 271
    assert record.walltime_secs == 86400
    assert record.used_walltime_secs == 12767
    weird = parse_line("11/25/2026 09:00:00;E;1.s;Exit_status=²7 start=1_000 end=٣ "
                       "resources_used.walltime=soon")
    assert (weird.exit_status, weird.start, weird.end, weird.used_walltime_secs) == (
        None, None, None, None)


def test_format_line_round_trip():
    when = local_time("11/25/2026 09:15:30")
    text = format_text({"user": "bob", "Resource_List.nodes": "1:ppn=2"}) + " "
    line = format_line(when, "S", "9.srv", text)
    assert line == "11/25/2026 09:15:30;S;9.srv;user=bob Resource_List.nodes=1:ppn=2 \n"
    record = parse_line(line)
    assert (record.time, record.type, record.job_id, record.cores) == (when, "S", "9.srv", 2)
    assert format_line(when, "A", "9.srv") == "11/25/2026 09:15:30;A;9.srv;\n"


# --- the counting, logging wrapper -------------------------------------------------------------

def test_feed_counts_and_logs_bad_lines(caplog):
    parser = AccountingParser("acct", log_limit=3, log_interval=3600)
    with caplog.at_level(logging.WARNING):
        assert parser.feed("11/25/2026 09:00:00;Q;1.s;queue=a") is not None
        for i in range(10):
            assert parser.feed(f"not a line {i}", where=f"f:{i}") is None
        assert parser.feed(b"11/25/2026 09:00:00;Q;2.s;queue=\xff") is not None
    assert (parser.parsed, parser.bad) == (2, 10)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3  # rate-limited
    assert "f:0: skipped a malformed line (expected MM/DD/YYYY" in messages[0]
    assert "'not a line 0'" in messages[0]


def test_unshown_bad_lines_are_reported_later(caplog):
    parser = AccountingParser("acct", log_limit=1, log_interval=0.5)
    with caplog.at_level(logging.WARNING):
        for i in range(3):
            parser.feed(f"bad {i}")
        time.sleep(0.6)
        parser.feed("bad 3")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "bad 0" in messages[0]
    assert messages[1] == "acct: 2 more malformed lines were skipped without a message"
    assert "bad 3" in messages[2]
    assert parser.bad == 4


def test_parse_file_survives_bad_bytes_and_reports_line_numbers(tmp_path, caplog):
    path = tmp_path / "20261125"
    path.write_bytes(
        b"11/25/2026 09:00:00;Q;1.s;queue=batch\n"
        b"\xff\xfe\x00garbage\n"
        b"11/25/2026 09:00:01;S;1.s;user=\xe9t\xe9 jobname=caf\xc3\xa9\x00 \n"
        b"\n"
        b"11/25/2026 09:00:02;E;1.s;Exit_status=0"  # no final newline: still a line
    )
    parser = AccountingParser()
    with caplog.at_level(logging.WARNING):
        records = list(parser.parse_file(path))
    assert [r.type for r in records] == ["Q", "S", "E"]
    assert records[1].user == "\ufffdt\ufffd" and records[1].jobname == "café\x00"
    assert records[2].exit_status == 0
    assert (parser.parsed, parser.bad) == (3, 2)
    text = caplog.text
    assert f"{path}:2: skipped" in text and f"{path}:4: skipped" in text


def test_parse_file_memory_stays_bounded_on_a_line_without_end(tmp_path, caplog):
    path = tmp_path / "huge"
    good = b"11/25/2026 09:00:00;Q;1.s;queue=batch\n"
    with open(path, "wb") as out:
        out.write(good)
        chunk = b"A" * (1 << 20)
        for _ in range(24):  # 24 MiB in one line
            out.write(chunk)
        out.write(b"\n" + good * 3)
    parser = AccountingParser()
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING):
            count = sum(1 for _ in parser.parse_file(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 4 and parser.bad == 1
    assert peak < 6 * (1 << 20), peak
    assert f"{path}:2: skipped a malformed line (longer than 1048576 bytes)" in caplog.text


@pytest.mark.parametrize("text", [" " * (1 << 20), "a" * (1 << 20), "a= " * 300000,
                                  " a" * 500000, "Resource_Request_2.0=" + "-L tasks=1 " * 90000])
def test_hostile_text_tokenizes(text):
    """Every property of a 1 MiB hostile line can be read. That it takes linear time is a
    figure, not a pass/fail bound (a loaded machine makes any bound flaky): ``python3 dev.py
    bench fuzz --only linear`` prints the times at four sizes and their ratios."""
    line = "11/25/2026 09:00:00;E;1.s;" + text[: (1 << 20) - 40]
    record = parse_line(line)
    for name in PROPERTIES:
        getattr(record, name)
    assert record.job_id == "1.s"


# --- property tests ----------------------------------------------------------------------------

header_like = st.builds(
    lambda stamp, rtype, job, text: f"{stamp};{rtype};{job};{text}",
    st.one_of(st.just("11/25/2026 09:00:00"), st.text(max_size=25)),
    st.one_of(st.sampled_from(RECORD_TYPES), st.text(max_size=2)),
    st.text(max_size=20),
    st.text(max_size=200),
)
key_names = st.one_of(st.sampled_from(sorted(KNOWN_KEYS)),
                      st.from_regex(r"(Resource_List|resources_used)\.[a-z_]{1,8}", fullmatch=True))


@given(st.one_of(st.text(max_size=300), header_like))
@settings(max_examples=400)
def test_parse_line_raises_nothing_but_format_errors(line):
    try:
        record = parse_line(line)
    except AccountingFormatError:
        return
    assert isinstance(record, Record) and record.type in RECORD_TYPES
    for name in PROPERTIES:
        getattr(record, name)  # every property answers, whatever TEXT holds


@given(st.lists(st.one_of(st.text(max_size=120), header_like), max_size=30))
def test_feed_never_raises_and_counts_every_line(lines):
    parser = AccountingParser(log_limit=0)
    results = [parser.feed(line) for line in lines]
    assert parser.parsed + parser.bad == len(lines)
    assert parser.parsed == sum(r is not None for r in results)


@given(st.binary(max_size=2000))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_parse_file_never_raises_on_arbitrary_bytes(tmp_path, data):
    path = tmp_path / "bytes"
    path.write_bytes(data)
    parser = AccountingParser(log_limit=0)
    records = list(parser.parse_file(path))
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    assert parser.parsed == len(records)
    assert parser.parsed + parser.bad == lines


@given(st.binary(max_size=300).map(lambda b: b"11/25/2026 09:00:00;E;1.s;" + b))
def test_feed_bytes_with_a_good_header(data):
    parser = AccountingParser(log_limit=0)
    record = parser.feed(data)
    assert record is not None and record.job_id == "1.s"
    for name in PROPERTIES:
        getattr(record, name)


safe_value = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")),
                     min_size=1, max_size=20)


@given(st.dictionaries(key_names, safe_value, max_size=12),
       st.lists(st.tuples(st.integers(1, 64), st.integers(1, 32)), max_size=3))
def test_written_fields_read_back(pairs, request2):
    fields = dict(pairs)
    fields.pop("Resource_Request_2.0", None)
    if request2:
        fields["Resource_Request_2.0"] = " ".join(f"-L tasks={t}:lprocs={p}" for t, p in request2)
    line = format_line(time.time(), "S", "77.srv", format_text(fields) + " ")
    record = parse_line(line)
    assert dict(record.fields) == fields
    assert list(record.fields) == list(fields)
    if request2 and not any(k.startswith("Resource_List.") for k in fields):
        assert record.cores == sum(t * p for t, p in request2)


# --- what a record's job asked for besides cores --------------------------------------------------

def test_memory_gpu_and_property_asks_of_a_record():
    # As pbs_server 6.1.3 writes an E record (sizes back in decimal with a lower-case suffix).
    record = parse_line(
        "12/03/2026 08:37:28;E;1.vm;user=torquejobs group=torquejobs jobname=x queue=batch "
        "ctime=1796287004 qtime=1796287004 etime=1796287020 start_count=1 start=1796287020 "
        "owner=torquejobs@localhost exec_host=torque-mom2/0-3+torque-mom1/1-4 Resource_List.mem=8gb "
        "Resource_List.pmem=4gb Resource_List.vmem=1536mb Resource_List.pvmem=2mw "
        "Resource_List.nodes=2:ppn=4:ib:gpus=1 Resource_List.gres=gpu:1 Resource_List.nodect=2 "
        "Resource_List.walltime=01:00:00 session=8791 total_execution_slots=8 end=1796287048 "
        "Exit_status=0 resources_used.mem=8716kb")
    assert record.asks == Asks(mem_mb=8192, pmem_mb=4096, vmem_mb=1536, pvmem_mb=8, gpus=3)
    assert record.chunks == (Chunk(1, 4, mem_mb=16384, gpus=2, properties=("ib",)),
                             Chunk(1, 4, mem_mb=16384, gpus=1, properties=("ib",)))


def test_a_record_without_asks_asks_for_none():
    record = parse_line("12/03/2026 08:37:28;S;3.vm;queue=batch Resource_List.nodes=1 "
                        "Resource_List.walltime=01:00:00")
    assert record.asks == Asks()
    assert record.chunks == (Chunk(1, 1),)


@pytest.mark.parametrize("text", ["queue=batch", "requestor=root@vm", ""])
def test_records_without_a_request_have_no_asks(text):
    record = parse_line(f"12/03/2026 08:37:28;D;3.vm;{text}")
    assert record.asks is None and record.chunks is None


def test_request2_asks_of_a_record():
    record = parse_line("11/25/2026 09:00:00;E;9.s;queue=batch Resource_List.walltime=01:00:00 "
                        "Resource_Request_2.0=-L tasks=2:lprocs=4:usecores:memory=4GB:gpus=1 end=1")
    assert record.request2 == "-L tasks=2:lprocs=4:usecores:memory=4GB:gpus=1"
    assert record.asks == Asks(mem_mb=8192, gpus=2)
    assert record.chunks == (Chunk(2, 4, mem_mb=4096, gpus=1),)
    assert record.cores == 8


@given(st.text(max_size=120))
def test_hostile_request_values_never_raise(value):
    assume("\n" not in value and "\r" not in value)
    record = parse_line(f"11/25/2026 09:00:00;E;1.s;Resource_List.mem={value} Resource_List.gres={value} "
                        f"Resource_List.nodes={value}")
    assert record.asks is None or record.asks.mem_mb >= 0
    assert record.chunks is None or all(c.count > 0 for c in record.chunks)
