"""``phorque-status``: the cluster, the clouds and Phorque's own state, as Phorque sees them."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from typing import Any

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
from phorque.cloud.status import describe_clouds, render_clouds, stored_health
from phorque.config import Config
from phorque.daemon import daemon_status
from phorque.errors import PhorqueError
from phorque.model import MOM_LIST_NOT_SENT, Job, Node, Snapshot, in_queues, summarize
from phorque.policy.common import Limits, never_reason
from phorque.policy.view import View, is_drain_note
from phorque.state import StateStore
from phorque.torque.commands import Torque

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
    """The ``cluster`` object: counts, jobs of the configured queues, and nodes."""
    torque = torque or Torque(config.phorque.cluster_directory, config.phorque.command_timeout_secs)
    out: dict[str, Any] = {}
    try:
        jobs = in_queues(torque.jobs(), config.phorque.queues)
        nodes = torque.nodes()
    except PhorqueError as exc:
        return {"error": str(exc), "queued_jobs": None, "queued_cores": None, "running_jobs": None,
                "total_cores": None, "free_cores": None, "down_cores": None, "jobs": [], "nodes": []}
    out.update(summarize(jobs, nodes).as_dict())
    out["jobs"] = [job_dict(j) for j in jobs]
    why = cannot_run(config, jobs, nodes)
    for entry in out["jobs"]:
        entry["cannot_run"] = why.get(entry["id"])
    out["nodes"] = [node_dict(n) for n in nodes]
    return out


def cannot_run(config: Config, jobs: list[Job], nodes: list[Node]) -> dict[str, str]:
    """Queued jobs no node or instance can ever hold, or that pbs_server refuses to start, with
    the reason the policies give (Phorque's nodes count as the nodes they are)."""
    clouds = tuple(c.state() for c in config.clouds)
    view = View(Snapshot(now=time.time(), jobs=tuple(jobs), nodes=tuple(nodes), clouds=clouds))
    limits = Limits.of(view)
    out = {j.id: f"the scheduler cannot start it (pbs_server: {j.refused_by_server})" for j in view.refused}
    for job in view.queued:
        why = never_reason(job, limits)
        if why:
            out[job.id] = why
    return out


def phorque_status(config: Config, decisions: int = 20) -> dict[str, Any]:
    """Phorque's own state: each instance's lifecycle and the last decisions."""
    if not os.path.exists(config.phorque.state_path):
        return {"instances": [], "decisions": []}
    try:
        state = StateStore(config.phorque.state_path)
        records = state.owned(include_gone=True)
        last = state.decisions(decisions)
    except PhorqueError as exc:
        return {"error": str(exc), "instances": [], "decisions": []}
    live = [r for r in records if r.stage.is_live]
    gone = [r for r in records if not r.stage.is_live][-10:]
    instances = [{**{k: v for k, v in asdict(r).items()}, "stage": r.stage.value} for r in live + gone]
    return {"instances": instances, "decisions": last}


def collect(config: Config) -> dict[str, Any]:
    out = {"config": config.path, "policy": config.policy.name, "cluster": cluster_status(config),
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


def render_phorque(status: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    daemon = status.get("daemon", {})
    if daemon.get("running"):
        age = daemon.get("heartbeat_age_secs")
        lines.append(f"Daemon: running (pid {daemon.get('pid')}), {daemon.get('evaluations', 0)} "
                     f"evaluation(s), last at {_when(daemon.get('last_evaluation'))} "
                     f"({printable(daemon.get('last_reason', ''), 60)}); heartbeat {age} s ago")
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
        lines.append(f"{'PHORQUE INSTANCE':<22} {'CLOUD':<10} {'STAGE':<12} {'SINCE':<19} {'JOINED':<19} NODE")
        for rec in own["instances"]:
            lines.append(f"{printable(rec['instance_id'], 22):<22} {printable(rec['cloud'], 10):<10} "
                         f"{rec['stage']:<12} {_when(rec.get('updated_at')):<19} "
                         f"{_when(rec.get('joined_at')):<19} {printable(rec.get('node') or '--', 50)}")
    if own.get("decisions"):
        lines.append("")
        lines.append("LAST DECISIONS")
        for row in own["decisions"][-10:]:
            target = row.get("node") or row.get("instance") or row.get("cloud") or ""
            count = f" {row['count']}" if row.get("count") else ""
            lines.append(f"{_when(row['time'])} {row['action']}{count} {printable(target, 48)}: "
                         f"{printable(row.get('reason') or '', 70)} -> {printable(row.get('outcome') or '', 40)}")
    return lines


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
        lines.append("")
        lines.append(f"{'NODE':<32} {'NP':>4} {'STATE':<28} JOBS")
        for node in cluster["nodes"]:
            lines.append(f"{printable(node['name'], 32):<32} {node['np']:>4} "
                         f"{printable(','.join(node['state']), 28):<28} "
                         f"{printable(','.join(node['jobs']), 60)}")
        queued = [j for j in cluster["jobs"] if j["state"] == "Q"]
        if queued:
            lines.append("")
            lines.append(f"{'QUEUED JOB':<32} {'QUEUE':<10} {'CORES':>5} {'WALLTIME':>9}")
            for job in queued[:50]:
                wall = job["walltime_secs"]
                lines.append(f"{printable(job['id'], 32):<32} {printable(job['queue'], 10):<10} "
                             f"{job['cores']:>5} {wall if wall is not None else '--':>9}")
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
    args = parser.parse_args(argv)
    config = load_or_exit(args.config)
    setup_logging(args.debug, "", config_secrets(config))
    status = collect(config)
    safe_stdout()
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
