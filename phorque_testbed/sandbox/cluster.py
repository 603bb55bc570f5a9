"""Creating a sandbox cluster: the Torque-like tree, the commands and the first nodes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping

import phorque
from phorque_testbed.sandbox import hosts, jobfiles, nodeadmin, queues, store
from phorque_testbed.sandbox.engine import Engine
from phorque_testbed.sandbox.layout import COMMANDS, Layout

SCRIPT = '''#!{python} -S
"""Torque's `{name}` for a phorque-sandbox cluster (written by `phorque-sandbox init`).

A client, as the real one: it sends its arguments to the sandbox server and prints the answer.
Runs without site-packages (-S) so that it starts fast; Phorque is found at the path below.
"""
import sys
sys.path.insert(0, {package_parent!r})
from phorque_testbed.sandbox.wire import main
sys.exit(main({name!r}, __file__, sys.argv[1:]))
'''


class ClusterExists(Exception):
    """``init`` was pointed at a folder that already holds a sandbox cluster."""


def node_names(count: int) -> list[str]:
    """``node01``..``nodeNN`` (three digits from 100 nodes on)."""
    width = max(2, len(str(count)))
    return [f"node{i:0{width}d}" for i in range(1, count + 1)]


def write_commands(layout: Layout, python: str | None = None) -> None:
    """(Re)write ``bin/*`` for the given interpreter (default: the one running now)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(phorque.__file__)))
    os.makedirs(layout.bin, exist_ok=True)
    for name in COMMANDS:
        path = layout.command(name)
        with open(path + ".new", "w", encoding="utf-8") as handle:
            handle.write(SCRIPT.format(python=python or sys.executable, name=name,
                                       package_parent=package_parent))
        os.chmod(path + ".new", 0o755)
        os.replace(path + ".new", path)


def set_queue(layout: Layout, queue: str, **attributes: object) -> None:
    """Set queue attributes as ``qmgr -c "set queue QUEUE name = value"`` does (for kits and
    scripts that prepare a cluster before its server starts)."""
    with store.Session(layout) as session:
        engine = Engine(session)
        queues.set_attributes(engine, queue, [(k, "=", str(v)) for k, v in attributes.items()])


def init(root: str, nodes: int, np: int, server: str, settings: Mapping[str, object],
         properties: list[str] | None = None, gpus: int = 0, mem_mb: int = 0) -> Layout:
    """Create a cluster in ``root`` with ``nodes`` static nodes of ``np`` cores, ``gpus`` GPUs
    and ``mem_mb`` MiB of memory each (0: 2 GiB per core)."""
    layout = Layout(root)
    if layout.exists():
        raise ClusterExists(f"{layout.root} already holds a sandbox cluster")
    for path in (layout.accounting, layout.jobs, layout.arrays, layout.state_dir):
        os.makedirs(path, exist_ok=True)
    jobfiles.make_folders(layout)
    with open(layout.server_name_file, "w", encoding="utf-8") as handle:
        handle.write(server + "\n")
    hosts.add_names(layout, [])  # the sandbox's /etc/hosts: names qmgr create node accepts
    store.create(layout, {**settings, "server_name": server, "clock": repr(time.time())})
    with store.Session(layout) as session:
        engine = Engine(session)
        now = time.time()
        queues.create_batch(engine)
        for name in node_names(nodes):
            nodeadmin.create_node(engine, name, np, properties or [], now, boot="static",
                                  gpus=gpus, mem_kb=mem_mb * 1024)
        nodeadmin.write_nodes_file(engine)
    write_commands(layout)
    return layout
