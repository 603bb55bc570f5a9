"""``qstat``: job status, as Torque 6.1's qstat prints it.

Supported: ``-f`` (full), ``-x`` (XML, always full), ``-t`` (array sub-jobs instead of the
``[]`` summary), ``-a`` (alternative table), ``-1`` (no line wrapping), ``-r``/``-i`` (running
or queued jobs, alternative table), ``-u USER``, and job ids (``12``, ``12.srv``, ``12[]``,
``12[3]``). Completed jobs are shown until ``keep_completed`` expires, as in Torque 6. Each job
id operand is a separate status request, with its own output, as in the real client.
"""

from __future__ import annotations

import time

from phorque_testbed.sandbox import render
from phorque_testbed.sandbox.engine import Engine
from phorque_testbed.sandbox.invocation import Reply, Request, getopt, job_id
from phorque_testbed.sandbox.jobattrs import job_attributes
from phorque_testbed.sandbox.layout import Layout
from phorque_testbed.sandbox.store import Session

USAGE = ("usage: \nqstat [-f [-1]] [-W site_specific] [-x] [ job_identifier... | destination... ]\n"
         "qstat [-a|-i|-r|-e] [-u user] [-n [-1]] [-s] [-G|-M] [-R] [job_id... | destination...]\n")
UNKNOWN_JOB = 15001


def _rows(engine: Engine, ids: list[str] | None, expand_arrays: bool):
    """The rows to show for each request: all jobs (``ids`` None) or one per given id."""
    db = engine.db
    kinds = ("job", "sub") if expand_arrays else ("job", "template")
    if ids is None:
        rows = db.execute(f"SELECT * FROM jobs WHERE kind IN {kinds!r} ORDER BY seq, idx").fetchall()
        return [(None, rows)]
    requests = []
    for wanted in ids:
        row = engine.job(wanted)
        if row is not None and row["kind"] == "template" and expand_arrays:
            rows = db.execute("SELECT * FROM jobs WHERE seq = ? AND kind = 'sub' ORDER BY idx",
                              (row["seq"],)).fetchall()
            requests.append((wanted, rows))
        else:
            requests.append((wanted, [row] if row is not None else []))
    return requests


def work(layout: Layout, request: Request) -> Reply:
    try:
        options, operands = getopt(request.argv, "fxta1nriu:eGMRs")
    except ValueError:
        return Reply(err=USAGE, code=2)
    flags = {letter for letter, _ in options}
    users = {value for letter, value in options if letter == "u"}
    alt = bool(flags & {"a", "r", "i", "n", "u"}) and "f" not in flags and "x" not in flags
    with Session(layout) as session:
        engine = Engine(session)
        now = engine.advance(time.time())
        server = engine.server_name
        ids = [job_id(op, server) for op in operands] or None
        requests = []
        for wanted, rows in _rows(engine, ids, "t" in flags):
            shown = []
            for row in rows:
                if users and row["euser"] not in users:
                    continue
                state = engine.template_state(row) if row["kind"] == "template" else None
                attrs = job_attributes(row, now, server, state, engine.status_every())
                if "r" in flags and (state or row["state"]) not in ("R", "E"):
                    continue
                if "i" in flags and (state or row["state"]) not in ("Q", "H", "W"):
                    continue
                shown.append((row["id"], attrs))
            requests.append((wanted, shown))
    out, err, code = [], [], 0
    header = True
    for wanted, shown in requests:
        if wanted is not None and not shown:
            err.append(f"qstat: Unknown Job Id Error {wanted}\n")
            code = code or UNKNOWN_JOB & 0xFF
            continue
        if "x" in flags:
            out.append(render.jobs_xml(shown))
        elif "f" in flags:
            out.append(render.jobs_full(shown, wrap="1" not in flags))
        elif alt:
            out.append(render.jobs_alt(server, shown))
        elif shown:
            text = render.jobs_summary(shown)
            out.append(text if header else text.split("\n", 2)[2])
            header = False
    return Reply("".join(out), "".join(err), code)

