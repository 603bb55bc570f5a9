"""``qdel``: delete queued or running jobs, as Torque 6.1 does.

A queued job gets a D record and no E; a running one a D record, then an E record with
``Exit_status=271`` (killed by SIGTERM). ``qdel N[]`` deletes a whole array through
``req_deletearray``, which writes no D records (running sub-jobs still end with E);
``-t RANGE`` limits that to some indices. ``qdel all`` deletes every job; ``-p`` purges the
job at once instead of keeping it as completed. ``-W``, ``-m``, ``-a`` and ``-c`` are accepted.
"""

from __future__ import annotations

import time

from phorque_testbed.sandbox.engine import Engine, TorqueError
from phorque_testbed.sandbox.invocation import Reply, Request, getopt, job_id
from phorque_testbed.sandbox.layout import Layout
from phorque_testbed.sandbox.request import RequestError, array_indices
from phorque_testbed.sandbox.store import Session

USAGE = ("usage: qdel [{ -a | -c | -p | -t | -W delay | -m message}] [<JOBID>[<JOBID>]|"
         "'all'|'ALL']...\n       -a -c, -m, -p, -t, and -W are mutually exclusive\n")


def work(layout: Layout, request: Request) -> Reply:
    try:
        options, operands = getopt(request.argv, "acpt:W:m:b:")
    except ValueError:
        return Reply(err=USAGE, code=2)
    if not operands:
        return Reply(err=USAGE, code=2)
    flags = dict(options)
    indices = None
    if "t" in flags:
        try:
            indices = set(array_indices(flags["t"])[0])
        except RequestError:
            return Reply(err="qdel: illegal -t value (array range cannot be zero length)\n", code=2)
    requestor = request.requestor
    err, code = [], 0
    with Session(layout) as session:
        engine = Engine(session)
        now = engine.advance(time.time())
        server = engine.server_name
        if any(op.lower() == "all" for op in operands):
            targets = [(r[0], r[0]) for r in engine.db.execute(
                "SELECT id FROM jobs WHERE kind != 'template' AND state != 'C' ORDER BY seq, idx")]
        else:
            targets = [(op, job_id(op, server)) for op in operands]
        for operand, target in targets:
            row = engine.job(target)
            if row is None:
                err.append(f"qdel: nonexistent job id: {operand}\n")
                code = 15001 & 0xFF
                continue
            if indices is not None:
                if row["kind"] != "template":
                    err.append(f"qdel: Error: job id '{operand}' isn't a job array but -t was"
                               " specified.\n")
                    code = 1
                    continue
                engine.delete_array(row, now, indices)
                continue
            try:
                engine.delete(target, requestor, now)
            except TorqueError as exc:
                err.append(f"qdel: {exc.text} {target}\n")
                code = exc.code & 0xFF
                continue
            if "p" in flags:
                if row["kind"] == "template":
                    done = engine.db.execute("SELECT * FROM jobs WHERE seq = ? AND kind = 'sub'"
                                             " AND state = 'C'", (row["seq"],)).fetchall()
                else:
                    done = [engine.job(target)]
                for purged in done:
                    if purged is not None:
                        engine.purge(purged)
        engine.schedule(now)
    return Reply("", "".join(err), code)

