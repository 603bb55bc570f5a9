"""``qrerun``: requeue running jobs, as Torque 6.1 does (``req_rerunjob``).

A running job that is rerunnable goes back to queued with an R record (no new Q). pbs_server
first asks the job's pbs_mom to kill it: when the mom does not answer (its node is down), the
request fails unless ``-f`` forces the requeue without the mom's word. A job that is not
rerunnable is refused (``job is not rerunnable``, exit 192 = PBSE_NORERUN & 0xFF), and so is a
job that is not running (``Request invalid for state of job``); an unknown id exits 153.
``-m message`` is accepted.
"""

from __future__ import annotations

import time

from phorque_testbed.sandbox.engine import Engine
from phorque_testbed.sandbox.invocation import Reply, Request, getopt, job_id
from phorque_testbed.sandbox.layout import Layout
from phorque_testbed.sandbox.store import Session

USAGE = "usage: qrerun [-f] <JOBID>[ <JOBID>]...\n"

#: (text, exit status) of pbs_server's refusals (pbs_error_db.h; the client exits with the
#: error number & 0xFF).
UNKNOWN = ("Unknown Job Id Error", 15001 & 0xFF)
BAD_STATE = ("Request invalid for state of job", 15018 & 0xFF)
NOT_RERUNNABLE = ("job is not rerunnable", 15040 & 0xFF)
NO_MOM = ("Server could not connect to MOM", 15072 & 0xFF)


def work(layout: Layout, request: Request) -> Reply:
    try:
        options, operands = getopt(request.argv, "fm:")
    except ValueError:
        return Reply(err=USAGE, code=2)
    flags = dict(options)
    if not operands or ("f" in flags and "m" in flags):
        return Reply(err=USAGE, code=2)
    err, code = [], 0
    with Session(layout) as session:
        engine = Engine(session)
        now = engine.advance(time.time())
        for operand in operands:
            target = job_id(operand, engine.server_name)
            refusal = _refusal(engine, target, force="f" in flags)
            if refusal is not None:
                text, code = refusal
                if refusal == NOT_RERUNNABLE:  # pbs_server's own words follow, as MSG=
                    text += f" MSG=job {target} not rerunnable"
                err.append(f"qrerun: {text} {target}\n")
                continue
            job = engine.job(target)
            assert job is not None  # _refusal found it
            engine.requeue(job, now)
        engine.schedule(now)
    return Reply("", "".join(err), code)


def _refusal(engine: Engine, target: str, force: bool) -> tuple[str, int] | None:
    row = engine.job(target)
    if row is None or row["kind"] == "template":
        return UNKNOWN
    if row["state"] != "R":
        return BAD_STATE
    if not row["rerunable"]:
        return NOT_RERUNNABLE
    down = engine.db.execute("SELECT 1 FROM alloc JOIN nodes ON nodes.name = alloc.node"
                             " WHERE alloc.job = ? AND NOT nodes.up", (target,)).fetchone()
    if down is not None and not force:
        return NO_MOM
    return None
