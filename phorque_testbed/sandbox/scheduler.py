"""The sandbox's pbs_sched (Torque 6.1.3's FIFO) and pbs_server's answers to its run requests.

Queued jobs are looked at in ``queue_rank`` order (a requeued job keeps its place), each started
if it fits now and skipped otherwise; ``scheduler=strict`` stops at the first job that does not
fit. Held jobs (``qsub -h``, an array's sub-jobs beyond its ``%limit``) and jobs of a queue that
is not started are not looked at. A job fits on nodes whose mom is up and that are not offline
(see :mod:`phorque_testbed.sandbox.placement`). What pbs_sched leaves in a job's ``comment``, as on a
real 6.1.3:

- a job with a ``nodes`` request is checked by pbs_sched itself: when it does not fit now,
  ``Not Running: Not enough of the right type of nodes are available``; when no node of the
  list could ever hold it (down and offline nodes count, but not their GPUs: pbs_server's
  ``gpu_count`` sees none on a node that is down or offline), or pbs_server cannot read the
  request, pbs_sched deletes it (a D record from ``root@localhost``; the ``delete_infeasible``
  setting, as pbs_sched does, Maui and Moab not);
- a part with ``gpus=N`` needs N GPUs free on each of its nodes (GPUs of running jobs are
  taken; a node's GPUs are numbered from 0 and handed out lowest first); memory asks play no
  part (see :mod:`phorque_testbed.sandbox.placement`);
- a job without one (``ncpus=N`` or a queue without a ``nodes`` default) is sent to pbs_server,
  which gives it one slot, or answers ``Not Running - PBS Error: Resource temporarily unavailable
  MSG=job allocation request exceeds currently available cluster nodes, 1 requested, 0 available``;
- a ``procs=N`` job (no ``nodes``): pbs_server always answers ``Not Running - PBS Error: Unknown
  node-attribute ``, so it never runs.

A cycle runs when something changed since the last (a job queued or ended, a node came up, a
mark was cleared), and on pbs_sched's timer (``sched_cycle``; see the engine).
"""

from __future__ import annotations

import sqlite3
from typing import Protocol

from phorque_testbed.sandbox.placement import (
    BadNodeSpec,
    FreeNode,
    Part,
    Placement,
    gpu_flags,
    parse_exec_gpus,
    parse_parts,
    place,
)
from phorque_testbed.sandbox.request import decode_resources
from phorque_testbed.sandbox.store import Session


class Server(Protocol):
    """What a scheduling cycle needs of the server: its state, and the two ways it ends a
    queued job's wait (the sandbox's :class:`~phorque_testbed.sandbox.engine.Engine` is one)."""

    session: Session
    db: sqlite3.Connection

    def start(self, job: sqlite3.Row, placement: Placement, when: float,
              gpu_flags: int | None = None) -> None: ...

    def delete_never_runs(self, job: sqlite3.Row, when: float) -> None: ...

NOT_RUNNING = "Not Running: Not enough of the right type of nodes are available"
UNKNOWN_NODE_ATTRIBUTE = "Not Running - PBS Error: Unknown node-attribute "
NO_ALLOCATION = ("Not Running - PBS Error: Resource temporarily unavailable MSG=job allocation"
                 " request exceeds currently available cluster nodes, 1 requested, 0 available")
ONE_SLOT = [Part(1, 1, None, [])]


def _gpus_in_use(engine: Server) -> dict[str, set[int]]:
    """GPUs held by running jobs, by node (from their ``exec_gpus``)."""
    used: dict[str, set[int]] = {}
    for (value,) in engine.db.execute(
            "SELECT exec_gpus FROM jobs WHERE state = 'R' AND exec_gpus IS NOT NULL"):
        for node, gpus in parse_exec_gpus(value).items():
            used.setdefault(node, set()).update(gpus)
    return used


def _nodes(engine: Server, usable_only: bool, when: float | None = None) -> list[FreeNode]:
    """Nodes with their free slots and GPUs (usable: mom up, not offline), or every node as if
    empty (see :func:`every_node`)."""
    rows = engine.db.execute(
        "SELECT name, np, gpus, properties, up, offline, listed_at FROM nodes"
        + (" WHERE up = 1 AND offline = 0" if usable_only else "") + " ORDER BY seq").fetchall()
    if not usable_only:
        # pbs_server's gpu_count() sees no GPU on a node that is down, offline or not yet
        # sent the node list, even when it asks what a job could ever get.
        return [FreeNode(r["name"], [p for p in r["properties"].split(",") if p], range(r["np"]),
                         range(r["gpus"]) if r["up"] and not r["offline"]
                         and not (when is not None and r["listed_at"] is not None
                                  and when < r["listed_at"]) else ())
                for r in rows]
    used: dict[str, set[int]] = {}
    for node, slot in engine.db.execute("SELECT node, slot FROM alloc"):
        used.setdefault(node, set()).add(slot)
    gpus_used = _gpus_in_use(engine)
    nodes = []
    for row in rows:
        taken = used.get(row["name"], set())
        free = [s for s in range(row["np"]) if s not in taken]
        gpus = [g for g in range(row["gpus"]) if g not in gpus_used.get(row["name"], set())]
        props = [p for p in row["properties"].split(",") if p]
        nodes.append(FreeNode(row["name"], props, free, gpus))
    return nodes


def free_nodes(engine: Server) -> list[FreeNode]:
    """Nodes a new job may start on (mom up, not offline), with their free slots, in order."""
    return _nodes(engine, True)


def every_node(engine: Server, when: float | None = None) -> list[FreeNode]:
    """Every node of the list, as if up and empty (what pbs_server checks feasibility on);
    only the GPUs of nodes up and online at ``when`` count."""
    return _nodes(engine, False, when)


def could_ever_run(parts: list[Part] | None, nodes: list[FreeNode]) -> bool:
    """Could the node list hold this request if every node were up and empty? A request
    pbs_server cannot read (``parts`` None) never can."""
    return parts is not None and place(parts, 0, nodes) is not None


def shape(spec: str) -> list[Part] | None:
    """The parts of a ``nodes`` value, or None when pbs_server's ``node_spec`` refuses it."""
    try:
        return parse_parts(spec)
    except BadNodeSpec:
        return None


def cycle(engine: Server, when: float) -> None:
    """One scheduling cycle at ``when``, if one is due."""
    session = engine.session
    if session.get("sched_dirty") != "1" or session.get("scheduling") != "1":
        return
    session.set("sched_dirty", 0)
    _run_queue(engine, when)


def _set_comment(engine: Server, job, text: str) -> None:
    if job["comment"] != text:
        engine.db.execute("UPDATE jobs SET comment = ? WHERE id = ?", (text, job["id"]))


def _run_queue(engine: Server, when: float) -> None:
    nodes = free_nodes(engine)
    free_total = sum(len(n.free) for n in nodes)
    strict = engine.session.get("scheduler") == "strict"
    delete_never = engine.session.get("delete_infeasible") == "1"
    everything: list[FreeNode] | None = None
    shapes: dict[str, list[Part] | None] = {}
    feasible: dict[str, bool] = {}
    queued = engine.db.execute(
        "SELECT j.* FROM jobs j JOIN queues q ON q.name = j.queue WHERE j.state = 'Q'"
        " AND j.kind != 'template' AND q.started = 1 ORDER BY j.queue_rank, j.seq, j.idx").fetchall()
    blocked = False
    for job in queued:
        request = dict(decode_resources(job["resources"]))
        spec = request.get("nodes")
        flags = None
        if spec is None:
            # Sent to pbs_server as it is: procs alone is refused, anything else gets one slot.
            if "procs" in request:
                _set_comment(engine, job, UNKNOWN_NODE_ATTRIBUTE)
                continue
            alloc = place(ONE_SLOT, 0, nodes) if free_total and not blocked else None
            if alloc is None:
                _set_comment(engine, job, NO_ALLOCATION)
                blocked = blocked or strict
                continue
        else:
            if spec not in shapes:
                shapes[spec] = shape(spec)
            parts = shapes[spec]
            if delete_never:
                if spec not in feasible:
                    everything = everything if everything is not None else every_node(engine, when)
                    feasible[spec] = could_ever_run(parts, everything)
                if not feasible[spec]:
                    engine.delete_never_runs(job, when)
                    continue
            alloc = None
            if parts is not None and not blocked and sum(p.count * p.ppn for p in parts) <= free_total:
                alloc = place(parts, 0, nodes)
            if alloc is None:
                _set_comment(engine, job, NOT_RUNNING)
                blocked = blocked or strict
                continue
            if alloc.gpus:  # set_nodes sets gpu_flags only for a job given GPUs
                assert parts is not None  # alloc was placed from them
                flags = gpu_flags(parts)
        engine.start(job, alloc, when, flags)
        for node in nodes:
            if node.name in alloc.slots:
                node.free = [s for s in node.free if s not in alloc.slots[node.name]]
                node.gpus = [g for g in node.gpus if g not in alloc.gpus.get(node.name, ())]
        free_total -= sum(len(s) for s in alloc.slots.values())
