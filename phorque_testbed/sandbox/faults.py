"""Fault injection, a testing aid: make the next calls of a command misbehave.

``DIR/sandbox/faults.json`` maps a command name to a fault::

    {"qstat":    {"mode": "truncate", "count": 2},
     "pbsnodes": {"mode": "hang"}}

Modes:

- ``fail``: the command cannot reach the server (the message and exit status of a real
  client whose pbs_server is down);
- ``hang``: the command never answers, until it is killed;
- ``truncate``: the output stops halfway (no closing tags), exit status 0;
- ``invalid``: the output is XML with a broken tag, exit status 0;
- ``partial``: well-formed XML that lacks its last ``<Job>`` or ``<Node>``, exit status 0 (an
  answer that cannot be told from a true one: what a client must survive without acting on).

``count`` is how many calls are affected (every call while the entry exists when it is left
out); each affected call uses one up, and a used-up entry is removed. Write the file by hand or
with ``phorque-sandbox fault DIR COMMAND MODE [--count N]``; ``phorque-sandbox fault DIR
--clear`` removes it.
"""

from __future__ import annotations

import fcntl
import os
import time

from phorque_testbed.sandbox.layout import Layout

MODES = ("fail", "hang", "truncate", "invalid", "partial")


def take(layout: Layout, command: str) -> str | None:
    """The fault this call of ``command`` suffers, if any (using up one of its count)."""
    if not os.path.exists(layout.faults):
        return None
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        table = read(layout)
        entry = table.get(command)
        if not isinstance(entry, dict) or entry.get("mode") not in MODES:
            return None
        count = entry.get("count")
        if count is not None:
            if int(count) <= 0:
                return None
            if int(count) == 1:
                del table[command]
            else:
                entry["count"] = int(count) - 1
            write(layout, table)
        return str(entry["mode"])
    finally:
        os.close(fd)


def read(layout: Layout) -> dict:
    """The fault table; empty when there is none or it cannot be read (it injects nothing)."""
    import json  # only when faults are injected
    try:
        with open(layout.faults, encoding="utf-8") as handle:
            table = json.load(handle)
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def write(layout: Layout, table: dict) -> None:
    """Replace the fault table (atomically); an empty table removes the file."""
    if not table:
        try:
            os.unlink(layout.faults)
        except FileNotFoundError:
            pass
        return
    import json
    temporary = layout.faults + ".new"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(table, handle)
    os.replace(temporary, layout.faults)


def hang() -> None:
    """Never return (a command stuck on a server that does not answer)."""
    while True:
        time.sleep(3600)


def mangle(output: str, mode: str) -> str:
    """Truncated, invalid or partial XML made from a command's real output."""
    if mode == "truncate":
        return output[: max(1, len(output) // 2)]
    if mode == "partial":
        for tag in ("Job", "Node"):
            start = output.rfind(f"<{tag}>")
            end = output.find(f"</{tag}>", start)
            if start >= 0 and end >= 0:
                return output[:start] + output[end + len(tag) + 3:]
        return output
    for closing in ("</Job>", "</Node>"):
        if closing in output:
            return output.replace(closing, closing[:-1] + "x>", 1)
    return output.replace("</Data>", "<Broken></Data>", 1) if "</Data>" in output else "<Data><Broken>\n"
