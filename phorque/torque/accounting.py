"""Torque's accounting log: one record per line, parsed into :class:`Record`.

pbs_server writes ``MM/DD/YYYY HH:MM:SS;T;JOBID;TEXT`` (``fprintf`` in src/server/accounting.c)
in the server's local time. TEXT is ``key=value`` pairs joined by single spaces, often with a
trailing space, and nothing in it is quoted: Torque 6's ``Resource_Request_2.0`` value holds
spaces and ``=`` (``-L tasks=1:lprocs=1 -L tasks=2``), and C and T records carry prose.

Parsing is split in two so that the common case stays cheap. :func:`parse_line` reads only the
header (time, type, job id) and keeps TEXT as it is; :attr:`Record.fields` tokenizes TEXT on
first use. Timestamps are converted once per hour of the log (``time.mktime`` of the hour, plus
minutes and seconds), which keeps ``mktime``'s answer across daylight-saving changes.

Tokenizing: a space-separated token that looks like ``name=`` starts a new pair, any other token
is appended (with a space) to the previous value. Inside ``Resource_Request_2.0`` only the keys
Torque itself writes (:data:`KNOWN_KEYS`, ``Resource_List.*``, ``resources_used.*``) end the
value, so its inner ``tasks=...`` stay part of it. Recognising any ``name=`` elsewhere, rather
than only the known keys, keeps a key added by another Torque version from being glued onto the
value before it (an ``exec_host`` with a stranger's text appended would count wrong slots).
"""

from __future__ import annotations

import calendar
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from itertools import chain
from os import PathLike
from types import MappingProxyType
from typing import Any, NamedTuple

from phorque.errors import TorqueError
from phorque.resources import count_slots, duration_or_none, job_cores
from phorque.torque.lines import MAX_LINE, LineReader

log = logging.getLogger(__name__)

#: The record types Torque writes (src/include/acct.h).
RECORD_TYPES = "QSEDARCT"
_TYPES = frozenset(RECORD_TYPES)

#: Keys pbs_server writes (acct_job, account_jobend, req_deletejob), besides the prefixed ones.
KNOWN_KEYS = frozenset((
    "user", "group", "account", "jobname", "queue", "ctime", "qtime", "etime", "start_count",
    "start", "owner", "exec_host", "login_node", "session", "alt_id", "total_execution_slots",
    "unique_node_count", "end", "Exit_status", "requestor", "Resource_Request_2.0", "x",
))
_KNOWN_PREFIXES = ("Resource_List.", "resources_used.")
_REQUEST2 = "Resource_Request_2.0"

# A pair starts after a space (a space is put before TEXT, so also at its start). Each try begins
# at a space and its possessive name never gives characters back, so even hostile text (a
# million spaces, a million letters) costs linear time.
_PAIR = re.compile(r" ([A-Za-z_][A-Za-z0-9_.]*+)=")

# Seconds for ":MM:SS" (60 is a leap second, which mktime also accepts).
_MMSS = {f":{m:02d}:{s:02d}": m * 60 + s for m in range(60) for s in range(61)}
_HOUR_RE = re.compile(r"(\d\d)/(\d\d)/(\d{4}) (\d\d)", re.ASCII)
_hours: dict[str, float] = {}
_HOURS_KEPT = 16384
# Texts longer than this are tokenized anew on each use rather than kept in the cache.
_CACHED_TEXT = 16384


class AccountingFormatError(TorqueError):
    """A line that is not an accounting record."""


def reset_time_cache() -> None:
    """Forget converted timestamps; call after changing the time zone (``time.tzset``)."""
    _hours.clear()


def _hour_start(prefix: str) -> float:
    """Epoch seconds of ``MM/DD/YYYY HH`` at minute 0, by ``time.mktime``; cached."""
    match = _HOUR_RE.fullmatch(prefix)
    if match is None:
        raise AccountingFormatError(f"bad timestamp {prefix!r}: expected MM/DD/YYYY HH:MM:SS")
    month, day, year, hour = (int(g) for g in match.groups())
    if not (year >= 1 and 1 <= month <= 12 and hour <= 23
            and 1 <= day <= calendar.monthrange(year, month)[1]):
        raise AccountingFormatError(f"bad timestamp {prefix!r}: no such date or hour")
    try:
        start = time.mktime((year, month, day, hour, 0, 0, 0, 0, -1))
    except (OverflowError, ValueError) as exc:
        raise AccountingFormatError(f"bad timestamp {prefix!r}: {exc}") from exc
    if len(_hours) >= _HOURS_KEPT:
        _hours.clear()
    _hours[prefix] = start
    return start


def _known(key: str) -> bool:
    return key in KNOWN_KEYS or key.startswith(_KNOWN_PREFIXES)


def tokenize(text: str) -> dict[str, str]:
    """The ``key=value`` pairs of a TEXT part, by the rules in the module's docstring.

    Prose before the first key (C and T records) is not a pair and is left out; values lose
    the spaces after them. A key given twice keeps its last value.
    """
    parts = _PAIR.split(" " + text)
    if len(parts) == 1:
        return {}
    if "  " in text:
        # Torque separates pairs by one space; tolerate more, without slowing the usual case.
        parts = [part.rstrip(" ") for part in parts]
    else:
        parts[-1] = parts[-1].rstrip(" ")
    pairs = iter(parts)
    next(pairs)  # the prose before the first key
    fields = dict(zip(pairs, pairs))
    if _REQUEST2 not in fields:
        return fields
    # Rebuild Resource_Request_2.0: its inner "tasks=..." tokens were split off as pairs.
    fields = {}
    current = ""
    for i in range(1, len(parts), 2):
        key, value = parts[i], parts[i + 1]
        if current == _REQUEST2 and not _known(key):
            fields[current] += f" {key}={value}"
        else:
            current = key
            fields[key] = value
    return fields


@lru_cache(maxsize=256)
def _cached_fields(text: str) -> Mapping[str, str]:
    return MappingProxyType(tokenize(text))


def _fields_of(text: str) -> Mapping[str, str]:
    if len(text) > _CACHED_TEXT:
        return MappingProxyType(tokenize(text))
    return _cached_fields(text)


def _int(value: str | None) -> int | None:
    """An integer written as Torque writes it (ASCII digits, optional minus), else None."""
    if not value or not value.isascii():
        return None
    digits = value[1:] if value[0] == "-" else value
    return int(value) if digits.isdigit() else None


def _text_field(key: str) -> property:
    def get(self: Record) -> str | None:
        return _fields_of(self.text).get(key)
    return property(get, doc=f"``{key}`` or None.")


def _time_field(key: str) -> property:
    def get(self: Record) -> float | None:
        value = _int(_fields_of(self.text).get(key))
        return None if value is None else float(value)
    return property(get, doc=f"``{key}`` in epoch seconds, or None when absent or unreadable.")


def _duration_field(key: str) -> property:
    def get(self: Record) -> int | None:
        return duration_or_none(_fields_of(self.text).get(key))
    return property(get, doc=f"``{key}`` in seconds, or None when absent or unreadable.")


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
        return _fields_of(self.text)

    def get(self, key: str, default: str | None = None) -> str | None:
        """One value of :attr:`fields`."""
        return _fields_of(self.text).get(key, default)

    queue = _text_field("queue")
    user = _text_field("user")
    group = _text_field("group")
    jobname = _text_field("jobname")
    owner = _text_field("owner")
    exec_host = _text_field("exec_host")
    requestor = _text_field("requestor")
    ctime = _time_field("ctime")
    qtime = _time_field("qtime")
    etime = _time_field("etime")
    start = _time_field("start")
    end = _time_field("end")
    walltime_secs = _duration_field("Resource_List.walltime")
    used_walltime_secs = _duration_field("resources_used.walltime")

    @property
    def exit_status(self) -> int | None:
        """``Exit_status``: 0 ok, 256+signal killed, negative a start failure."""
        return _int(_fields_of(self.text).get("Exit_status"))

    @property
    def resources(self) -> dict[str, str]:
        """``Resource_List.*`` without the prefix."""
        return {k[14:]: v for k, v in _fields_of(self.text).items()
                if k.startswith("Resource_List.")}

    @property
    def resources_used(self) -> dict[str, str]:
        """``resources_used.*`` without the prefix."""
        return {k[15:]: v for k, v in _fields_of(self.text).items()
                if k.startswith("resources_used.")}

    @property
    def cores(self) -> int | None:
        """Cores requested, by Torque's arithmetic; None when the record has no request."""
        request2 = _fields_of(self.text).get(_REQUEST2)
        resources = self.resources
        if not resources and request2 is None:
            return None
        return job_cores(resources, request2)

    @property
    def execution_slots(self) -> int | None:
        """Slots the job ran on: ``total_execution_slots``, else counted from ``exec_host``."""
        fields = _fields_of(self.text)
        total = _int(fields.get("total_execution_slots"))
        if total is not None:
            return total
        exec_host = fields.get("exec_host")
        return count_slots(exec_host)[0] if exec_host else None


_new_record = tuple.__new__


def _parse(line: str) -> Record:
    """:func:`parse_line` for a line without its newline, as :class:`LineReader` gives them."""
    # The common case in as few operations as possible: a malformed header or an hour not yet
    # in the cache raises here and is sorted out by _parse_slowly.
    try:
        stamp, rtype, job_id, text = line.split(";", 3)
        when = _hours[stamp[:13]] + _MMSS[stamp[13:]]
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
    seconds = _MMSS.get(stamp[13:])
    if seconds is None:
        raise AccountingFormatError(f"bad timestamp {stamp[:40]!r}: expected MM/DD/YYYY HH:MM:SS")
    base = _hours.get(stamp[:13])
    if base is None:
        base = _hour_start(stamp[:13])
    if rtype not in _TYPES:
        raise AccountingFormatError(f"unknown record type {rtype[:10]!r}")
    if not job_id or " " in job_id:
        raise AccountingFormatError(f"bad job id {job_id[:80]!r}")
    return _new_record(Record, (base + seconds, rtype, job_id, text))


def parse_line(line: str) -> Record:
    """The record of one accounting line (a trailing newline is allowed).

    Only the header is checked here: raises :class:`AccountingFormatError` unless the line is
    ``MM/DD/YYYY HH:MM:SS;T;JOBID;TEXT`` with a real date, a type of :data:`RECORD_TYPES` and a
    job id without spaces, and at most :data:`~phorque.torque.lines.MAX_LINE` long.
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

    def reject(self, reason: str, line: str | bytes, where: str | None = None) -> None:
        """Count a bad line and log it (rate-limited)."""
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
        try:
            # At most one record per line, so ``chunk`` cannot overshoot the limit.
            records = list(map(_parse, chunk))
        except AccountingFormatError:
            return self._feed_one_by_one(lines, out, limit, locate)
        out.extend(records)
        self.parsed += len(records)
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
                self.reject(str(exc), line, locate(i) if locate else None)
                continue
            added += 1
        self.parsed += added
        return len(lines)

    def parse_file(self, path: str | PathLike[str]) -> Iterator[Record]:
        """Every record of a file, streamed in bounded memory; bad bytes are replaced."""
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
                self.feed_lines(block.lines, out, locate=lambda i, first=first: f"{name}:{first + i}")
                lineno += len(block.lines)
                yield out
