"""Node administration as pbs_server does it for qmgr and pbsnodes.

- ``create node`` (``mgr_node_create``): the name must resolve (:mod:`phorque_testbed.sandbox.hosts`),
  else ``Unknown node``. The node is ``down,offline,MOM-list-not-sent`` until the new node list
  has reached the moms (``mom_list_delay``; real: ~10 s), when ``pbsnodes -o``/``-c`` on it fail,
  then ``down`` until its pbs_mom reports in: after the boot delay, or, in cloud mode, once the
  instance whose DNS name is the node's name has existed for the boot delay.
- ``delete node`` (``mgr_node_delete`` in Torque 5.1+, ``requeue_or_delete_jobs``): each job
  running there is requeued (R record, back to queued) when it is rerunnable, else deleted
  (D record, then E with ``Exit_status=271``). When the node's mom does not answer, the jobs
  cannot be requeued: they are deleted and purged (D record, no E), and qmgr reports
  ``PBSE_MOM_TIMED_OUT_ON_REQUEUE`` although the node is gone.
- ``server_priv/nodes`` is rewritten on every create, delete and change (``update_nodes_file``:
  ``nodes.new`` renamed into place).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from phorque_testbed.sandbox import acct, hosts
from phorque_testbed.sandbox.engine import SIGTERM_EXIT, Engine, TorqueError
from phorque_testbed.sandbox.jobattrs import elapsed

PBSE_UNKNODE = 15064
PBSE_NODEEXIST = 15068
PBSE_MOM_TIMED_OUT_ON_REQUEUE = 15156
UNKNOWN_NODE = "Unknown node "
NODE_EXISTS = "Node name already exists"
NOT_SENT = ("The updated okclients list hasn't been sent out to the cluster yet. The node(s) will"
            " automatically update to free once this is done and the mom has reported in.")
MOM_TIMED_OUT = ("The server was unable to communicate with the MOM to requeue or delete the job."
                 " The node has been deleted and all jobs on the node have been purged.")


def require(engine: Engine, name: str):
    row = engine.db.execute("SELECT * FROM nodes WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise TorqueError(PBSE_UNKNODE, UNKNOWN_NODE)
    return row


log = logging.getLogger(__name__)


def resolvable(engine: Engine, name: str) -> bool:
    """Does pbs_server resolve this name? (see :mod:`phorque_testbed.sandbox.hosts`)"""
    if hosts.listed(hosts.read_names(engine.layout), name):
        return True
    if engine.db.execute("SELECT 1 FROM cloud_names WHERE name = ?", (name,)).fetchone():
        return True
    if hosts.machine_resolves(name):
        return True
    settings = engine.session.settings()
    if settings["boot_mode"] != "cloud" or not settings["cloud_endpoint"]:
        return False
    # An instance launched since the poller's last answer: its DNS name exists already.
    try:
        from phorque_testbed.sandbox.cloud import live_names  # boto3: only in the server
        names = live_names(settings["cloud_endpoint"], settings["cloud_region"])
    except Exception as exc:  # the endpoint is away: the name does not resolve now
        log.warning("cannot ask %s for instance names: %s", settings["cloud_endpoint"], exc)
        return False
    remember_cloud_names(engine, names)
    return name in names


def remember_cloud_names(engine: Engine, names: set[str]) -> None:
    engine.db.execute("DELETE FROM cloud_names")
    engine.db.executemany("INSERT INTO cloud_names (name) VALUES (?)", [(n,) for n in names])


def list_not_sent(node, now: float) -> bool:
    """Is the node in its first moments, before the new node list has reached the moms?"""
    return node["listed_at"] is not None and now < node["listed_at"]


def create_node(engine: Engine, name: str, np: int, properties: Sequence[str], when: float,
                note: str = "", boot: str | None = None, gpus: int = 0, mem_kb: int = 0) -> None:
    """Add a node. ``boot``: ``static`` (up at once, as the nodes file's nodes at start-up),
    ``fixed`` or ``cloud`` (the cluster's boot mode when None). ``gpus``: qmgr's ``gpus=``;
    ``mem_kb``: the memory its mom reports (0: the default, see
    :func:`phorque_testbed.sandbox.nodeattrs.memory_kb`)."""
    if engine.db.execute("SELECT 1 FROM nodes WHERE name = ?", (name,)).fetchone():
        raise TorqueError(PBSE_NODEEXIST, NODE_EXISTS)
    mode = boot or engine.session.get("boot_mode")
    if mode != "static" and not resolvable(engine, name):
        raise TorqueError(PBSE_UNKNODE, UNKNOWN_NODE)
    listed_at = None if mode == "static" else (
        when + engine.real(engine.session.get_float("mom_list_delay")))
    ready_at = None
    if mode == "fixed":  # a mom reports in only once it has the node list
        ready_at = max(when + engine.real(engine.session.get_float("boot_delay")), listed_at or when)
    up = 1 if mode == "static" else 0
    engine.db.execute(
        "INSERT INTO nodes (name, seq, np, gpus, mem_kb, properties, note, boot, created_at,"
        " ready_at, up, up_since, listed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (name, engine.session.next_number("next_node_seq"), np, gpus, mem_kb,
         ",".join(properties), note, mode, when, ready_at, up, when if up else None, listed_at))
    write_nodes_file(engine)
    engine.mark_dirty()


def delete_node(engine: Engine, name: str, requestor: str, when: float) -> None:
    """Remove a node; its jobs are requeued or deleted as Torque 6 does (module docstring).

    Raises TorqueError(PBSE_MOM_TIMED_OUT_ON_REQUEUE) after the deletion when jobs had to be
    purged because the node's mom was down.
    """
    node = require(engine, name)
    job_ids = [r[0] for r in engine.db.execute(
        "SELECT job FROM alloc WHERE node = ? GROUP BY job ORDER BY MIN(rowid)", (name,))]
    purged = False
    for job_id in job_ids:
        job = engine.job(job_id)
        if job is None:
            continue
        if not node["up"]:
            engine.session.record(when, acct.DELETE, job_id, f"requestor={requestor}")
            engine.db.execute("DELETE FROM alloc WHERE job = ?", (job_id,))
            engine.purge(job)
            engine.after_subjob(job, when)
            purged = True
        elif job["rerunable"]:
            engine.requeue(job, when)
        else:
            engine.session.record(when, acct.DELETE, job_id, f"requestor={requestor}")
            engine.finish(job, when, SIGTERM_EXIT, min(elapsed(job, when), job["walltime"]))
    engine.db.execute("DELETE FROM alloc WHERE node = ?", (name,))
    engine.db.execute("DELETE FROM nodes WHERE name = ?", (name,))
    write_nodes_file(engine)
    engine.mark_dirty()
    if purged:
        raise TorqueError(PBSE_MOM_TIMED_OUT_ON_REQUEUE, MOM_TIMED_OUT)


def set_offline(engine: Engine, name: str, offline: bool, when: float) -> None:
    node = require(engine, name)
    if list_not_sent(node, when):
        raise TorqueError(PBSE_UNKNODE, NOT_SENT)
    engine.db.execute("UPDATE nodes SET offline = ? WHERE name = ?", (1 if offline else 0, name))
    engine.mark_dirty()


def set_note(engine: Engine, name: str, note: str) -> None:
    require(engine, name)
    engine.db.execute("UPDATE nodes SET note = ? WHERE name = ?", (note, name))


def set_np(engine: Engine, name: str, np: int) -> None:
    require(engine, name)
    engine.db.execute("UPDATE nodes SET np = ? WHERE name = ?", (np, name))
    write_nodes_file(engine)
    engine.mark_dirty()


def set_gpus(engine: Engine, name: str, gpus: int) -> None:
    """``set node NAME gpus = N`` (``node_gpus_action``: GPU subnodes added or removed from the
    top; a running job keeps the GPUs it was given)."""
    require(engine, name)
    engine.db.execute("UPDATE nodes SET gpus = ? WHERE name = ?", (gpus, name))
    write_nodes_file(engine)
    engine.mark_dirty()


def set_properties(engine: Engine, name: str, properties: Sequence[str]) -> None:
    require(engine, name)
    engine.db.execute("UPDATE nodes SET properties = ? WHERE name = ?",
                      (",".join(properties), name))
    write_nodes_file(engine)
    engine.mark_dirty()


def nodes_file_text(rows) -> str:
    """``pbsnode::write_to_nodes_file``: ``name [np=N] [gpus=G] [prop ...]``; np omitted when 1,
    gpus when 0."""
    lines = []
    for row in rows:
        words = [row["name"]]
        if row["np"] != 1:
            words.append(f"np={row['np']}")
        if row["gpus"]:
            words.append(f"gpus={row['gpus']}")
        words += [p for p in row["properties"].split(",") if p]
        lines.append(" ".join(words) + "\n")
    return "".join(lines)


def write_nodes_file(engine: Engine) -> None:
    text = nodes_file_text(engine.db.execute("SELECT * FROM nodes ORDER BY seq").fetchall())
    path = engine.layout.nodes_file

    def write() -> None:
        with open(path + ".new", "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(path + ".new", path)

    engine.session.on_commit(write)
