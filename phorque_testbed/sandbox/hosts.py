"""Which node names resolve, as pbs_server needs them to for ``qmgr create node``.

A real pbs_server refuses a node whose name it cannot resolve (``qmgr obj=NAME svr=default:
Unknown node ``, exit 2). In the sandbox a name resolves when:

- it is listed in ``DIR/sandbox/hosts`` (the sandbox's ``/etc/hosts``): lines of names, with an
  optional address first and ``#`` comments; a name may be a shell pattern
  (``*.compute-1.amazonaws.com``) standing for a DNS zone that resolves every name in it;
- in cloud boot mode, a live instance has it as its public or private DNS name (the cloud's
  DNS); the server's poller keeps those in ``cloud_names``, and a name not seen yet is looked
  up once more at the endpoint before it is refused;
- or the machine resolves it (``socket.getaddrinfo``).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import socket
from collections.abc import Iterable

from phorque_testbed.sandbox.layout import Layout

HEADER = ("# Node names pbs_server can resolve (the sandbox's /etc/hosts): one or more names a line,\n"
          "# an address first if you like; shell patterns (*.example.com) stand for a DNS zone.\n")


def read_names(layout: Layout) -> list[str]:
    """The names and patterns in the hosts file (none when it is missing)."""
    try:
        with open(layout.hosts, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    names = []
    for line in lines:
        words = line.split("#", 1)[0].split()
        if words and _is_address(words[0]):
            words = words[1:]
        names += words
    return names


def _is_address(word: str) -> bool:
    try:
        ipaddress.ip_address(word)
    except ValueError:
        return False
    return True


def add_names(layout: Layout, names: Iterable[str]) -> None:
    """Append names (or patterns) to the hosts file, creating it with its header."""
    new = [n for n in names if n]
    exists = os.path.exists(layout.hosts)
    with open(layout.hosts, "a", encoding="utf-8") as handle:
        if not exists:
            handle.write(HEADER)
        handle.writelines(f"{name}\n" for name in new)


def listed(names: Iterable[str], name: str) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in names)


def machine_resolves(name: str) -> bool:
    try:
        socket.getaddrinfo(name, None)
    except (OSError, UnicodeError):
        return False
    return True
