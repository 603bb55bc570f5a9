"""Torque's accounting log: one record per line, parsed into :class:`Record`.

pbs_server writes ``MM/DD/YYYY HH:MM:SS;T;JOBID;TEXT`` (``fprintf`` in src/server/accounting.c).
Parsing is split in two so that the common case stays cheap: :func:`parse_line` reads only the
header (time, type, job id) and keeps TEXT as it is; :attr:`Record.fields` tokenizes TEXT on
first use, by the rules of :mod:`phorque.adapters.torque.accounting_text`. The daemon mostly needs the
type and the job id; the replay reads the fields of Q, S, E and D records.

:class:`AccountingParser` wraps the parsing for whole files and streams of lines: a line that does
not parse is counted and logged (rate-limited), never fatal.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from itertools import chain
from os import PathLike
from typing import Any, NamedTuple, TypeVar

from phorque.adapters.torque.accounting_text import (
    KNOWN_KEYS,
    MMSS,
    AccountingFormatError,
    fields_of,
    hours,
    reset_time_cache,
    stamp_time,
    tokenize,
)
from phorque.adapters.torque.lines import MAX_LINE, LineReader
from phorque.adapters.torque.resources import (
    Asks,
    count_slots,
    duration_or_none,
    job_asks,
    job_chunks,
    job_cores,
)
from phorque.core.model import Chunk

_T = TypeVar("_T")

__all__ = [
    "KNOWN_KEYS", "RECORD_TYPES", "AccountingFormatError", "AccountingParser", "Record",
    "format_line", "format_text", "parse_line", "reset_time_cache", "tokenize",
]

log = logging.getLogger("phorque.torque.accounting")

#: The record types Torque writes (src/include/acct.h).
RECORD_TYPES = "QSEDARCT"
_TYPES = frozenset(RECORD_TYPES)


def _int(value: str | None) -> int | None:
    """An integer written as Torque writes it (ASCII digits, optional minus), else None."""
    if not value or not value.isascii() or len(value) > 20:
        return None
    digits = value[1:] if value[0] == "-" else value
    return int(value) if digits.isdigit() else None


def _epoch(value: str | None) -> float | None:
    """A time field in epoch seconds, or None when absent or unreadable."""
    number = _int(value)
    return None if number is None else float(number)


class Record(NamedTuple):
    """One accounting line: its time, type letter, job id and raw TEXT.

    An immutable tuple, so that creating one per line stays cheap. Everything inside TEXT is
    reached through :attr:`fields` and the properties below, which return None when a value is
    absent or unreadable and never raise.
    """

    time: float
    type: str
    job_id: str
    text: str

    @property
    def fields(self) -> Mapping[str, str]:
        """The ``key=value`` pairs of TEXT (read-only; tokenized on first use)."""
        return fields_of(self.text)

    def get(self, key: str, default: str | None = None) -> str | None:
        """One value of :attr:`fields`."""
        return fields_of(self.text).get(key, default)

    @property
    def queue(self) -> str | None:
        """``queue`` or None."""
        return fields_of(self.text).get("queue")

    @property
    def user(self) -> str | None:
        """``user`` or None."""
        return fields_of(self.text).get("user")

    @property
    def group(self) -> str | None:
        """``group`` or None."""
        return fields_of(self.text).get("group")

    @property
    def jobname(self) -> str | None:
        """``jobname`` or None."""
        return fields_of(self.text).get("jobname")

    @property
    def owner(self) -> str | None:
        """``owner`` or None."""
        return fields_of(self.text).get("owner")

    @property
    def exec_host(self) -> str | None:
        """``exec_host`` or None."""
        return fields_of(self.text).get("exec_host")

    @property
    def requestor(self) -> str | None:
        """``requestor`` or None."""
        return fields_of(self.text).get("requestor")

    @property
    def ctime(self) -> float | None:
        """``ctime`` in epoch seconds, or None when absent or unreadable."""
        return _epoch(fields_of(self.text).get("ctime"))

    @property
    def qtime(self) -> float | None:
        """``qtime`` in epoch seconds, or None when absent or unreadable."""
        return _epoch(fields_of(self.text).get("qtime"))

    @property
    def etime(self) -> float | None:
        """``etime`` in epoch seconds, or None when absent or unreadable."""
        return _epoch(fields_of(self.text).get("etime"))

    @property
    def start(self) -> float | None:
        """``start`` in epoch seconds, or None when absent or unreadable."""
        return _epoch(fields_of(self.text).get("start"))

    @property
    def end(self) -> float | None:
        """``end`` in epoch seconds, or None when absent or unreadable."""
        return _epoch(fields_of(self.text).get("end"))

    @property
    def walltime_secs(self) -> int | None:
        """``Resource_List.walltime`` in seconds, or None when absent or unreadable."""
        return duration_or_none(fields_of(self.text).get("Resource_List.walltime"))

    @property
    def used_walltime_secs(self) -> int | None:
        """``resources_used.walltime`` in seconds, or None when absent or unreadable."""
        return duration_or_none(fields_of(self.text).get("resources_used.walltime"))

    @property
    def exit_status(self) -> int | None:
        """``Exit_status``: 0 ok, 256+signal killed, negative a start failure."""
        return _int(fields_of(self.text).get("Exit_status"))

    @property
    def resources(self) -> dict[str, str]:
        """``Resource_List.*`` without the prefix."""
        return {k[14:]: v for k, v in fields_of(self.text).items()
                if k.startswith("Resource_List.")}

    @property
    def resources_used(self) -> dict[str, str]:
        """``resources_used.*`` without the prefix."""
        return {k[15:]: v for k, v in fields_of(self.text).items()
                if k.startswith("resources_used.")}

    @property
    def request2(self) -> str | None:
        """The Torque 6 ``-L`` request the record carries (``Resource_Request_2.0``), or None."""
        return fields_of(self.text).get("Resource_Request_2.0") or None

    def _from_request(self, read: Callable[[dict[str, str], str | None], _T]) -> _T | None:
        """``read(resources, request2)``, or None when the record carries no request (Q, D and
        A records) or one with a number too long for int() (a hostile line)."""
        resources = self.resources
        request2 = self.request2
        if not resources and request2 is None:
            return None
        try:
            return read(resources, request2)
        except ValueError:
            return None

    @property
    def cores(self) -> int | None:
        """Cores requested, by Torque's arithmetic; None when the record has no request."""
        return self._from_request(job_cores)

    @property
    def asks(self) -> Asks | None:
        """Memory and GPUs asked (``Resource_List.mem``, ``.pmem``, ``.vmem``, ``.pvmem``,
        ``.nodes``, ``.gres`` and the ``-L`` request); None when the record has no request,
        a zero value when it has one that asks for none."""
        return self._from_request(job_asks)

    @property
    def chunks(self) -> tuple[Chunk, ...] | None:
        """The node shape with each part's memory, GPUs and properties, as
        :func:`~phorque.adapters.torque.resources.job_chunks` reads it; None when the record has no request."""
        return self._from_request(job_chunks)

    @property
    def execution_slots(self) -> int | None:
        """Slots the job ran on: ``total_execution_slots``, else counted from ``exec_host``."""
        fields = fields_of(self.text)
        total = _int(fields.get("total_execution_slots"))
        if total is not None:
            return total
        exec_host = fields.get("exec_host")
        if not exec_host:
            return None
        try:
            return count_slots(exec_host)[0]
        except ValueError:  # a number too long for int(), in a hostile line
            return None


_new_record = tuple.__new__


def _parse(line: str) -> Record:
    """:func:`parse_line` for a line without its newline, as :class:`LineReader` gives them."""
    # The common case in as few operations as possible: a malformed header or an hour not yet
    # in the cache raises here and is sorted out by _parse_slowly.
    try:
        stamp, rtype, job_id, text = line.split(";", 3)
        when = hours[stamp[:13]] + MMSS[stamp[13:]]
    except (ValueError, KeyError):
        return _parse_slowly(line)
    if rtype in _TYPES and job_id and " " not in job_id:
        return _new_record(Record, (when, rtype, job_id, text))
    return _parse_slowly(line)


def _parse_slowly(line: str) -> Record:
    parts = line.split(";", 3)
    if len(parts) != 4:
        raise AccountingFormatError("expected MM/DD/YYYY HH:MM:SS;TYPE;JOBID;TEXT")
    stamp, rtype, job_id, text = parts
    when = stamp_time(stamp)
    if rtype not in _TYPES:
        raise AccountingFormatError(f"unknown record type {rtype[:10]!r}")
    if not job_id or " " in job_id:
        raise AccountingFormatError(f"bad job id {job_id[:80]!r}")
    return _new_record(Record, (when, rtype, job_id, text))


def parse_line(line: str) -> Record:
    """The record of one accounting line (a trailing newline is allowed).

    Only the header is checked here: raises :class:`AccountingFormatError` unless the line is
    ``MM/DD/YYYY HH:MM:SS;T;JOBID;TEXT`` with a real date, a type of :data:`RECORD_TYPES` and a
    job id without spaces, and at most :data:`~phorque.adapters.torque.lines.MAX_LINE` long.
    """
    if len(line) > MAX_LINE:
        raise AccountingFormatError(f"line of {len(line)} characters exceeds {MAX_LINE}")
    return _parse(line.rstrip("\r\n"))


def format_text(pairs: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> str:
    """TEXT as Torque writes it: ``key=value`` joined by spaces, nothing quoted."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return " ".join(f"{key}={value}" for key, value in items)


def format_line(when: float, rtype: str, job_id: str, text: str = "") -> str:
    """One accounting line with its newline, timestamped in local time as pbs_server does."""
    stamp = time.strftime("%m/%d/%Y %H:%M:%S", time.localtime(when))
    return f"{stamp};{rtype};{job_id};{text}\n"


def _preview(line: str | bytes) -> str:
    shown = repr(line[:160])
    return shown + ("…" if len(line) > 160 else "")


class AccountingParser:
    """Parses lines, counting the good (``parsed``) and the bad (``bad``).

    A bad line is logged with the reason and where it was, then skipped; at most ``log_limit``
    are logged per ``log_interval`` seconds, and the number left unlogged is reported after.
    """

    def __init__(self, source: str = "accounting log", *, log_limit: int = 10,
                 log_interval: float = 60.0):
        self.source = source
        self.parsed = 0
        self.bad = 0
        self.log_limit = log_limit
        self.log_interval = log_interval
        self._window = float("-inf")
        self._shown = 0
        self._unshown = 0

    def reject(self, reason: str, line: str | bytes,
               where: str | Callable[[], str] | None = None) -> None:
        """Count a bad line and log it (rate-limited).

        ``where`` may be a function, called only when the line is logged: finding a line's byte
        offset costs time, and a block full of bad lines must not pay it for every line.
        """
        self.bad += 1
        now = time.monotonic()
        if now - self._window >= self.log_interval:
            if self._unshown:
                log.warning("%s: %d more malformed lines were skipped without a message",
                            self.source, self._unshown)
            self._window = now
            self._shown = self._unshown = 0
        if self._shown < self.log_limit:
            self._shown += 1
            if callable(where):
                where = where()
            log.warning("%s: skipped a malformed line (%s): %s",
                        where or self.source, reason, _preview(line))
        else:
            self._unshown += 1

    def feed(self, line: str | bytes, where: str | None = None) -> Record | None:
        """The record of one line, or None (counted and logged) when it does not parse."""
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        try:
            record = parse_line(line)
        except AccountingFormatError as exc:
            self.reject(str(exc), line, where)
            return None
        self.parsed += 1
        return record

    def feed_lines(self, lines: list[str], out: list[Record], limit: int | None = None,
                   locate: Callable[[int], str] | None = None) -> int:
        """Parse lines (without their newlines) into ``out``, adding at most ``limit`` records.

        Returns how many lines were used: all of them, unless the limit stopped it early.
        ``locate(i)`` names where line ``i`` came from, for the log; it is called only for a bad
        line.
        """
        chunk = lines if limit is None or limit >= len(lines) else lines[:limit]
        before = len(out)
        try:
            # At most one record per line, so ``chunk`` cannot overshoot the limit.
            out.extend(map(_parse, chunk))
        except AccountingFormatError:
            del out[before:]  # start the block again, line by line
            return self._feed_one_by_one(lines, out, limit, locate)
        self.parsed += len(chunk)
        return len(chunk)

    def _feed_one_by_one(self, lines: list[str], out: list[Record], limit: int | None,
                         locate: Callable[[int], str] | None) -> int:
        added = 0
        for i, line in enumerate(lines):
            if limit is not None and added >= limit:
                self.parsed += added
                return i
            try:
                out.append(_parse(line))
            except AccountingFormatError as exc:
                self.reject(str(exc), line, None if locate is None else partial(locate, i))
                continue
            added += 1
        self.parsed += added
        return len(lines)

    def parse_file(self, path: str | PathLike[str]) -> Iterator[Record]:
        """Every record of a file, streamed in bounded memory; bad bytes are replaced.

        A last line without its newline is read too: the file is taken as complete. Raises
        OSError (once iterated) when the file cannot be read.
        """
        return chain.from_iterable(self._file_blocks(os.fspath(path)))

    def _file_blocks(self, name: str) -> Iterator[list[Record]]:
        lineno = 0

        def overlong(head: bytes) -> None:
            nonlocal lineno
            lineno += 1
            self.reject(f"longer than {MAX_LINE} bytes", head, f"{name}:{lineno}")

        with open(name, "rb", buffering=0) as stream:
            reader = LineReader(stream, on_overlong=overlong)
            for block in reader.blocks(final=True):
                out: list[Record] = []
                first = lineno + 1

                def locate(i: int, first: int = first) -> str:
                    return f"{name}:{first + i}"
                self.feed_lines(block.lines, out, locate=locate)
                lineno += len(block.lines)
                yield out
