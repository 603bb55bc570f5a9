"""``pbsnodes``: node status and node marks, as Torque 6.1's pbsnodes.

Supported: ``-a`` and no option (all attributes), ``-x``/``--xml`` (one line of XML), ``-l
[state]`` and ``-n`` (list down, offline and unknown nodes, or those in ``state``), ``-o``
(offline: running jobs go on, nothing new starts), ``-c`` (clear offline), ``-r`` (clear
offline; the mom answers again at once), ``-N note`` and ``-A note`` (set or append a note;
``-N n`` clears it), ``-q``, ``-s server`` (ignored), and node names (after ``--`` or not).
Changes are sent at the end, node by node, as ``set_all_nodeattrs`` does; a failure prints
``Error setting note attribute for NAME - <message>``, Torque 6's wording for any of them, and
the command still exits 0, as the real one does. A node created a moment ago
(``MOM-list-not-sent``) refuses ``-o``/``-c``/``-r`` (state and note unchanged) but takes ``-N``.
"""

from __future__ import annotations

import time
from sqlite3 import Row

from phorque_testbed.sandbox import nodeadmin, render
from phorque_testbed.sandbox.engine import Engine, TorqueError
from phorque_testbed.sandbox.invocation import Reply, Request, getopt
from phorque_testbed.sandbox.layout import Layout
from phorque_testbed.sandbox.nodeattrs import node_attributes
from phorque_testbed.sandbox.store import Session

USAGE = ("usage:\tpbsnodes [-{c|d|l|o|p|r}] [-s server] [-n] [-N \"note\"] [-A \"append note\"]"
         " [-q] [-m standby|suspend|sleep|hibernate|shutdown] node ...\n"
         "\tpbsnodes [-{a|x}] [-s server] [-q] [node]\n")
LIST_WORDS = ("free", "offline", "down", "reserve", "job-exclusive", "job-sharing", "busy",
              "state-unknown", "time-shared", "active", "all", "up")
NO_NODES = ("pbsnodes: Server has no node list MSG=node list is empty - check"
            " 'server_priv/nodes' file\n")
UNKNOWN = "pbsnodes: Unknown node  MSG=cannot locate specified node\n"


def _listed(word: str | None, state: str) -> bool:
    """``filterbystate``: does a node in ``state`` belong in ``pbsnodes -l [word]``?"""
    if word is None:
        return any(w in state for w in ("down", "offline", "state-unknown"))
    if word == "all":
        return True
    if word == "active":
        return any(w in state for w in ("busy", "job-exclusive", "job-sharing"))
    if word == "up":
        return not any(w in state for w in ("down", "offline", "state-unknown"))
    if word == "down":
        return "down" in state or "state-unknown" in state
    return word in state


def _status(engine: Engine, now: float, names: list[str] | None):
    """``[(name, attributes)]`` of the wanted nodes, or None for the first unknown name."""
    db = engine.db
    alloc: dict[str, dict[str, list[int]]] = {}
    for node, slot, job in db.execute("SELECT node, slot, job FROM alloc ORDER BY rowid"):
        alloc.setdefault(node, {}).setdefault(job, []).append(slot)
    sessions = dict(db.execute("SELECT id, session FROM jobs WHERE state = 'R'").fetchall())
    rows = db.execute("SELECT * FROM nodes ORDER BY seq").fetchall()
    if names is not None:
        by_name = {r["name"]: r for r in rows}
        picked: list[Row] = []
        for name in names:
            if name not in by_name:
                return picked, name
            picked.append(by_name[name])
        rows = picked
    result = []
    for row in rows:
        jobs = list(alloc.get(row["name"], {}).items())
        result.append((row["name"], node_attributes(
            row, jobs, [sessions[j] for j, _ in jobs if j in sessions], now)))
    return result, None


def _change(engine: Engine, name: str, note: str | None, append: bool, mark: str | None,
            now: float) -> None:
    node = nodeadmin.require(engine, name)
    if mark is not None and nodeadmin.list_not_sent(node, now):
        # pbs_server refuses the whole change (state and note) until the moms have the list;
        # a note alone is taken.
        raise TorqueError(nodeadmin.PBSE_UNKNODE, nodeadmin.NOT_SENT)
    if note is not None:
        nodeadmin.set_note(engine, name, node["note"] + note if append else note)
    if mark == "o":
        nodeadmin.set_offline(engine, name, True, now)
    elif mark in ("c", "r"):
        nodeadmin.set_offline(engine, name, False, now)


def work(layout: Layout, request: Request) -> Reply:
    argv = ["-x" if a == "--xml" else a for a in request.argv]
    try:
        options, operands = getopt(argv, "acdlm:opqrs:xN:A:n")
    except ValueError:
        return Reply(err=USAGE, code=1)
    if any(not op for op in operands):
        return Reply(err=USAGE, code=1)
    flag, xml, quiet, list_notes = "a", False, False, False
    note: str | None = None
    append = False
    for letter, value in options:
        if letter in "acdlopr":
            flag = letter
        elif letter == "m":
            flag = "m"
        elif letter == "x":
            flag, xml = "a", True
        elif letter == "q":
            quiet = True
        elif letter in "NA":
            note = "" if value == "n" else value
            append = letter == "A"
            if flag == "a" and not xml:
                flag = "N"
        elif letter == "n":
            list_notes = True
    if list_notes and flag != "l":
        return Reply(err="Error: -n requires -l\n" + USAGE, code=1)
    with Session(layout) as session:
        engine = Engine(session)
        now = engine.advance(time.time())
        if flag in ("a", "l", "d"):
            word = None
            if flag == "l" and operands and operands[0].lower() in LIST_WORDS:
                word, operands = operands[0].lower(), operands[1:]
            if engine.db.execute("SELECT COUNT(*) FROM nodes").fetchone()[0] == 0:
                return Reply(err="" if quiet else NO_NODES, code=1)
            nodes, unknown = _status(engine, now, operands or None)
            if unknown is not None:
                # statnode() exits at the first unknown node; -a has printed those before it
                out = render.nodes_plain(nodes) if flag == "a" and not xml else ""
                return Reply(out, "" if quiet else UNKNOWN, 1)
            if flag == "d":
                return Reply()
            if flag == "l":
                shown = []
                for name, attrs in nodes:
                    info = {a: v for a, _r, v in attrs}
                    if _listed(word, info["state"]):
                        shown.append((name, info))
                return Reply(render.nodes_list(shown, list_notes))
            return Reply(render.nodes_xml(nodes) if xml else render.nodes_plain(nodes))
        if flag in ("p", "m"):
            return Reply()
        err = []
        for name in dict.fromkeys(operands):
            try:
                _change(engine, name, note, append, flag if flag in "ocr" else None, now)
            except TorqueError as exc:
                if not quiet:
                    err.append(f"Error setting note attribute for {name} - {exc.text}\n")
        engine.schedule(now)
    # pbsnodes prints each node it could not change and exits 0 all the same (pbsnodes.c)
    return Reply("", "".join(err), 0)

