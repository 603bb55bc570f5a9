"""What every sandbox command does around its own work.

A command finds its cluster from its own location (``DIR/bin/<name>``), applies any injected
fault, checks that the server is up (its process holds ``sandbox/server.lock``), does its work
in one locked session after catching up the elapsed time, and prints. When the server is down
it fails as a Torque client fails when pbs_server does not answer.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
from collections.abc import Callable

from phorque.sandbox import faults
from phorque.sandbox.layout import Layout

ECONNREFUSED = errno.ECONNREFUSED  # 111 on Linux


class Reply:
    """What a command prints and its exit status."""

    __slots__ = ("out", "err", "code")

    def __init__(self, out: str = "", err: str = "", code: int = 0):
        self.out = out
        self.err = err
        self.code = code


def server_running(layout: Layout) -> bool:
    """True while a sandbox server process holds the cluster's server lock."""
    try:
        fd = os.open(layout.server_lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def server_name(layout: Layout) -> str:
    try:
        with open(layout.server_name_file, encoding="utf-8") as handle:
            return handle.read().strip() or "localhost"
    except OSError:
        return "localhost"


def unreachable(command: str, server: str) -> Reply:
    """A Torque 6 client's failure when pbs_server does not answer (``cnt2server``)."""
    refused = "Connection refused"
    if command == "pbsnodes":
        return Reply(err=f"{refused}\npbsnodes: cannot connect to server {server}, "
                         f"error={ECONNREFUSED} ({refused})\n", code=1)
    if command == "qmgr":
        return Reply(err=f"{refused}\nqmgr: cannot connect to server {server} "
                         f"(errno={ECONNREFUSED}) {refused}\n", code=3)
    return Reply(err=f"{refused}\n{command}: cannot connect to server {server} "
                     f"(errno={ECONNREFUSED}) {refused}\n", code=ECONNREFUSED)


def getopt(argv: list[str], spec: str) -> tuple[list[tuple[str, str]], list[str]]:
    """GNU getopt as Torque's clients use it: options may follow operands, ``--`` ends them.

    ``spec`` is getopt's: letters, with ``:`` after those that take a value. Raises
    ValueError(letter) for an unknown option or a missing value.
    """
    options: list[tuple[str, str]] = []
    operands: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            operands.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            continue
        j = 1
        while j < len(arg):
            letter = arg[j]
            at = spec.find(letter)
            if at == -1 or letter == ":":
                raise ValueError(letter)
            if spec[at + 1:at + 2] == ":":
                value = arg[j + 1:]
                if not value:
                    if i >= len(argv):
                        raise ValueError(letter)
                    value = argv[i]
                    i += 1
                options.append((letter, value))
                break
            options.append((letter, ""))
            j += 1
    return options, operands


def job_id(text: str, server: str) -> str:
    """A job id as given on a command line, completed with the server name (``12`` ->
    ``12.srv``)."""
    text = text.strip()
    return text if "." in text else f"{text}.{server}"


def run(command: str, script: str, argv: list[str],
        work: Callable[[Layout, list[str]], Reply]) -> int:
    """Run one sandbox command; returns its exit status."""
    layout = Layout.from_command(script)
    fault = faults.take(layout, command)
    if fault == "hang":
        faults.hang()
    server = server_name(layout)
    if fault == "fail" or not layout.exists() or not server_running(layout):
        reply = unreachable(command, server)
    else:
        try:
            reply = work(layout, argv)
        except KeyboardInterrupt:
            return 130
        except Exception as exc:  # a sandbox bug must not look like Torque output
            if os.environ.get("PHORQUE_SANDBOX_DEBUG"):
                raise
            reply = Reply(err=f"{command}: sandbox internal error: {type(exc).__name__}: {exc}\n",
                          code=1)
    out = reply.out
    if fault in ("truncate", "invalid") and out:
        out = faults.mangle(out, fault)
    try:
        if out:
            sys.stdout.write(out)
            sys.stdout.flush()
        if reply.err:
            sys.stderr.write(reply.err)
            sys.stderr.flush()
    except BrokenPipeError:
        pass
    return reply.code
