"""The sandbox's pbs_sched: which queued jobs start now, and where.

pbs_sched's default FIFO: queued jobs in submission order (a requeued job keeps its place), each
started if it fits now and skipped otherwise; ``scheduler=strict`` stops at the first job that
does not fit. A job fits on nodes whose mom is up and that are not offline (see
:mod:`phorque.sandbox.placement`); an array's ``%limit`` caps its running sub-jobs. A job that
does not fit, including one larger than the cluster, stays queued with pbs_sched's comment.

A cycle runs only when something changed since the last (a job queued or ended, a node came up,
a mark was cleared), so that a command against a busy cluster stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phorque.sandbox.placement import FreeNode, Part, parse_parts, place
from phorque.sandbox.request import decode_resources

if TYPE_CHECKING:
    from phorque.sandbox.engine import Engine

NOT_RUNNING = "Not Running: Not enough of the right type of nodes are available"


def free_nodes(engine: Engine) -> list[FreeNode]:
    """Nodes a new job may start on (mom up, not offline), with their free slots, in order."""
    used: dict[str, set[int]] = {}
    for node, slot in engine.db.execute("SELECT node, slot FROM alloc"):
        used.setdefault(node, set()).add(slot)
    nodes = []
    for row in engine.db.execute(
            "SELECT name, np, properties FROM nodes WHERE up = 1 AND offline = 0 ORDER BY seq"):
        taken = used.get(row["name"], set())
        free = [s for s in range(row["np"]) if s not in taken]
        props = [p for p in row["properties"].split(",") if p]
        nodes.append(FreeNode(row["name"], props, free))
    return nodes


def cycle(engine: Engine, when: float) -> None:
    """One scheduling cycle at ``when``, if one is due."""
    session = engine.session
    if session.get("sched_dirty") != "1" or session.get("scheduling") != "1":
        return
    session.set("sched_dirty", 0)
    _start_what_fits(engine, when)
    # Every job still queued was looked at and did not fit: pbs_sched says so.
    engine.db.execute("UPDATE jobs SET comment = ? WHERE state = 'Q' AND kind != 'template'"
                      " AND comment IS NOT ?", (NOT_RUNNING, NOT_RUNNING))


def _start_what_fits(engine: Engine, when: float) -> None:
    nodes = free_nodes(engine)
    free_total = sum(len(n.free) for n in nodes)
    if free_total == 0:
        return
    strict = engine.session.get("scheduler") == "strict"
    running_subjobs: dict[int, int] = dict(engine.db.execute(
        "SELECT seq, COUNT(*) FROM jobs WHERE kind = 'sub' AND state = 'R' GROUP BY seq").fetchall())
    limits = dict(engine.db.execute(
        "SELECT seq, slot_limit FROM jobs WHERE kind = 'template' AND slot_limit IS NOT NULL"
        " AND state = 'Q'").fetchall())
    shapes: dict[str, list[Part]] = {}
    queued = engine.db.execute(
        "SELECT * FROM jobs WHERE state = 'Q' AND kind != 'template' ORDER BY seq, idx").fetchall()
    for job in queued:
        if free_total == 0:
            break
        limit = limits.get(job["seq"])
        if limit is not None and running_subjobs.get(job["seq"], 0) >= limit:
            continue
        request = dict(decode_resources(job["resources"]))
        spec = request.get("nodes", "")
        if spec not in shapes:
            shapes[spec] = parse_parts(spec) if spec else []
        procs = int(request.get("procs", 0))
        alloc = None
        if sum(p.count * p.ppn for p in shapes[spec]) + procs <= free_total:
            alloc = place(shapes[spec], procs, nodes)
        if alloc is None:
            if strict:
                break
            continue
        engine.start(job, alloc, when)
        for node in nodes:
            if node.name in alloc:
                node.free = [s for s in node.free if s not in alloc[node.name]]
        free_total -= sum(len(s) for s in alloc.values())
        if job["kind"] == "sub":
            running_subjobs[job["seq"]] = running_subjobs.get(job["seq"], 0) + 1
