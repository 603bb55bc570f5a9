"""A workload to replay: jobs with their submit time, size, requested walltime and real run time.

Both readers (SWF traces and Torque accounting logs) produce a :class:`Trace`. Lines or jobs that
cannot be replayed are counted by reason in :attr:`Trace.problems` and skipped; they never stop a
replay.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

from phorque.core.model import Chunk

DAY = 86400.0


@dataclass(slots=True)
class TraceJob:
    """One job as the trace recorded it.

    ``run_secs`` is how long it really ran; ``walltime_secs`` what it asked for (None when
    unknown). ``chunks`` is its ``nodes=`` shape; empty means ``cores`` single cores anywhere
    (``procs=``, and every SWF job).
    """

    id: str
    submit: float
    run_secs: float
    cores: int
    walltime_secs: int | None = None
    chunks: tuple[Chunk, ...] = ()
    queue: str = ""
    original_wait: float | None = None


@dataclass
class Trace:
    """Jobs in submit order, and what the reader learnt about the source."""

    name: str
    jobs: list[TraceJob]
    start: float
    end: float
    #: The machine the trace came from: total cores, and (accounting logs) nodes and their size.
    max_cores: int | None = None
    nodes: int | None = None
    node_cores: int | None = None
    problems: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    #: Accounting logs: every host seen in ``exec_host``, and those left out of the machine as
    #: a former burst's cloud nodes (host -> why; :mod:`phorque.replay.hosts`).
    hosts: int | None = None
    former_cloud_nodes: dict[str, str] = field(default_factory=dict)

    @property
    def bad(self) -> int:
        """Records or jobs that were skipped."""
        return sum(self.problems.values())

    def describe(self) -> str:
        span = (self.end - self.start) / DAY
        out = (f"{self.name}: {len(self.jobs):,} jobs, window {_date(self.start)} + {span:.1f} days")
        if self.problems:
            out += "; skipped: " + ", ".join(f"{n:,} {why}" for why, n in sorted(self.problems.items()))
        return out


def _date(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch)) + " UTC"


def parse_start(text: str | None, origin: float) -> float:
    """A window start: days after ``origin`` (``7``, ``1.5``) or a UTC date (``2003-02-01``,
    ``2003-02-01T12:00``). Raises ValueError."""
    if text is None or text == "":
        return origin
    try:
        days = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(days) or days < 0:
            raise ValueError(f"--start {text!r}: days must be a number >= 0")
        return origin + days * DAY
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            parsed = time.strptime(text, fmt)
        except ValueError:
            continue
        import calendar

        return float(calendar.timegm(parsed))
    raise ValueError(f"--start {text!r}: expected days after the trace's start or a date YYYY-MM-DD")


@dataclass(frozen=True)
class Window:
    """Jobs submitted in ``[start, end)``: ``start`` as given to :func:`parse_start`, ``days``
    long (None: to the end of the trace)."""

    start: str | None = None
    days: float | None = None

    def bounds(self, origin: float) -> tuple[float, float]:
        begin = parse_start(self.start, origin)
        if self.days is None:
            return begin, math.inf
        if not math.isfinite(self.days) or self.days <= 0:
            raise ValueError(f"--days {self.days}: must be a number > 0")
        return begin, begin + self.days * DAY
