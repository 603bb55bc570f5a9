"""``phorque-status``: the cluster, the clouds and Phorque's own state, as Phorque sees them."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from phorque.act.engine import Engine
from phorque.adapters.cloud.status import describe_clouds, render_clouds, stored_health
from phorque.adapters.config import Config
from phorque.adapters.state import StateStore
from phorque.adapters.torque.commands import Torque
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
from phorque.core.errors import PhorqueError, TransientError
from phorque.core.model import MOM_LIST_NOT_SENT, Job, Node, Snapshot, in_queues, summarize
from phorque.policy.common import Limits, never_reason
from phorque.policy.view import View, is_drain_note
from phorque.policy.why import Why, explain
from phorque.runtime.daemon import daemon_status

log = logging.getLogger("phorque.status")

# Torque prints state words in this order (encode_state); others follow alphabetically.
_STATE_ORDER = ("state-unknown", "down", "offline", "reserve", "job-exclusive", "busy",
                "MOM-list-not-sent", "free")


def state_words(node: Node) -> list[str]:
    rank = {word: i for i, word in enumerate(_STATE_ORDER)}
    return sorted(node.state, key=lambda w: (rank.get(w, len(rank)), w))


def job_dict(job: Job) -> dict[str, Any]:
    return {"id": job.id, "state": job.state, "queue": job.queue, "cores": job.cores,
            "walltime_secs": job.walltime_secs, "name": job.name}


def node_dict(node: Node) -> dict[str, Any]:
    return {"name": node.name, "np": node.np, "state": state_words(node), "jobs": list(node.jobs),
            "note": node.note}


def cluster_status(config: Config, torque: Torque | None = None) -> dict[str, Any]:
    """The ``cluster`` object: counts, jobs of the configured queues (a queued job with ``why``:
    what Phorque is doing about it), and nodes."""
    torque = torque or Torque(config.phorque.cluster_directory, config.phorque.command_timeout_secs)
    out: dict[str, Any] = {}
    try:
        snap, whys = read_cluster(config, torque)
    except PhorqueError as exc:
        return {"error": str(exc), "queued_jobs": None, "queued_cores": None, "running_jobs": None,
                "total_cores": None, "free_cores": None, "down_cores": None, "jobs": [], "nodes": [],
                "spending": None}
    jobs = in_queues(snap.jobs, config.phorque.queues)
    nodes = list(snap.nodes)
    out.update(summarize(jobs, nodes).as_dict())
    out["jobs"] = [job_dict(j) for j in jobs]
    why = cannot_run(config, jobs, nodes)
    for entry in out["jobs"]:
        entry["cannot_run"] = why.get(entry["id"])
        if entry["id"] in whys and entry["state"] == "Q":
            entry["why"] = whys[entry["id"]].text
            entry["why_kind"] = whys[entry["id"]].kind.value
    out["nodes"] = [node_dict(n) for n in nodes]
    budget = config.policy.price_per_hour
    rate = snap.spend_rate
    out["spending"] = {"per_hour": round(rate, 6), "budget_per_hour": budget,
                       "share": round(rate / budget, 4) if budget else None}
    return out


def read_cluster(config: Config, torque: Torque) -> tuple[Snapshot, dict[str, Why]]:
    """Torque and the clouds as the policy sees them, and why each queued job waits: a dry run
    of the configured policy (nothing is changed), so "launched for it" means the next
    evaluation launches for it. Raises PhorqueError when Torque cannot be read."""
    try:
        ev = Engine(config, torque=torque).evaluate(dry_run=True)
    except TransientError as exc:
        cause = exc.__cause__
        raise PhorqueError(str(cause) if cause is not None else str(exc)) from exc
    except PhorqueError as exc:
        # The state cannot be read (or the like): the cluster is still shown, without reasons.
        log.warning("why the jobs wait is not shown: %s", exc)
        snap = Snapshot(now=time.time(), jobs=tuple(torque.jobs()), nodes=tuple(torque.nodes()),
                        clouds=tuple(c.state() for c in config.clouds))
        return snap, {}
    whys = explain(ev.snapshot, ev.plan, config.policy.price_per_hour, config.phorque.queues)
    return ev.snapshot, whys


def cannot_run(config: Config, jobs: Sequence[Job], nodes: Sequence[Node]) -> dict[str, str]:
    """Queued jobs no node or instance can ever hold, or that pbs_server refuses to start, with
    the reason the policies give (Phorque's nodes count as the nodes they are)."""
    clouds = tuple(c.state() for c in config.clouds)
    view = View(Snapshot(now=time.time(), jobs=tuple(jobs), nodes=tuple(nodes), clouds=clouds))
    limits = Limits.of(view)
    out: dict[str, str] = {j.id: f"the scheduler cannot start it (pbs_server: {j.refused_by_server})" for j in view.refused}
    for job in view.queued:
        why = never_reason(job, limits)
        if why:
            out[job.id] = why
    return out


def why_text(config: Config, job_id: str, torque: Torque | None = None) -> tuple[int, str]:
    """``phorque-status --why JOBID``: exit status and the sentence (or why there is none)."""
    torque = torque or Torque(config.phorque.cluster_directory, config.phorque.command_timeout_secs)
    try:
        snap, whys = read_cluster(config, torque)
    except PhorqueError as exc:
        return EXIT_FAILED, f"Torque could not be read: {exc}"
    short = "." not in job_id
    found = [j for j in snap.jobs if j.id == job_id or (short and j.id.split(".", 1)[0] == job_id)]
    if not found:
        return EXIT_FAILED, f"job {job_id} is not known to Torque (qstat lists no such job)"
    job = found[0]
    if job.id in whys and job.is_queued:
        return EXIT_OK, f"{job.id}: {whys[job.id].text}"
    if job.is_running:
        hosts = f" on {', '.join(sorted(set(job.exec_hosts)))}" if job.exec_hosts else ""
        return EXIT_FAILED, f"{job.id} is not waiting: it runs{hosts} (state {job.state})"
    return EXIT_FAILED, f"{job.id} is not queued (state {job.state}): Phorque launches nothing for it"


def phorque_status(config: Config, decisions: int = 20) -> dict[str, Any]:
    """Phorque's own state: each instance's lifecycle and the last decisions."""
    if not os.path.exists(config.phorque.state_path):
        return {"instances": [], "decisions": [], "interruptions": []}
    try:
        state = StateStore(config.phorque.state_path)
        records = state.owned(include_gone=True)
        last = state.decisions(decisions)
        interruptions = state.interruptions(decisions)
    except PhorqueError as exc:
        return {"error": str(exc), "instances": [], "decisions": [], "interruptions": []}
    live = [r for r in records if r.stage.is_live]
    gone = [r for r in records if not r.stage.is_live][-10:]
    instances = [{**{k: v for k, v in asdict(r).items()}, "stage": r.stage.value} for r in live + gone]
    periods = {c.name: c.charge_time_secs for c in config.clouds}
    now = time.time()
    for entry in instances:
        entry["next_charge_secs"] = next_charge(entry, periods.get(entry["cloud"], 0), now)
    return {"instances": instances, "decisions": last, "interruptions": interruptions}


def next_charge(record: dict[str, Any], period: int, now: float) -> float | None:
    """Seconds until a live instance's next billing period starts (None: per-second billing,
    gone, or its launch time unknown)."""
    start = record.get("launch_time") or record.get("first_seen")
    if period <= 0 or not start or record.get("stage") in ("gone", "failed"):
        return None
    return round(period - (max(0.0, now - start) % period), 1)


def collect(config: Config) -> dict[str, Any]:
    out: dict[str, Any] = {"config": config.path, "policy": config.policy.name, "cluster": cluster_status(config),
           "clouds": describe_clouds(config, stored_health(config)),
           "daemon": daemon_status(config), "phorque": phorque_status(config)}
    out["phorque"]["admin_held"] = admin_held(out)
    return out


def admin_held(status: dict[str, Any]) -> list[str]:
    """Phorque's nodes an administrator set offline with a note of their own: left alone."""
    mine = {r.get("node") for r in status["phorque"].get("instances", []) if r.get("stage") != "gone"}
    return sorted(n["name"] for n in status["cluster"].get("nodes", [])
                  if n["name"] in mine and "offline" in n["state"] and not is_drain_note(n["note"])
                  and MOM_LIST_NOT_SENT not in n["state"])  # a new node: offline by Torque itself


def _when(at: float | None) -> str:
    if not at:
        return "--"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _view_lines(daemon: dict[str, Any]) -> list[str]:
    """How the daemon read Torque, and what its reconciliations found the live view got wrong."""
    reads = daemon.get("reads")
    if not isinstance(reads, dict):
        return []
    drift = int(daemon.get("view_drift_total") or 0)
    lines = [f"Torque reads: {reads.get('full', 0)} full, {reads.get('incremental', 0)} incremental, "
             f"{reads.get('unchanged', 0)} trigger(s) that changed nothing; reconciliations found "
             f"{drift} difference(s) from the live view"]
    last = daemon.get("view_last_drift") or []
    if drift and last:
        lines.append("  last found: " + printable("; ".join(str(x) for x in last[:3]), 300))
    return lines


def render_phorque(status: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    daemon = status.get("daemon", {})
    if daemon.get("running"):
        age = daemon.get("heartbeat_age_secs")
        lines.append(f"Daemon: running (pid {daemon.get('pid')}), {daemon.get('evaluations', 0)} "
                     f"evaluation(s), last at {_when(daemon.get('last_evaluation'))} "
                     f"({printable(daemon.get('last_reason', ''), 60)}); heartbeat {age} s ago")
        lines.extend(_view_lines(daemon))
    else:
        lines.append(f"Daemon: not running ({printable(daemon.get('status', 'never started'), 40)})")
    own = status.get("phorque", {})
    if own.get("admin_held"):
        lines.append("Held by the administrator (offline with their own note; Phorque leaves them "
                     f"alone): {printable(', '.join(own['admin_held']), 300)}")
    if own.get("error"):
        lines.append(f"State: unreadable: {printable(own['error'], 200)}")
    if own.get("instances"):
        lines.append("")
        lines.append(f"{'PHORQUE INSTANCE':<22} {'CLOUD':<10} {'STAGE':<12} {'SINCE':<19} {'JOINED':<19} "
                     f"{'NEXT CHARGE':>11} NODE")
        for rec in own["instances"]:
            left = rec.get("next_charge_secs")
            charge = "--" if left is None else f"in {left:.0f} s"
            lines.append(f"{printable(rec['instance_id'], 22):<22} {printable(rec['cloud'], 10):<10} "
                         f"{rec['stage']:<12} {_when(rec.get('updated_at')):<19} "
                         f"{_when(rec.get('joined_at')):<19} {charge:>11} "
                         f"{printable(rec.get('node') or '--', 50)}")
    if own.get("interruptions"):
        lines.append("")
        lines.append("INSTANCES TAKEN BACK BY THE CLOUD (spot interruptions)")
        for row in own["interruptions"][-10:]:
            requeued = ", ".join(row["requeued"]) or "none"
            lost = "; ".join(f"{job} ({why})" for job, why in row["lost"].items())
            lines.append(f"{_when(row['time'])} {printable(row['cloud'], 10)} "
                         f"{printable(row['instance_id'], 22)} node {printable(row.get('node') or '--', 50)}: "
                         f"requeued {printable(requeued, 200)}"
                         + (f"; lost (not rerunnable) {printable(lost, 200)}" if lost else ""))
    if own.get("decisions"):
        lines.append("")
        lines.append("LAST DECISIONS")
        for row in own["decisions"][-10:]:
            target = row.get("node") or row.get("instance") or row.get("cloud") or ""
            count = f" {row['count']}" if row.get("count") else ""
            lines.append(f"{_when(row['time'])} {row['action']}{count} {printable(target, 48)}: "
                         f"{printable(row.get('reason') or '', 70)} -> {printable(row.get('outcome') or '', 40)}")
    return lines


def spending_line(spending: dict[str, Any]) -> str:
    rate, budget = spending["per_hour"], spending.get("budget_per_hour")
    if budget is None:
        return f"Spending: {rate:.2f}/h (no budget: price_per_hour is not set)"
    share = f" ({100 * rate / budget:.0f} %)" if budget else ""
    return f"Spending: {rate:.2f}/h of a {budget:.2f}/h budget{share}"


def render(status: dict[str, Any]) -> str:
    lines: list[str] = []
    cluster = status["cluster"]
    lines.append(f"Phorque status ({printable(status['config'])}, policy {status['policy']})")
    lines.append("")
    if cluster.get("error"):
        lines.append(f"Torque: unreachable: {printable(cluster['error'], 300)}")
    else:
        lines.append(
            f"Torque: {cluster['queued_jobs']} queued jobs ({cluster['queued_cores']} cores), "
            f"{cluster['running_jobs']} running; cores {cluster['total_cores']} total, "
            f"{cluster['free_cores']} free, {cluster['down_cores']} down")
        spending = cluster.get("spending")
        if spending:
            lines.append(spending_line(spending))
        lines.append("")
        lines.append(f"{'NODE':<32} {'NP':>4} {'STATE':<28} JOBS")
        for node in cluster["nodes"]:
            lines.append(f"{printable(node['name'], 32):<32} {node['np']:>4} "
                         f"{printable(','.join(node['state']), 28):<28} "
                         f"{printable(','.join(node['jobs']), 60)}")
        queued = [j for j in cluster["jobs"] if j["state"] == "Q"]
        if queued:
            lines.append("")
            lines.append(f"{'QUEUED JOB':<32} {'QUEUE':<10} {'CORES':>5} {'WALLTIME':>9} WHY")
            for job in queued[:50]:
                wall = job["walltime_secs"]
                lines.append(f"{printable(job['id'], 32):<32} {printable(job['queue'], 10):<10} "
                             f"{job['cores']:>5} {wall if wall is not None else '--':>9} "
                             f"{printable(job.get('why') or '--', 160)}")
            if len(queued) > 50:
                lines.append(f"... and {len(queued) - 50} more")
        stuck = [j for j in cluster["jobs"] if j.get("cannot_run")]
        if stuck:
            lines.append("")
            lines.append("NOT LAUNCHED FOR (no node or instance can run them)")
            for job in stuck[:50]:
                lines.append(f"{printable(job['id'], 32):<32} {printable(job['cannot_run'], 120)}")
            if len(stuck) > 50:
                lines.append(f"... and {len(stuck) - 50} more")
    lines.append("")
    lines.extend(render_clouds(status.get("clouds", []), printable))
    lines.append("")
    lines.extend(render_phorque(status))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("phorque-status", "Show the cluster, clouds and Phorque's state.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--why", metavar="JOBID",
                        help="say in one sentence what Phorque is doing about a queued job")
    args = parser.parse_args(argv)
    config = load_or_exit(args.config)
    setup_logging(args.debug, "", config_secrets(config))
    safe_stdout()
    if args.why:
        rc, text = why_text(config, args.why)
        print(printable(text, 2000), file=sys.stdout if rc == EXIT_OK else sys.stderr)
        return rc
    status = collect(config)
    if args.json:
        json.dump(status, sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(render(status))
    return EXIT_FAILED if unreadable(status) else EXIT_OK


def unreadable(status: dict[str, Any]) -> list[str]:
    """What could not be read (Torque, a cloud's group): the status is then incomplete, and a
    script or a monitor must not take it for a good one (exit 1, the same output)."""
    out = ["Torque"] if status["cluster"].get("error") else []
    out += [f"cloud {c['name']}" for c in status.get("clouds", []) if c.get("desired") is None]
    return out


if __name__ == "__main__":
    sys.exit(main())
