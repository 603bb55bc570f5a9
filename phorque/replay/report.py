"""Printing replay results: a table for people, one JSON object for programs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from phorque.replay.hosts import some
from phorque.replay.metrics import ReplayResult
from phorque.replay.settings import ReplaySettings
from phorque.replay.trace import Trace


def duration(secs: float) -> str:
    """A short human duration: ``45 s``, ``12.5 min``, ``3.4 h``, ``2.1 d``."""
    if secs < 120:
        return f"{secs:.0f} s"
    if secs < 7200:
        return f"{secs / 60:.1f} min"
    if secs < 172800:
        return f"{secs / 3600:.1f} h"
    return f"{secs / 86400:.1f} d"


def billing(charge: int) -> str:
    names = {0: "per second", 60: "per minute", 3600: "per hour"}
    return names.get(max(0, charge), f"per {charge} s")


def shape(mem_mb: int, gpus: int, properties: tuple[str, ...], queues: frozenset[str] | None = None) -> str:
    """What a node or instance offers besides cores, as ``, 16384 MiB, 2 GPUs, ...`` (empty when
    nothing is declared)."""
    out = ""
    if mem_mb:
        out += f", {mem_mb} MiB"
    if gpus:
        out += f", {gpus} GPU{'s' if gpus != 1 else ''}"
    if properties:
        out += f", properties {','.join(properties)}"
    if queues is not None:
        out += f", queues {','.join(sorted(queues))}"
    return out


def describe_setup(trace: Trace, settings: ReplaySettings, local: tuple[int, int]) -> list[str]:
    nodes, np = local
    clouds = "; ".join(
        f"{c.name} {c.price:g}/h{' spot' if c.spot else ''}, {c.instance_cores} cores"
        f"{shape(c.instance_memory_mb, c.instance_gpus, c.node_properties, c.queues)}, max {c.max_instances}, "
        f"boot {c.boot_secs} s, billed {billing(c.charge_time_secs)}" for c in settings.clouds)
    budget = "unlimited" if settings.price_per_hour is None else f"{settings.price_per_hour:g}/h"
    mode = ("evaluations on events" if settings.mode == "events" else "evaluations every period only")
    lines = [f"trace {trace.describe()}",
             f"local cluster {nodes} nodes x {np} cores = {nodes * np} cores"
             f"{shape(settings.local_mem_mb, settings.local_gpus, settings.local_properties)}; scheduler "
             f"{settings.scheduler}; {mode} (loop_sleep_secs {settings.loop_sleep_secs:g})",
             f"clouds: {clouds}; budget {budget}"]
    if settings.spot:
        lines.append(f"spot: {settings.spot_interruptions_per_hour:g} interruptions per instance-hour "
                     f"(seed {settings.seed}); {settings.rerunnable_fraction:.0%} of the jobs rerunnable")
    lines.extend(f"note: {note}" for note in trace.notes)
    if trace.former_cloud_nodes:
        aside = trace.former_cloud_nodes
        lines.append(f"note: {len(aside):,} of the log's {trace.hosts:,} hosts set aside as former cloud nodes: "
                     f"{some(list(aside), 4)}")
    return lines


def table(results: Sequence[ReplayResult]) -> str:
    spot = any(r.spot for r in results)
    head = ("policy", "jobs", "mean wait", "p95 wait", "bsld", "cost", "inst-h", "paid util",
            "peak") + (("interrupted", "requeued", "lost jobs", "lost core-h") if spot else ()) + ("run time",)
    rows = [head]
    for r in results:
        jobs = f"{r.started:,}" if r.started == r.jobs else f"{r.started:,}/{r.jobs:,}"
        extra = (f"{r.interruptions:,}", f"{r.requeued:,}", f"{r.lost_jobs:,}",
                 f"{r.lost_core_hours:,.1f}") if spot else ()
        rows.append((r.policy, jobs, duration(r.mean_wait_secs), duration(r.p95_wait_secs),
                     f"{r.mean_bounded_slowdown:.2f}", f"{r.cost:,.2f}", f"{r.instance_hours:,.0f}",
                     f"{r.paid_utilization:.0%}" if r.instance_hours else "-", str(r.peak_instances),
                     *extra, f"{r.sim_secs:.1f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def remarks(results: Sequence[ReplayResult]) -> list[str]:
    out = []
    killed = {r.killed_at_walltime for r in results}
    same_killed = len(killed) == 1
    if same_killed and killed != {0}:
        out.append(f"{killed.pop():,} jobs ran past their walltime and were killed at it, as Torque would")
    for r in results:
        bits = []
        if r.unstarted:
            bits.append(f"{r.unstarted:,} jobs never started (left out of the waits)")
        if r.never_run:
            bits.append(f"{r.never_run:,} jobs larger than the whole possible cluster")
        if r.killed_at_walltime and not same_killed:
            bits.append(f"{r.killed_at_walltime:,} jobs killed at their walltime")
        if r.truncated:
            bits.append("stopped at the drain limit with jobs still queued")
        bits.extend(f"{n:,} x {what}" for what, n in sorted(r.counters.items()))
        if bits:
            out.append(f"{r.policy}: " + "; ".join(bits))
    return out


def text_report(trace: Trace, settings: ReplaySettings, local: tuple[int, int],
                results: Sequence[ReplayResult]) -> str:
    lines = describe_setup(trace, settings, local)
    lines.append("")
    lines.append(table(results))
    extra = remarks(results)
    if extra:
        lines.append("")
        lines.extend(extra)
    return "\n".join(lines)


def json_report(trace: Trace, results: Sequence[ReplayResult], settings: ReplaySettings,
                local: tuple[int, int]) -> dict[str, Any]:
    """``{"trace", "jobs", "results": [...]}`` plus the set-up that produced them."""
    nodes, np = local
    out: dict[str, Any] = {
        "trace": trace.name,
        "jobs": len(trace.jobs),
        "skipped": dict(sorted(trace.problems.items())),
        "setup": {
            "local_nodes": nodes, "local_np": np, "local_mem_mb": settings.local_mem_mb,
            "local_gpus": settings.local_gpus, "local_properties": list(settings.local_properties),
            "scheduler": settings.scheduler,
            "mode": settings.mode, "loop_sleep_secs": settings.loop_sleep_secs,
            "event_delay_secs": settings.event_delay_secs, "price_per_hour": settings.price_per_hour,
            "clouds": [{"name": c.name, "price": c.price, "instance_cores": c.instance_cores,
                        "max_instances": c.max_instances, "charge_time_secs": c.charge_time_secs,
                        "boot_secs": c.boot_secs, "instance_memory_mb": c.instance_memory_mb,
                        "instance_gpus": c.instance_gpus, "node_properties": list(c.node_properties),
                        "queues": sorted(c.queues) if c.queues is not None else None,
                        **({"market": "spot"} if c.spot else {})}
                       for c in settings.clouds],
        },
        "results": [r.as_dict() for r in results],
    }
    if trace.former_cloud_nodes:
        out["setup"]["former_cloud_nodes"] = dict(trace.former_cloud_nodes)
    if settings.spot:
        out["setup"]["spot"] = {"interruptions_per_hour": settings.spot_interruptions_per_hour,
                                "seed": settings.seed, "rerunnable_fraction": settings.rerunnable_fraction}
    return out
