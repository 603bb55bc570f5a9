"""``phorque-replay``: replay a workload through the policies and compare cost and waits.

Exit status: 0 on success, 2 on a usage or configuration error (unreadable trace, unknown policy,
bad option), 1 when the replay itself failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace
from typing import TextIO

from phorque import __version__
from phorque.adapters.config import PhorqueSettings
from phorque.cli.common import EXIT_CONFIG, EXIT_OK, load_or_exit
from phorque.core.options import OptionValueError, budget_option
from phorque.policy import registry
from phorque.replay.accounting import read_accounting
from phorque.replay.hosts import describe_set_aside, parse_static
from phorque.replay.metrics import ReplayResult
from phorque.replay.parallel import replay_all
from phorque.replay.plot import PlotUnavailable, plot, require_matplotlib
from phorque.replay.queues import check_queues
from phorque.replay.report import json_report, text_report
from phorque.replay.scheduler import DISCIPLINES
from phorque.replay.settings import MODES, ReplaySettings, settings_from_config
from phorque.replay.swf import read_swf
from phorque.replay.trace import Trace, Window

BASELINES = ("LocalOnly", "LaunchMax")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="phorque-replay",
        description="Replay an SWF trace or Torque accounting logs through the policies and "
                    "report, for each, the waits, the slowdown and what the clouds would cost. "
                    "The baselines LocalOnly and LaunchMax are always replayed too.")
    p.add_argument("trace", nargs="+", metavar="TRACE",
                   help="an SWF trace (.swf, .swf.gz), or Torque accounting files or directories")
    p.add_argument("-c", "--config", metavar="FILE",
                   help="phorque.conf giving the clouds, the budget and the policy's options "
                        "(default: built-in clouds 'cheap' and 'dear', see the README)")
    p.add_argument("--policy", nargs="+", action="extend", metavar="NAME",
                   help="policies to replay (default: the configured one, else every policy)")
    p.add_argument("--local-nodes", metavar="N|NAMES",
                   help="static nodes: a number, or (accounting logs) the hosts that were static, as "
                        "names or patterns (node*,gpu[0-9]), every other host being a former cloud "
                        "node (default: the log's hosts less those named as cloud instances)")
    p.add_argument("--local-np", type=int, metavar="M", help="cores per static node")
    p.add_argument("--local-mem-mb", type=int, metavar="MIB",
                   help="memory of each static node in MiB (default 0: unknown, never a limit)")
    p.add_argument("--local-gpus", type=int, metavar="G", help="GPUs of each static node (default 0)")
    p.add_argument("--local-properties", metavar="P,Q",
                   help="node properties of every static node (default none)")
    p.add_argument("--start", metavar="S", help="window start: days after the trace's start, or a "
                                               "UTC date YYYY-MM-DD")
    p.add_argument("--days", type=float, metavar="D", help="window length in days (default: all)")
    p.add_argument("--format", choices=("auto", "swf", "accounting"), default="auto",
                   help="input format (default: guessed from the file)")
    p.add_argument("--charge", type=int, metavar="SECS",
                   help="bill every cloud per SECS (0: per second) instead of its charge_time_secs")
    p.add_argument("--boot", type=int, metavar="SECS", help="every cloud's boot time")
    p.add_argument("--budget", metavar="PER_HOUR", help="price_per_hour over all clouds, or 'unlimited'")
    p.add_argument("--scheduler", choices=DISCIPLINES, help="fifo (default), strict or easy backfilling")
    p.add_argument("--mode", choices=MODES, help="events (the daemon, default) or poll (the original)")
    p.add_argument("--loop-sleep", type=float, metavar="SECS", help="loop_sleep_secs")
    p.add_argument("--mom-delay", type=float, metavar="SECS",
                   help="seconds a joined node stays down before pbs_mom reports (default 0)")
    p.add_argument("--walltime-factor", type=float, default=2.0, metavar="F",
                   help="SWF jobs without a requested time get F x run time (default 2)")
    p.add_argument("--every-period", action="store_true",
                   help="evaluate at every loop_sleep_secs even when nothing changed (slower)")
    p.add_argument("--queue-name", metavar="Q,R|*",
                   help="the queues whose jobs count, instead of [Phorque] queue_name ('*': every queue)")
    p.add_argument("--default-queue", metavar="NAME",
                   help="the queue of jobs whose trace names none (SWF queue number -1; default "
                        "none): a section's queues can then name it")
    p.add_argument("--spot-interruptions-per-hour", type=float, default=0.0, metavar="R",
                   help="each running instance of a spot section (market = spot) is taken back at "
                        "an exponential time, R per instance-hour (default 0: never)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the interruptions and of --rerunnable-fraction (default 0)")
    p.add_argument("--rerunnable-fraction", type=float, default=1.0, metavar="F",
                   help="share of the trace's jobs that are rerunnable, chosen by job number "
                        "(default 1: all)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="replay up to N policies at once, one process each (default 1); the "
                        "tables are the same, in the same order")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="draw queue length and instances over time")
    progress = p.add_mutually_exclusive_group()
    progress.add_argument("--progress", action="store_true", help="show progress even when not on a terminal")
    progress.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def detect_format(paths: list[str]) -> str:
    """``swf`` or ``accounting``, from the names and the first line of the first file."""
    first = paths[0]
    if os.path.isdir(first):
        return "accounting"
    name = first.lower()
    if name.endswith((".swf", ".swf.gz")):
        return "swf"
    with open(first, "rb") as handle:
        head = handle.read(4096)
    if head[:2] == b"\x1f\x8b":
        return "swf"
    for line in head.decode("utf-8", "replace").splitlines():
        if line.strip():
            return "swf" if line.lstrip().startswith(";") or line.split()[0].isdigit() else "accounting"
    return "accounting"


def load_trace(paths: list[str], fmt: str, window: Window, walltime_factor: float,
               default_queue: str | None = None, static: tuple[str, ...] | None = None) -> Trace:
    """Read the workload; jobs without a queue get ``default_queue`` when given; ``static``
    names the hosts of accounting logs that were static nodes. Raises OSError or ValueError with
    a message for the user."""
    if fmt == "auto":
        fmt = detect_format(paths)
    if fmt == "swf":
        if len(paths) != 1:
            raise ValueError("give one SWF trace at a time")
        if static is not None:
            raise ValueError("--local-nodes NAMES needs Torque accounting logs (an SWF trace has no "
                             "host names): give a number")
        trace = read_swf(paths[0], window, walltime_factor)
    else:
        trace = read_accounting(paths, window, static)
    if default_queue:
        trace = replace(trace, jobs=[j if j.queue else replace(j, queue=default_queue) for j in trace.jobs])
    return trace


def _settings(args: argparse.Namespace) -> tuple[ReplaySettings, list[str]]:
    overrides: dict = {}
    count, _ = local_nodes_arg(args.local_nodes)
    if count is not None:
        overrides["local_nodes"] = count
    if args.queue_name is not None:
        overrides["queues"] = queue_name_arg(args.queue_name)
    for name, attr in (("local_np", "local_np"),
                       ("scheduler", "scheduler"), ("mode", "mode"), ("loop_sleep", "loop_sleep_secs"),
                       ("mom_delay", "mom_delay_secs"), ("local_mem_mb", "local_mem_mb"),
                       ("local_gpus", "local_gpus")):
        value = getattr(args, name)
        if value is not None:
            overrides[attr] = value
    if args.every_period:
        overrides["skip_idle"] = False
    rate, share = args.spot_interruptions_per_hour, args.rerunnable_fraction
    if not (math.isfinite(rate) and rate >= 0):
        raise ValueError("--spot-interruptions-per-hour must be a number >= 0")
    if not (math.isfinite(share) and 0 <= share <= 1):
        raise ValueError("--rerunnable-fraction must be between 0 and 1")
    overrides.update(spot_interruptions_per_hour=rate, seed=args.seed, rerunnable_fraction=share)
    if args.local_properties is not None:
        overrides["local_properties"] = tuple(p for p in (w.strip() for w in args.local_properties.split(",")) if p)
    if args.budget is not None:
        try:
            overrides["price_per_hour"] = budget_option().parse(args.budget)
        except OptionValueError as exc:
            raise ValueError(f"--budget: {exc}") from None
    if args.local_np is not None and args.local_np < 1:
        raise ValueError("--local-np must be at least 1")
    for name in ("local_mem_mb", "local_gpus"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
    if args.config:
        config = load_or_exit(args.config)
        settings = settings_from_config(config, **overrides)
        policies = args.policy or [config.policy.name]
    else:
        settings = ReplaySettings(**overrides)
        policies = args.policy or [name for name in registry() if name not in BASELINES]
    if args.charge is not None:
        if args.charge < 0:
            raise ValueError("--charge must be >= 0")
        settings = settings.with_charge(args.charge)
    if args.boot is not None:
        if args.boot < 0:
            raise ValueError("--boot must be >= 0")
        settings = settings.with_boot(args.boot)
    if rate > 0 and not settings.spot:
        raise ValueError("--spot-interruptions-per-hour: no cloud is a spot section (market = spot "
                         "in a [Cloud-<Name>] section of -c FILE)")
    known = registry()
    for name in policies:
        if name not in known:
            raise ValueError(f"no policy named {name!r} (available: {', '.join(sorted(known))})")
    ordered = list(BASELINES[:1]) + [n for n in dict.fromkeys(policies) if n not in BASELINES] + list(BASELINES[1:])
    return settings, ordered


def local_nodes_arg(text: str | None) -> tuple[int | None, tuple[str, ...] | None]:
    """``--local-nodes``: ``(count, None)`` for a number, ``(None, patterns)`` for host names or
    patterns, ``(None, None)`` when not given. Raises ValueError."""
    if text is None:
        return None, None
    text = text.strip()
    if text.lstrip("+-").isdigit():
        if int(text) < 1:
            raise ValueError("--local-nodes must be at least 1")
        return int(text), None
    return None, parse_static(text)


def queue_name_arg(text: str) -> frozenset[str] | None:
    """``--queue-name Q,R``, read as ``[Phorque] queue_name`` is (empty or ``*``: every queue)."""
    return PhorqueSettings(queue_name=text).queues


def trust_checks(trace: Trace, settings: ReplaySettings, policies: list[str], args: argparse.Namespace,
                 err: TextIO) -> None:
    """Say on ``err`` what would make the replay mislead: hosts of the log set aside as former
    cloud nodes, and configured queues that match no job. Raises ValueError when no policy
    could launch an instance for any job of the trace (a replay without cloud use)."""
    count, named = local_nodes_arg(args.local_nodes)
    uses_hosts = count is None or args.local_np is None
    if trace.former_cloud_nodes and uses_hosts:
        aside = trace.former_cloud_nodes
        how = "by --local-nodes" if named is not None else "by name (--local-nodes NAMES overrides)"
        print(f"phorque-replay: {len(aside):,} of the log's {trace.hosts:,} hosts set aside as former cloud "
              f"nodes, not static ones, {how}:", file=err)
        for line in describe_set_aside(aside):
            print(f"  {line}", file=err)
        if trace.nodes is None and count is None:
            raise ValueError("every host of the log was set aside as a former cloud node: give "
                             "--local-nodes N --local-np M, or --local-nodes '*' to count every host "
                             "as static")
    check = check_queues((j.queue for j in trace.jobs), settings.queues, settings.clouds,
                         default_queue_hint=not args.default_queue)
    for line in check.warnings:
        print(f"phorque-replay: warning: {line}", file=err)
    if check.error and any(name not in BASELINES for name in policies):
        raise ValueError(check.error)
    if check.error:
        print(f"phorque-replay: warning: {check.error}", file=err)


class _Progress:
    def __init__(self, policy: str, stream):
        self.policy = policy
        self.stream = stream
        self.started = time.monotonic()

    def __call__(self, fraction: float, _now: float, events: int) -> None:
        rate = events / max(1e-9, time.monotonic() - self.started)
        self.stream.write(f"\r{self.policy}: {fraction:4.0%} of the trace submitted, "
                          f"{events:,} events ({rate:,.0f}/s)   ")
        if fraction >= 1.0:
            self.stream.write("\n")
        self.stream.flush()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings, policies = _settings(args)
        if args.jobs < 1:
            raise ValueError("--jobs must be at least 1")
        if args.plot:
            require_matplotlib()
        if args.default_queue is not None and not args.default_queue.strip():
            raise ValueError("--default-queue: give a queue name")
        trace = load_trace(args.trace, args.format, Window(args.start, args.days), args.walltime_factor,
                           args.default_queue.strip() if args.default_queue else None,
                           local_nodes_arg(args.local_nodes)[1])
        trust_checks(trace, settings, policies, args, sys.stderr)
        local = settings.local_cluster(trace.max_cores, trace.nodes, trace.node_cores)
        made = [settings.make_policy(name) for name in policies]
    except (OSError, ValueError, TypeError, PlotUnavailable) as exc:
        print(f"phorque-replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    settings = replace(settings, local_nodes=local[0], local_np=local[1])
    show = args.progress or (not args.quiet and sys.stderr.isatty())
    results: list[ReplayResult] = replay_all(
        trace, settings, [policy.name for policy in made], args.jobs,
        progress=(lambda name: _Progress(name, sys.stderr)) if show else None,
        stream=sys.stderr if show else None)
    if args.json:
        print(json.dumps(json_report(trace, results, settings, local), indent=2))
    else:
        print(text_report(trace, settings, local, results))
    if args.plot:
        try:
            plot(results, args.plot, title=trace.name)
        except (OSError, PlotUnavailable) as exc:
            print(f"phorque-replay: cannot draw {args.plot}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        if not args.json:
            print(f"\nplot written to {args.plot}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
