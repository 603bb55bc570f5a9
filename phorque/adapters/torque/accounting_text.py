"""The text of Torque's accounting lines: timestamps and ``key=value`` pairs.

Timestamps (``MM/DD/YYYY HH:MM:SS``, the server's local time) are converted once per hour of the
log: ``time.mktime`` of the hour, plus minutes and seconds. Caching by the hour rather than the day
keeps ``mktime``'s answer on days when daylight saving time starts or ends.

TEXT is ``key=value`` pairs joined by single spaces, often with a trailing space, and nothing is
quoted: Torque 6's ``Resource_Request_2.0`` holds spaces and ``=`` (``-L tasks=1:lprocs=1 -L
tasks=2``), and C and T records carry prose. A space-separated token that looks like ``name=``
starts a new pair, any other token is appended (with a space) to the previous value. Inside
``Resource_Request_2.0`` only the keys Torque itself writes (:data:`KNOWN_KEYS`,
``Resource_List.*``, ``resources_used.*``) end the value, so its inner ``tasks=...`` stay part of
it. Recognising any ``name=`` elsewhere, rather than only the known keys, keeps a key added by
another Torque version from being glued onto the value before it (an ``exec_host`` with a
stranger's text appended would count wrong slots).
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType

from phorque.core.errors import TorqueError

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

#: Seconds for ":MM:SS" (60 is a leap second, which mktime also accepts).
MMSS = {f":{m:02d}:{s:02d}": m * 60 + s for m in range(60) for s in range(61)}
_HOUR_RE = re.compile(r"(\d\d)/(\d\d)/(\d{4}) (\d\d)", re.ASCII)
#: Epoch seconds of each ``MM/DD/YYYY HH`` seen; filled by stamp_time.
hours: dict[str, float] = {}
_HOURS_KEPT = 16384
# Texts longer than this are tokenized anew on each use rather than kept in the cache.
_CACHED_TEXT = 16384


class AccountingFormatError(TorqueError):
    """A line that is not an accounting record."""


def stamp_time(stamp: str) -> float:
    """Epoch seconds of ``MM/DD/YYYY HH:MM:SS`` in local time, as ``time.mktime`` gives them."""
    seconds = MMSS.get(stamp[13:])
    if seconds is None:
        raise AccountingFormatError(f"bad timestamp {stamp[:40]!r}: expected MM/DD/YYYY HH:MM:SS")
    base = hours.get(stamp[:13])
    if base is None:
        base = _hour_start(stamp[:13])
    return base + seconds


def reset_time_cache() -> None:
    """Forget converted timestamps; call after changing the time zone (``time.tzset``)."""
    hours.clear()


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
    if len(hours) >= _HOURS_KEPT:
        hours.clear()
    hours[prefix] = start
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
    fields = dict(zip(pairs, pairs, strict=True))
    if _REQUEST2 not in fields:
        return fields
    # Rebuild Resource_Request_2.0: its inner "tasks=..." tokens were split off as pairs.
    fields = {}
    request: list[str] = []
    current = ""
    for i in range(1, len(parts), 2):
        key, value = parts[i], parts[i + 1]
        if current == _REQUEST2 and not _known(key):
            request.append(f"{key}={value}")
            continue
        if current == _REQUEST2:
            fields[_REQUEST2] = " ".join(request)
        current = key
        if key == _REQUEST2:
            request = [value]
        fields[key] = value
    if current == _REQUEST2:
        fields[_REQUEST2] = " ".join(request)
    return fields


@lru_cache(maxsize=256)
def _cached_fields(text: str) -> Mapping[str, str]:
    return MappingProxyType(tokenize(text))


def fields_of(text: str) -> Mapping[str, str]:
    """:func:`tokenize`, read-only, with recent answers kept (a record's fields are read often)."""
    if len(text) > _CACHED_TEXT:
        return MappingProxyType(tokenize(text))
    return _cached_fields(text)
