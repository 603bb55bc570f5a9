"""The server side of a command: decode the request, run the command, encode the answer.

Injected faults (:mod:`phorque_testbed.sandbox.faults`) are applied here, so a command client stays a
thin pipe: ``fail`` answers as an unreachable server, ``hang`` asks the client never to return,
``truncate`` and ``invalid`` damage the output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from phorque_testbed.sandbox import faults
from phorque_testbed.sandbox.commands import pbsnodes, qdel, qmgr, qrerun, qstat, qsub
from phorque_testbed.sandbox.invocation import Reply, Request, decode_request
from phorque_testbed.sandbox.layout import Layout
from phorque_testbed.sandbox.wire import ANSWER_MAGIC, unreachable

log = logging.getLogger(__name__)

COMMANDS: dict[str, Callable[[Layout, Request], Reply]] = {
    "qsub": qsub.work,
    "qstat": qstat.work,
    "qdel": qdel.work,
    "pbsnodes": pbsnodes.work,
    "qmgr": qmgr.work,
    "qrerun": qrerun.work,
}


def encode_answer(code: int, out: str, err: str, flags: str = "-") -> bytes:
    body_out = out.encode("utf-8", "surrogateescape")
    body_err = err.encode("utf-8", "surrogateescape")
    head = f"{code} {len(body_out)} {len(body_err)} {flags}".encode()
    return ANSWER_MAGIC + b" " + head + b"\n" + body_out + body_err


def server_name(layout: Layout) -> str:
    try:
        with open(layout.server_name_file, encoding="utf-8") as handle:
            return handle.read().strip() or "localhost"
    except OSError:
        return "localhost"


def run(layout: Layout, request: Request) -> Reply:
    """One command; a sandbox bug is reported as such, never as Torque output."""
    work = COMMANDS.get(request.command)
    if work is None:
        return Reply(err=f"{request.command}: not a sandbox command\n", code=1)
    try:
        return work(layout, request)
    except Exception as exc:
        log.exception("%s %s failed", request.command, request.argv)
        return Reply(err=f"{request.command}: sandbox internal error: {type(exc).__name__}: {exc}\n",
                     code=1)


def handle(layout: Layout, data: bytes) -> bytes:
    """The answer to one request."""
    try:
        request = decode_request(data)
    except ValueError as exc:
        return encode_answer(1, "", f"sandbox: bad request: {exc}\n")
    fault = faults.take(layout, request.command)
    if fault == "hang":
        return encode_answer(0, "", "", "hang")
    if fault == "fail":
        code, message = unreachable(request.command, server_name(layout))
        return encode_answer(code, "", message)
    reply = run(layout, request)
    out = reply.out
    if fault in ("truncate", "invalid", "partial") and out:
        out = faults.mangle(out, fault)
    return encode_answer(reply.code, out, reply.err)
