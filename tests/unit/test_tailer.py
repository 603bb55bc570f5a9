"""Following the accounting directory as pbs_server writes it, across days and restarts."""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phorque.adapters.torque.accounting import AccountingParser
from phorque.adapters.torque.tailer import AccountingTailer, PositionFile, TailPosition


def line(n: int, rtype: str = "Q", day: str = "11/25/2026") -> str:
    return f"{day} 10:{n // 60 % 60:02d}:{n % 60:02d};{rtype};{n}.srv;queue=batch \n"


def lines(*numbers: int) -> str:
    return "".join(line(n) for n in numbers)


def append(path: Path, text: str | bytes) -> None:
    with open(path, "ab") as out:
        out.write(text.encode() if isinstance(text, str) else text)


def ids(records) -> list[int]:
    return [int(r.job_id.split(".")[0]) for r in records]


@pytest.fixture
def acct(tmp_path) -> Path:
    directory = tmp_path / "accounting"
    directory.mkdir()
    return directory


def test_starts_at_the_end_of_the_newest_file(acct):
    append(acct / "20261124", lines(1, 2))
    append(acct / "20261125", lines(3, 4) + line(5)[:20])
    tailer = AccountingTailer(str(acct))
    assert tailer.poll() == []
    assert tailer.position.file == "20261125"
    append(acct / "20261125", line(5)[20:] + line(6))
    # The line that was being written at start-up is new: it is returned, once.
    assert ids(tailer.poll()) == [5, 6]


def test_from_start_reads_the_newest_file_whole(acct):
    append(acct / "20261124", lines(1, 2))
    append(acct / "20261125", lines(3, 4))
    assert ids(AccountingTailer(str(acct), from_start=True).poll()) == [3, 4]


def test_partial_last_line_is_held_back(acct):
    day = acct / "20261125"
    append(day, "")
    tailer = AccountingTailer(str(acct))
    whole = line(7)
    append(day, line(6) + whole[:10])
    assert ids(tailer.poll()) == [6]
    assert tailer.position.offset == len(line(6))
    append(day, whole[10:-1])
    assert tailer.poll() == []
    append(day, "\n")
    records = tailer.poll()
    assert ids(records) == [7] and records[0].text == "queue=batch "
    assert tailer.position.offset == len(line(6)) + len(whole)


def test_midnight_switch_and_gap_of_several_days(acct):
    append(acct / "20261125", lines(1))
    tailer = AccountingTailer(str(acct), from_start=True)
    assert ids(tailer.poll()) == [1]
    append(acct / "20261125", lines(2))  # before midnight
    append(acct / "20261126", lines(3))  # the first record of the next day opens its file
    assert ids(tailer.poll()) == [2, 3]
    assert tailer.position.file == "20261126"
    # Three quiet days, then two files appear between two polls.
    append(acct / "20261129", lines(4))
    append(acct / "20261130", lines(5))
    assert ids(tailer.poll()) == [4, 5]
    assert tailer.position == TailPosition("20261130", os.stat(acct / "20261130").st_ino,
                                           len(line(5)))


def test_other_files_in_the_directory_are_ignored(acct):
    append(acct / "20261125", lines(1))
    tailer = AccountingTailer(str(acct), from_start=True)
    append(acct / "20261125.gz", lines(99))
    append(acct / "notes", lines(98))
    append(acct / "2026112", lines(97))
    assert ids(tailer.poll()) == [1]
    assert tailer.position.file == "20261125"


def test_limit_returns_records_in_order_and_keeps_the_rest(acct):
    append(acct / "20261125", lines(1, 2, 3))
    append(acct / "20261126", lines(4, 5))
    tailer = AccountingTailer(str(acct), position=TailPosition("20261125", 0, 0))
    got = []
    while batch := tailer.poll(limit=2):
        assert len(batch) <= 2
        got.append(ids(batch))
    assert got == [[1, 2], [3, 4], [5]]
    assert tailer.poll(limit=0) == []


def test_truncated_file_is_read_again_from_the_start(acct, caplog):
    day = acct / "20261125"
    append(day, lines(1, 2, 3))
    tailer = AccountingTailer(str(acct), from_start=True)
    assert ids(tailer.poll()) == [1, 2, 3]
    with open(day, "r+b") as out:
        out.truncate(0)
    append(day, lines(4))
    with caplog.at_level(logging.WARNING):
        assert ids(tailer.poll()) == [4]
    assert "was truncated" in caplog.text


def test_replaced_file_is_read_from_the_start(acct, caplog):
    day = acct / "20261125"
    append(day, lines(1, 2))
    tailer = AccountingTailer(str(acct), from_start=True)
    assert ids(tailer.poll()) == [1, 2]
    new = acct / "new"
    append(new, lines(10, 11, 12, 13))  # longer than before: truncation alone would not tell
    os.replace(new, day)
    with caplog.at_level(logging.WARNING):
        assert ids(tailer.poll()) == [10, 11, 12, 13]
    assert "was replaced" in caplog.text
    assert tailer.position.inode == os.stat(day).st_ino


def test_deleted_current_file_then_later_files(acct, caplog):
    day = acct / "20261125"
    append(day, lines(1))
    tailer = AccountingTailer(str(acct), from_start=True)
    assert ids(tailer.poll()) == [1]
    day.unlink()
    with caplog.at_level(logging.WARNING):
        assert tailer.poll() == []
        assert tailer.poll() == []
    assert caplog.text.count("is gone") == 1
    append(acct / "20261126", lines(2))
    assert ids(tailer.poll()) == [2]


def test_deleted_and_recreated_file(acct):
    day = acct / "20261125"
    append(day, lines(1, 2, 3))
    tailer = AccountingTailer(str(acct), from_start=True)
    assert ids(tailer.poll()) == [1, 2, 3]
    day.unlink()
    append(day, lines(4))
    assert ids(tailer.poll()) == [4]


def test_missing_directory_then_first_file(tmp_path, caplog):
    directory = tmp_path / "accounting"
    with caplog.at_level(logging.WARNING):
        tailer = AccountingTailer(str(directory))
        assert tailer.poll() == []
    assert "cannot list" in caplog.text
    directory.mkdir()
    append(directory / "20261125", lines(1, 2))
    # The file appeared after the tailer started: all of it is new.
    assert ids(tailer.poll()) == [1, 2]


def test_incomplete_last_line_of_a_finished_day_is_counted(acct, caplog):
    append(acct / "20261125", lines(1) + "11/25/2026 23:59:5")
    tailer = AccountingTailer(str(acct), from_start=True)
    assert ids(tailer.poll()) == [1]
    append(acct / "20261126", lines(2))
    with caplog.at_level(logging.WARNING):
        assert ids(tailer.poll()) == [2]
    assert tailer.parser.bad == 1
    assert "incomplete last line" in caplog.text


def test_bad_lines_and_bytes_are_skipped_not_fatal(acct):
    day = acct / "20261125"
    append(day, b"")
    tailer = AccountingTailer(str(acct))
    append(day, lines(1) + "garbage\n" + "\x00\x00\n" + lines(2))
    append(day, b"\xff\xfe;Q;x;\n" + line(3).encode())
    assert ids(tailer.poll()) == [1, 2, 3]
    assert (tailer.parser.parsed, tailer.parser.bad) == (3, 3)
    assert tailer.position.offset == os.stat(day).st_size


def test_overlong_line_is_dropped_without_holding_it(acct, caplog):
    day = acct / "20261125"
    append(day, lines(1))
    tailer = AccountingTailer(str(acct), from_start=True)
    assert ids(tailer.poll()) == [1]
    append(day, b"Z" * (3 << 19))  # 1.5 MiB, no newline yet
    with caplog.at_level(logging.WARNING):
        assert tailer.poll() == []
    assert "longer than 1048576 bytes" in caplog.text
    assert tailer.position.offset == os.stat(day).st_size  # not waiting on it
    append(day, b"Z" * 1000 + b"\n" + lines(2).encode())
    assert ids(tailer.poll()) == [2]
    assert tailer.parser.bad == 1


def test_single_pinned_file(tmp_path):
    pinned = tmp_path / "accounting.log"
    append(pinned, lines(1))
    append(tmp_path / "20991231", lines(99))  # not followed: the file is pinned
    tailer = AccountingTailer(str(pinned), from_start=True)
    assert ids(tailer.poll()) == [1]
    append(pinned, lines(2))
    assert ids(tailer.poll()) == [2]
    assert tailer.position.file == "accounting.log"


def test_single_pinned_file_that_does_not_exist_yet(tmp_path):
    pinned = tmp_path / "accounting.log"
    tailer = AccountingTailer(str(pinned), single_file=True)
    assert tailer.poll() == []
    append(pinned, lines(1, 2))
    assert ids(tailer.poll()) == [1, 2]


def test_resume_from_saved_position(acct, tmp_path):
    state = PositionFile(tmp_path / "position.json")
    assert state.load() is None
    append(acct / "20261125", lines(1, 2))
    first = AccountingTailer(str(acct), from_start=True, parser=AccountingParser("acct"))
    assert ids(first.poll(limit=1)) == [1]
    state.save(first.position)
    append(acct / "20261125", lines(3))
    append(acct / "20261126", lines(4))
    second = AccountingTailer(str(acct), position=state.load())
    assert ids(second.poll()) == [2, 3, 4]


def test_position_of_a_pruned_file_goes_on_with_later_files(acct):
    append(acct / "20261126", lines(5))
    tailer = AccountingTailer(str(acct), position=TailPosition("20261120", 1234, 999))
    assert ids(tailer.poll()) == [5]


def test_position_file_is_atomic_and_private(tmp_path):
    path = tmp_path / "position.json"
    store = PositionFile(path)
    position = TailPosition("20261125", 42, 1234)
    store.save(position)
    store.save(position)
    assert store.load() == position
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == {"file": "20261125", "inode": 42, "offset": 1234}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["position.json"]


@pytest.mark.parametrize("content", [
    "", "{", "[]", '{"file": "20261125"}', '{"file": "../etc", "inode": 1, "offset": 0}',
    '{"file": "20261125", "inode": true, "offset": 0}',
    '{"file": "20261125", "inode": 1, "offset": -5}', "\x00\xff",
])
def test_unreadable_position_file_means_no_position(tmp_path, caplog, content):
    path = tmp_path / "position.json"
    path.write_text(content, encoding="latin-1")
    with caplog.at_level(logging.WARNING):
        assert PositionFile(path).load() is None
    assert "cannot read the saved accounting position" in caplog.text


def test_tail_position_dict_round_trip():
    position = TailPosition("20261125", 7, 99)
    assert TailPosition.from_dict(position.to_dict()) == position
    with pytest.raises(ValueError):
        TailPosition.from_dict({"file": "20261125", "inode": "7", "offset": 0})


# A run of pbs_server and Phorque: lines written across days in pieces cut anywhere, with the
# tailer polled with random limits and restarted from its saved position at random moments.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 400)),  # bytes of the remaining log
        st.tuples(st.just("day"), st.integers(1, 3)),  # the next record opens a later file
        st.tuples(st.just("poll"), st.one_of(st.none(), st.integers(1, 5))),
        st.tuples(st.just("restart"), st.none()),
    ),
    max_size=40,
)


@given(st.integers(1, 60), steps)
@settings(max_examples=150, deadline=None)
def test_restarts_at_random_points_lose_and_repeat_nothing(count, plan):
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "accounting"
        directory.mkdir()
        store = PositionFile(Path(tmp) / "position.json")
        day = 20261125
        pending = [line(n) for n in range(count)]
        buffer = ""  # what is still to be written of the current line and beyond
        tailer = AccountingTailer(str(directory))
        store.save(tailer.position)  # the daemon saves where it starts
        got: list[int] = []
        for action, arg in plan:
            if action == "write" and (pending or buffer):
                while len(buffer) < arg and pending:
                    buffer += pending.pop(0)
                append(directory / str(day), buffer[:arg])
                buffer = buffer[arg:]
            elif action == "day" and not buffer:  # only between lines, as pbs_server does
                day += arg
            elif action == "poll":
                got += ids(tailer.poll(limit=arg))
                store.save(tailer.position)
            elif action == "restart":
                tailer = AccountingTailer(str(directory), position=store.load())
        append(directory / str(day), buffer + "".join(pending))
        while batch := tailer.poll(limit=7):
            got += ids(batch)
        assert got == list(range(count))
        assert tailer.parser.bad == 0


@given(st.lists(st.tuples(st.binary(max_size=300), st.one_of(st.none(), st.integers(1, 4))),
                max_size=12))
@settings(max_examples=150, deadline=None)
def test_arbitrary_bytes_never_break_the_tailer(writes):
    with tempfile.TemporaryDirectory() as tmp:
        day = Path(tmp) / "20261125"
        append(day, b"")
        tailer = AccountingTailer(tmp)
        records = []
        for data, limit in writes:
            append(day, data)
            records += tailer.poll(limit=limit)
        while batch := tailer.poll():
            records += batch
        data = b"".join(d for d, _ in writes)
        complete = data.count(b"\n")
        assert tailer.parser.parsed == len(records)
        assert tailer.parser.parsed + tailer.parser.bad == complete
        assert tailer.position.offset == data.rfind(b"\n") + 1


def _in_thread(call, deadline: float = 60.0):
    """Run ``call`` in a thread; fail (instead of hanging the suite) if it blocks."""
    import threading

    result: list = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(deadline)
    assert not thread.is_alive(), f"{call} blocked for {deadline} s"
    return result[0]


@pytest.mark.parametrize("kind", ["fifo", "symlink to a fifo", "device"])
def test_a_fifo_or_a_device_among_the_day_files_is_skipped_with_an_error(acct, tmp_path, caplog, kind):
    append(acct / "20261125", lines(1))
    special = acct / "20261126"
    if kind == "fifo":
        os.mkfifo(special)
    elif kind == "device":
        os.symlink("/dev/zero", special)
    else:
        os.mkfifo(tmp_path / "pipe")
        os.symlink(tmp_path / "pipe", special)
    # Before: opening the FIFO blocked for ever (no writer), and /dev/zero never ended.
    tailer = _in_thread(lambda: AccountingTailer(acct, from_start=True))
    with caplog.at_level(logging.ERROR):
        assert ids(_in_thread(tailer.poll)) == [1]
        append(acct / "20261125", lines(2))
        append(acct / "20261127", lines(3))
        assert ids(_in_thread(tailer.poll)) == [2, 3]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "20261126 is not a regular file" in errors[0], errors


def test_a_current_file_swapped_for_a_fifo_is_not_opened(acct, caplog):
    append(acct / "20261125", lines(1))
    tailer = AccountingTailer(acct)
    os.unlink(acct / "20261125")
    os.mkfifo(acct / "20261125")
    with caplog.at_level(logging.ERROR):
        assert _in_thread(lambda: tailer.poll()) == []
    assert any("is not a regular file" in r.getMessage() for r in caplog.records)
