"""What the cloud cost, and who it was for: the arithmetic of ``phorque-report``.

Pure: it takes plain data (each instance's life from the state store, each cloud's tariff from
the configuration, each job's runs from Torque's accounting log) and returns plain data; the
command reads the files and prints. The arithmetic is exact (fractions of a currency unit), so
the parts add up to the total by construction, and the figures shown are apportioned from the
exact values to whole millionths so that the shown parts add up to the shown total too.

The attribution, per instance:

1. Its paid interval runs from its launch for ``ceil(lived / charge_time_secs)`` whole billing
   periods (at least one), or exactly as long as it lived with per-second billing; it costs
   ``price / 3600`` per second of it. ``since``/``until`` clip the interval, prorating the cost.
2. The interval is cut wherever a job on its node starts or ends, where the instance ends, and
   at local midnight. Each piece's cost goes to the jobs that ran on the node throughout the
   piece, in proportion to the cores each had there; a piece no job ran in (the rounded-up tail
   after the instance went, too) goes to the cloud's idle line.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any

from phorque.adapters.torque.resources import count_slot_spec
from phorque.core.errors import PhorqueError

#: What ``--by`` accepts.
BY = ("job", "user", "group", "queue", "account", "cloud", "day")

#: Costs are shown in millionths of the currency unit.
PLACES = 6
UNIT = 10 ** PLACES


class ReportError(PhorqueError):
    """The report's own check failed, or its input cannot be reported."""


@dataclass(frozen=True)
class Tariff:
    """A cloud's price per instance-hour and its billing period (0: per-second billing)."""

    price: float
    charge_time_secs: int

    @property
    def per_second(self) -> Fraction:
        # The decimal the configuration wrote (0.1 is a tenth, not its binary neighbour).
        return Fraction(repr(float(self.price))) / 3600

    def describe(self) -> str:
        period = ("per second" if self.charge_time_secs <= 0
                  else f"per {self.charge_time_secs} s period")
        return f"price {self.price:g}/h, billed {period}"


@dataclass(frozen=True)
class Paid:
    """One instance Phorque owned: ``ended`` is None while it lives."""

    instance_id: str
    cloud: str
    node: str | None
    launched: float
    ended: float | None = None


@dataclass(frozen=True)
class Run:
    """One run of a job: the cores it had on each host (``exec_host``), from ``start`` to
    ``end`` (None: still running)."""

    job_id: str
    start: float
    end: float | None
    hosts: Mapping[str, int]
    user: str | None = None
    group: str | None = None
    queue: str | None = None
    account: str | None = None
    jobname: str | None = None


@dataclass(frozen=True)
class Slice:
    """A part of one instance's paid time and its exact cost: a job's share (``run``), or idle
    (``run`` None). ``core_secs`` is the job's cores there times the seconds."""

    cloud: str
    instance_id: str
    run: Run | None
    day: str
    start: Fraction
    end: Fraction
    core_secs: Fraction
    cost: Fraction


@dataclass(frozen=True)
class Billed:
    """One instance's paid interval, whole (``paid_start``..``paid_end``) and inside the
    window (``cost`` of ``paid_secs_in_window``)."""

    paid: Paid
    tariff: Tariff
    periods: int | None  # whole billing periods; None for per-second billing
    paid_start: Fraction
    paid_end: Fraction
    live_end: Fraction
    paid_secs_in_window: Fraction
    cost: Fraction


@dataclass
class Attribution:
    """Every slice of paid time in the window, and the instances they came from."""

    now: float
    since: float | None
    until: float | None
    tariffs: Mapping[str, Tariff]
    billed: list[Billed] = field(default_factory=list)
    slices: list[Slice] = field(default_factory=list)
    unpriced: list[Paid] = field(default_factory=list)

    @property
    def total(self) -> Fraction:
        return sum((b.cost for b in self.billed), Fraction(0))


# -- time ------------------------------------------------------------------------------------
def local_day(at: Fraction | float) -> tuple[str, Fraction]:
    """The local date of ``at`` (``YYYY-MM-DD``) and when the next local day starts."""
    when = datetime.fromtimestamp(float(at))
    day = when.date()
    nxt = datetime.combine(day + timedelta(days=1), datetime.min.time()).timestamp()
    # A float time a hair before midnight can name the day whose end is itself: step past it.
    if Fraction(nxt) <= Fraction(at):
        day = day + timedelta(days=1)
        nxt = datetime.combine(day + timedelta(days=1), datetime.min.time()).timestamp()
    return day.isoformat(), Fraction(nxt)


def day_hours(day: str) -> Fraction:
    """Hours in a local day: 24, or 23 and 25 where the clocks change."""
    first = date.fromisoformat(day)
    start = datetime.combine(first, datetime.min.time()).timestamp()
    end = datetime.combine(first + timedelta(days=1), datetime.min.time()).timestamp()
    return Fraction(end - start) / 3600


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_when(text: str, *, end_of_day: bool = False) -> float:
    """``YYYY-MM-DD`` (local midnight; the next midnight with ``end_of_day``, so that a date
    given to ``--until`` includes that day) or an ISO date-time (local time unless it names
    its offset), as an epoch time. Raises ValueError with what was wrong."""
    text = text.strip()
    if _DATE.fullmatch(text):
        day = date.fromisoformat(text)
        if end_of_day:
            day += timedelta(days=1)
        return datetime.combine(day, datetime.min.time()).timestamp()
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"{text!r} is neither YYYY-MM-DD nor an ISO date-time "
                         "(YYYY-MM-DDTHH:MM[:SS])") from None


# -- accounting ------------------------------------------------------------------------------
def slots_by_host(exec_host: str) -> dict[str, int]:
    """Cores per host of an ``exec_host`` value (``n1/0-3+n2/0,2``: n1 4, n2 2)."""
    out: dict[str, int] = defaultdict(int)
    for entry in exec_host.split("+"):
        host, _, spec = entry.strip().partition("/")
        if host:
            out[host] += count_slot_spec(spec)
    return dict(out)


def _run_of(rec: Any, start: float | None, end: float | None) -> Run | None:
    exec_host = rec.exec_host
    if not exec_host or start is None:
        return None
    if end is not None and end < start:
        return None
    return Run(job_id=rec.job_id, start=start, end=end, hosts=slots_by_host(exec_host),
               user=rec.user, group=rec.group, queue=rec.queue, account=rec.get("account"),
               jobname=rec.jobname)


def runs_from_records(records: Iterable[Any]) -> list[Run]:
    """The runs of jobs in accounting records (in log order), each from where it started.

    An E record is a finished run (its ``start``, ``end`` and ``exec_host``). An S record opens
    one; a rerun (R) or abort (A) of that job, or its next S, closes it at that record's time;
    one still open at the end is running (``end`` None)."""
    open_: dict[str, Any] = {}
    out: list[Run] = []

    def close(job_id: str, at: float) -> None:
        started = open_.pop(job_id, None)
        if started is not None:
            run = _run_of(started, started.start or started.time, at)
            if run is not None:
                out.append(run)

    for rec in records:
        if rec.type == "S":
            close(rec.job_id, rec.start or rec.time)
            open_[rec.job_id] = rec
        elif rec.type == "E":
            open_.pop(rec.job_id, None)
            run = _run_of(rec, rec.start, rec.end if rec.end is not None else rec.time)
            if run is not None:
                out.append(run)
        elif rec.type in "RA":
            close(rec.job_id, rec.time)
    for rec in open_.values():
        run = _run_of(rec, rec.start or rec.time, None)
        if run is not None:
            out.append(run)
    return out


# -- attribution -----------------------------------------------------------------------------
def paid_interval(paid: Paid, tariff: Tariff, now: float) -> tuple[Fraction, Fraction, Fraction, int | None]:
    """``(start, paid_end, live_end, periods)``: the instance lived from its launch to
    ``live_end`` (its end, else ``now``) and was paid to ``paid_end``."""
    start = Fraction(paid.launched)
    live_end = max(start, Fraction(paid.ended if paid.ended is not None else now))
    period = tariff.charge_time_secs
    if period <= 0:
        return start, live_end, live_end, None
    periods = max(1, math.ceil((live_end - start) / period))
    return start, start + periods * period, live_end, periods


def attribute(instances: Iterable[Paid], runs: Iterable[Run], tariffs: Mapping[str, Tariff],
              now: float, since: float | None = None, until: float | None = None,
              day: Callable[[Fraction], tuple[str, Fraction]] = local_day) -> Attribution:
    """Share every instance's paid time in ``[since, until]`` among the jobs on its node.

    ``day(t)`` names the day of ``t`` and when the next one starts (local time by default).
    """
    if since is not None and until is not None and until <= since:
        raise ReportError("the end of the report's window must come after its start")
    out = Attribution(now=now, since=since, until=until, tariffs=tariffs)
    by_host: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        for host in run.hosts:
            by_host[host].append(run)
    low = Fraction(since) if since is not None else None
    high = Fraction(until) if until is not None else None
    for paid in instances:
        tariff = tariffs.get(paid.cloud)
        if tariff is None:
            out.unpriced.append(paid)
            continue
        start, paid_end, live_end, periods = paid_interval(paid, tariff, now)
        a = start if low is None else max(start, low)
        b = paid_end if high is None else min(paid_end, high)
        rate = tariff.per_second
        secs = max(Fraction(0), b - a)
        out.billed.append(Billed(paid, tariff, periods, start, paid_end, live_end, secs, rate * secs))
        if secs > 0:
            out.slices.extend(_share(paid, rate, a, b, live_end, by_host.get(paid.node or "", []),
                                     Fraction(now), day))
    return out


def _share(paid: Paid, rate: Fraction, a: Fraction, b: Fraction, live_end: Fraction,
           runs: list[Run], now: Fraction, day: Callable[[Fraction], tuple[str, Fraction]]) -> list[Slice]:
    """The slices of one instance's paid time ``[a, b]``: a sweep over the starts and ends of
    the runs on its node (only while the instance lived: a later instance may reuse the name)."""
    node = paid.node or ""
    live_start = Fraction(paid.launched)
    events: dict[Fraction, list[tuple[int, Run]]] = defaultdict(list)
    for run in runs:
        r0 = max(Fraction(run.start), live_start, a)
        r1 = min(Fraction(run.end) if run.end is not None else now, live_end, b)
        if r1 > r0:
            events[r0].append((1, run))
            events[r1].append((-1, run))
    cuts = sorted({a, b, *events, *(t for t in (live_end,) if a < t < b)})
    active: dict[int, Run] = {}
    slices: list[Slice] = []
    for t0, t1 in zip(cuts, cuts[1:], strict=False):
        for sign, run in events.get(t0, ()):
            if sign > 0:
                active[id(run)] = run
        for sign, run in events.get(t0, ()):
            if sign < 0:
                active.pop(id(run), None)
        # Cut at local midnight too, so that every slice belongs to one day.
        lo = t0
        while lo < t1:
            name, next_day = day(lo)
            hi = min(t1, next_day)
            cost = rate * (hi - lo)
            cores = sum(r.hosts[node] for r in active.values())
            if cores <= 0:
                slices.append(Slice(paid.cloud, paid.instance_id, None, name, lo, hi, Fraction(0), cost))
            else:
                for run in active.values():
                    c = run.hosts[node]
                    slices.append(Slice(paid.cloud, paid.instance_id, run, name, lo, hi,
                                        c * (hi - lo), cost * c / cores))
            lo = hi
    return slices


# -- lines -----------------------------------------------------------------------------------
@dataclass
class Line:
    """One line of the report: the jobs of one ``--by`` value, or one cloud's idle time
    (``kind`` "idle"; per day with ``--by day``). ``cost`` is exact; ``shown`` the millionths."""

    kind: str
    key: str | None
    cloud: str | None
    cost: Fraction = Fraction(0)
    core_secs: Fraction = Fraction(0)
    idle_secs: Fraction = Fraction(0)
    jobs: set[str] = field(default_factory=set)
    job: Run | None = None
    shown: int = 0


def _key(run: Run, by: str, s: Slice) -> str | None:
    if by == "job":
        return run.job_id
    if by == "cloud":
        return s.cloud
    if by == "day":
        return s.day
    return getattr(run, by)


def lines(att: Attribution, by: str) -> list[Line]:
    """The report's lines ``--by`` one of :data:`BY`, with their shown figures apportioned."""
    if by not in BY:
        raise ReportError(f"--by must be one of {', '.join(BY)}, not {by!r}")
    found: dict[tuple[str, str | None, str | None], Line] = {}
    for s in att.slices:
        ident: tuple[str, str | None, str | None]
        if s.run is None:
            ident = ("idle", s.day if by == "day" else None, s.cloud)
        else:
            ident = ("jobs", _key(s.run, by, s), None)
        line = found.get(ident)
        if line is None:
            line = found[ident] = Line(kind=ident[0], key=ident[1], cloud=ident[2])
        line.cost += s.cost
        if s.run is None:
            line.idle_secs += s.end - s.start
        else:
            line.core_secs += s.core_secs
            line.jobs.add(s.run.job_id)
            if by == "job":
                line.job = s.run
    out = list(found.values())
    if by == "day":
        out.sort(key=lambda ln: (ln.key or "", ln.kind != "jobs", ln.cloud or ""))
    else:
        out.sort(key=lambda ln: (ln.kind != "jobs", -ln.cost, ln.key or "", ln.cloud or ""))
    for line, shown in zip(out, apportion([ln.cost for ln in out]), strict=True):
        line.shown = shown
    return out


@dataclass
class Day:
    """Spend on one local day against the budget (``budget`` None: unlimited)."""

    day: str
    cost: Fraction
    budget: Fraction | None
    shown: int = 0


def days(att: Attribution, price_per_hour: float | None) -> list[Day]:
    """Spend per local day of the window, against ``price_per_hour`` for each hour of it."""
    spent: dict[str, Fraction] = defaultdict(Fraction)
    for s in att.slices:
        spent[s.day] += s.cost
    rate = None if price_per_hour is None else Fraction(repr(float(price_per_hour)))
    out = [Day(name, cost, None if rate is None else rate * day_hours(name))
           for name, cost in sorted(spent.items())]
    for entry, shown in zip(out, apportion([d.cost for d in out]), strict=True):
        entry.shown = shown
    return out


def apportion(values: list[Fraction], unit: int = UNIT) -> list[int]:
    """Whole ``1/unit`` parts of non-negative exact values that add up to their rounded sum:
    each is rounded down, and what the sum is short of goes one part each to the largest
    remainders (ties to the earlier value)."""
    total = rounded(sum(values, Fraction(0)), unit)
    floors = [math.floor(v * unit) for v in values]
    short = total - sum(floors)
    order = sorted(range(len(values)), key=lambda i: (-(values[i] * unit - floors[i]), i))
    for i in order[:short]:
        floors[i] += 1
    return floors


def rounded(value: Fraction, unit: int = UNIT) -> int:
    """``value`` in whole ``1/unit`` parts, halves rounded up (money is not rounded to even)."""
    return math.floor(value * unit + Fraction(1, 2))


def money(parts: int) -> str:
    """Millionths as a decimal: ``1234567`` is ``1.234567``."""
    sign = "-" if parts < 0 else ""
    whole, frac = divmod(abs(parts), UNIT)
    return f"{sign}{whole}.{frac:0{PLACES}d}"


def check(att: Attribution, shown: Iterable[int], exact: Iterable[Fraction]) -> int:
    """The total in millionths, after checking that the parts add up to it (exactly, and as
    shown) and that the slices add up to the instances' billed cost."""
    total = att.total
    if sum((s.cost for s in att.slices), Fraction(0)) != total:
        raise ReportError("the slices of paid time do not add up to the instances' cost")
    if sum(exact, Fraction(0)) != total:
        raise ReportError("the report's lines do not add up to the total")
    parts = rounded(total)
    if sum(shown) != parts:
        raise ReportError("the report's shown lines do not add up to the shown total")
    return parts
