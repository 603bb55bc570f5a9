"""``phorque-report``: what the cloud instances cost, shared among the jobs that ran on them.

It reads Phorque's state database (each instance's node, launch and end), each cloud's ``price``
and ``charge_time_secs`` from the configuration, and Torque's accounting log (each job's
``exec_host``, ``start`` and ``end``); the arithmetic is :mod:`phorque.cli.costs`'s.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import sys
import time
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from phorque.adapters.config import Config
from phorque.adapters.state import StateStore
from phorque.adapters.torque.accounting import AccountingParser, Record
from phorque.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    base_parser,
    config_secrets,
    load_or_exit,
    printable,
    safe_stdout,
    setup_logging,
)
from phorque.cli.costs import (
    BY,
    Attribution,
    Day,
    Line,
    Paid,
    Tariff,
    apportion,
    attribute,
    check,
    days,
    lines,
    money,
    paid_interval,
    parse_when,
    runs_from_records,
)
from phorque.core.errors import PhorqueError

log = logging.getLogger("phorque.report")

_DAY_FILE = re.compile(r"\d{8}")


def accounting_dir(config: Config) -> str:
    return os.path.join(config.phorque.torque_home, "server_priv", "accounting")


def read_instances(config: Config) -> list[Paid]:
    """Every instance the state database remembers (none when there is no database yet)."""
    path = config.phorque.state_path
    if not os.path.exists(path):
        return []
    state = StateStore(path)
    try:
        rows = state.billing()
    finally:
        state.close()
    return [Paid(r["instance_id"], r["cloud"], r["node"], r["launched"], r["ended"])
            for r in rows if r["launched"] is not None]


def first_file_day(instances: list[Paid], tariffs: dict[str, Tariff], now: float,
                   since: float | None) -> str | None:
    """The first accounting file that can hold a run on a paid instance of the window
    (``YYYYMMDD``): the local day before the earliest such launch, for a clock's slack."""
    starts = [p.launched for p in instances if p.cloud in tariffs
              and (since is None or paid_interval(p, tariffs[p.cloud], now)[1] > since)]
    if not starts:
        return None
    return (datetime.fromtimestamp(min(starts)) - timedelta(days=1)).strftime("%Y%m%d")


def read_records(directory: str, first: str | None, warnings: list[str]) -> list[Record]:
    """The S, E, R and A records of the accounting files from day ``first`` on, in order.
    A bad line is skipped (and counted); a file that cannot be read is named in ``warnings``."""
    if first is None:
        return []
    try:
        names = sorted(n for n in os.listdir(directory) if _DAY_FILE.fullmatch(n) and n >= first)
    except OSError as exc:
        warnings.append(f"no accounting log read ({exc.strerror}: {directory}): "
                        "all paid time counts as idle")
        return []
    parser = AccountingParser()
    out: list[Record] = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            out.extend(r for r in parser.parse_file(path) if r.type in "SERA")
        except OSError as exc:
            warnings.append(f"accounting file {path} not read: {exc.strerror}")
    if parser.bad:
        warnings.append(f"{parser.bad} malformed accounting line(s) skipped")
    return out


def _iso(at: float | Fraction | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(float(at)).astimezone().isoformat(timespec="seconds")


def _num(parts: int) -> float:
    return float(money(parts))


def _secs(value: Fraction) -> float:
    return round(float(value), 3)


def _percent(part: int, whole: int) -> float | None:
    return None if whole <= 0 else round(100.0 * part / whole, 1)


class Report:
    """The attribution and everything shown of it, with the figures checked to add up."""

    def __init__(self, config: Config, att: Attribution, by: str, warnings: list[str]):
        self.config, self.att, self.by, self.warnings = config, att, by, warnings
        self.lines: list[Line] = lines(att, by)
        self.days: list[Day] = days(att, config.policy.price_per_hour)
        self.total = check(att, [ln.shown for ln in self.lines], [ln.cost for ln in self.lines])
        check(att, [d.shown for d in self.days], [d.cost for d in self.days])
        self.instance_shown = apportion([b.cost for b in att.billed])
        check(att, self.instance_shown, [b.cost for b in att.billed])
        names = [c.name for c in config.clouds]
        per_cloud = [sum((b.cost for b in att.billed if b.paid.cloud == n), Fraction(0)) for n in names]
        self.cloud_shown = dict(zip(names, apportion(per_cloud), strict=True))

    def clouds(self) -> list[dict[str, Any]]:
        out = []
        for cloud in self.config.clouds:
            tariff = self.att.tariffs[cloud.name]
            out.append({"name": cloud.name, "price": cloud.price,
                        "charge_time_secs": cloud.charge_time_secs,
                        "billing": tariff.describe(),
                        "instances": sum(1 for b in self.att.billed if b.paid.cloud == cloud.name),
                        "cost": _num(self.cloud_shown[cloud.name])})
        return out

    def instances(self) -> list[dict[str, Any]]:
        out = []
        for billed, shown in zip(self.att.billed, self.instance_shown, strict=True):
            p = billed.paid
            out.append({"instance_id": p.instance_id, "cloud": p.cloud, "node": p.node,
                        "launched": _iso(p.launched), "ended": _iso(p.ended),
                        "launched_epoch": p.launched, "ended_epoch": p.ended,
                        "live": p.ended is None, "periods": billed.periods,
                        "paid_secs": _secs(billed.paid_end - billed.paid_start),
                        "paid_secs_in_window": _secs(billed.paid_secs_in_window),
                        "cost": _num(shown)})
        return out

    def line_dict(self, line: Line) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": line.kind, "key": line.key, "cloud": line.cloud,
                               "jobs": len(line.jobs), "core_secs": _secs(line.core_secs),
                               "idle_secs": _secs(line.idle_secs), "cost": _num(line.shown),
                               "percent": _percent(line.shown, self.total)}
        if self.by == "job" and line.job is not None:
            run = line.job
            out.update(user=run.user, group=run.group, queue=run.queue, account=run.account,
                       jobname=run.jobname)
        return out

    def day_dicts(self) -> list[dict[str, Any]]:
        out = []
        for d in self.days:
            budget = None if d.budget is None else round(float(d.budget), 6)
            percent = (None if not d.budget else round(float(100 * d.cost / d.budget), 1))
            out.append({"day": d.day, "cost": _num(d.shown), "budget": budget, "percent": percent})
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"by": self.by, "since": _iso(self.att.since), "until": _iso(self.att.until),
                "now": _iso(self.att.now), "currency_places": 6,
                "budget_per_hour": self.config.policy.price_per_hour,
                "clouds": self.clouds(), "instances": self.instances(),
                "lines": [self.line_dict(ln) for ln in self.lines],
                "total": _num(self.total), "days": self.day_dicts(),
                "unpriced": [{"instance_id": p.instance_id, "cloud": p.cloud}
                             for p in self.att.unpriced],
                "warnings": self.warnings}

    # -- table -------------------------------------------------------------------------------
    def label(self, line: Line) -> str:
        if line.kind == "idle":
            where = f"idle ({line.cloud})"
            return f"{line.key} {where}" if line.key else where
        return line.key if line.key is not None else "--"

    def render(self) -> str:
        att = self.att
        window = ("the whole history" if att.since is None else f"from {_when(att.since)}")
        window += f" to {_when(att.until)}" if att.until is not None else f" to now ({_when(att.now)})"
        out = [f"Phorque cost report by {self.by}, {window}, local time", "",
               "Clouds (price and billing period from the current configuration):"]
        for cloud in self.clouds():
            out.append(f"  {printable(cloud['name'], 30)}: {cloud['billing']}; "
                       f"{cloud['instances']} instance(s), {money(self.cloud_shown[cloud['name']])}")
        live = sum(1 for b in att.billed if b.paid.ended is None)
        out.append(f"Instances: {len(att.billed)} ({len(att.billed) - live} gone, {live} live)")
        for p in att.unpriced:
            out.append(f"  not priced (cloud {printable(p.cloud, 30)} is not configured): "
                       f"{printable(p.instance_id, 40)}")
        out.append("")
        head = self.by.upper()
        out.append(f"{head:<36} {'JOBS':>5} {'CORE-HOURS':>11} {'IDLE-HOURS':>11} {'COST':>16} {'%':>6}")
        jobs: set[str] = set()
        core = idle = Fraction(0)
        for line in self.lines:
            jobs |= line.jobs
            core += line.core_secs
            idle += line.idle_secs
            out.append(self._row(self.label(line), len(line.jobs) if line.kind == "jobs" else None,
                                 line.core_secs if line.kind == "jobs" else None,
                                 line.idle_secs if line.kind == "idle" else None, line.shown))
        out.append(self._row("TOTAL", len(jobs), core, idle, self.total))
        out.append(f"The {len(self.lines)} line(s) above add up to the total (checked).")
        out.append("")
        budget = self.config.policy.price_per_hour
        out.append("Spend per day against the budget ("
                   + ("unlimited: [Policy] price_per_hour is not set" if budget is None
                      else f"[Policy] price_per_hour {budget:g} x the day's hours") + "):")
        out.append(f"{'DAY':<12} {'SPEND':>16} {'BUDGET':>16} {'%':>6}")
        for entry in self.day_dicts():
            shown = "unlimited" if entry["budget"] is None else f"{entry['budget']:.6f}"
            pct = "--" if entry["percent"] is None else f"{entry['percent']:.1f}"
            out.append(f"{entry['day']:<12} {entry['cost']:>16.6f} {shown:>16} {pct:>6}")
        if not self.days:
            out.append("(no paid time in the window)")
        for warning in self.warnings:
            out.append(f"Warning: {printable(warning, 200)}")
        return "\n".join(out)

    def _row(self, label: str, jobs: int | None, core: Fraction | None, idle: Fraction | None,
             shown: int) -> str:
        pct = _percent(shown, self.total)
        return (f"{printable(label, 36):<36} {'-' if jobs is None else jobs:>5} "
                f"{'-' if core is None else f'{float(core) / 3600:.4f}':>11} "
                f"{'-' if idle is None else f'{float(idle) / 3600:.4f}':>11} "
                f"{money(shown):>16} {'--' if pct is None else f'{pct:.1f}':>6}")

    def write_csv(self, stream) -> None:
        extra = ["user", "group", "queue", "account", "jobname"] if self.by == "job" else []
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["by", "kind", "key", "cloud", "jobs", "core_secs", "idle_secs", "cost",
                         "percent", *extra])
        for line in self.lines:
            row = self.line_dict(line)
            writer.writerow([self.by, row["kind"], row["key"] or "", row["cloud"] or "",
                             row["jobs"], row["core_secs"], row["idle_secs"], money(line.shown),
                             "" if row["percent"] is None else row["percent"],
                             *[row.get(k) or "" for k in extra]])


def _when(at: float | None) -> str:
    return "--" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def build(config: Config, by: str, since: float | None, until: float | None,
          now: float) -> Report:
    """Read the state and the accounting log, attribute, and check."""
    warnings: list[str] = []
    tariffs = {c.name: Tariff(c.price, c.charge_time_secs) for c in config.clouds}
    instances = read_instances(config)
    first = first_file_day(instances, tariffs, now, since)
    records = read_records(accounting_dir(config), first, warnings)
    att = attribute(instances, runs_from_records(records), tariffs, now, since, until)
    unknown = sum(1 for b in att.billed if b.paid.node is None)
    if unknown:
        warnings.append(f"{unknown} instance(s) never had a known node: their paid time is idle")
    return Report(config, att, by, warnings)


def _parse_window(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[float | None, float | None]:
    try:
        since = None if args.since is None else parse_when(args.since)
    except ValueError as exc:
        parser.error(f"--since: {exc}")
    try:
        until = None if args.until is None else parse_when(args.until, end_of_day=True)
    except ValueError as exc:
        parser.error(f"--until: {exc}")
    if since is not None and until is not None and until <= since:
        parser.error("--until must come after --since")
    return since, until


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("phorque-report",
                         "What the cloud instances cost, shared among the jobs that ran on them.")
    parser.add_argument("--since", metavar="DATE",
                        help="start of the window: YYYY-MM-DD or an ISO date-time, local time "
                             "(default: the whole history)")
    parser.add_argument("--until", metavar="DATE",
                        help="end of the window: a date counts to the end of that day (default: "
                             "no end; a live instance's current billing period counts whole)")
    parser.add_argument("--by", choices=BY, default="job", help="what each line is (default: job)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument("--csv", action="store_true", help="print the lines as CSV with a header")
    args = parser.parse_args(argv)
    since, until = _parse_window(parser, args)
    config = load_or_exit(args.config)
    setup_logging(args.debug, "", config_secrets(config))
    try:
        report = build(config, args.by, since, until, time.time())
    except PhorqueError as exc:
        print(f"phorque-report: {exc}", file=sys.stderr)
        return EXIT_FAILED
    safe_stdout()
    if args.json:
        json.dump(report.as_dict(), sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
    elif args.csv:
        report.write_csv(sys.stdout)
    else:
        print(report.render())
    if args.json or args.csv:
        for warning in report.warnings:
            print(f"phorque-report: warning: {warning}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
