"""A node's attributes as pbs_server reports them to pbsnodes, in Torque 6.1's order.

Order (``ND_ATR_*`` in pbs_nodes.h): ``state, power_state, np, properties, ntype, jobs, status,
note, mom_service_port, mom_manager_port, gpus``; ``gpus`` only on a node that has some
(``status_nodeattrib`` skips it at 0), and no ``gpu_status``, which only a mom built with NVIDIA
support reports. The state is a comma-joined set in
``encode_state``'s order (``state-unknown, down, offline, reserve, job-exclusive, busy``),
``free`` when no bit is set; a node is ``job-exclusive`` when every slot is in use. A node
created a moment ago is ``down,offline,MOM-list-not-sent`` until its moms have the node list. ``status``
is what a pbs_mom reports, so a node whose mom has never reported (a booting cloud node) has
none. The mom reports the node's memory as ``physmem``/``totmem`` and what its jobs leave as
``availmem``: the memory the node was given (``phorque-sandbox init --mem-mb``), else 2 GiB per
core.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

from phorque_testbed.sandbox.placement import node_jobs

Attr = tuple[str, "str | None", str]

STATE_ORDER = ("state-unknown", "down", "offline", "reserve", "job-exclusive", "busy")
MOM_VERSION = "6.1.3"


NOT_SENT_WORDS = ["down", "offline", "MOM-list-not-sent"]


def state_words(node: Mapping, used: int, now: float) -> list[str]:
    if node["listed_at"] is not None and now < node["listed_at"]:
        return list(NOT_SENT_WORDS)  # just created: the moms do not have the node list yet
    bits = set()
    if not node["up"]:
        bits.add("down")
    if node["offline"]:
        bits.add("offline")
    if node["np"] > 0 and used >= node["np"]:
        bits.add("job-exclusive")
    return [w for w in STATE_ORDER if w in bits] or ["free"]


def _mac(name: str) -> str:
    value = zlib.crc32(name.encode()) << 8 | (zlib.adler32(name.encode()) & 0xFF)
    return "02:" + ":".join(f"{(value >> shift) & 0xFF:02x}" for shift in (32, 24, 16, 8, 0))


#: A node's memory when none was given: 2 GiB per core, in kB.
DEFAULT_KB_PER_CORE = 2097152


def memory_kb(node: Mapping) -> int:
    """The physical memory a node's pbs_mom reports, in kB."""
    return node["mem_kb"] or DEFAULT_KB_PER_CORE * max(1, node["np"])


def mom_status(node: Mapping, jobs: Sequence[str], sessions: Sequence[int], now: float) -> str:
    """The status line a pbs_mom 6.1 reports (same keys and order as a real one)."""
    np = node["np"]
    idle = int(now - (node["up_since"] or now))
    total_kb = memory_kb(node)
    fields = [
        ("opsys", "linux"),
        ("uname", f"Linux {node['name']} 4.18.0-sandbox #1 SMP x86_64"),
        # a mom without sessions reports "? 0", as pbs_mom does
        ("sessions", " ".join(str(s) for s in sessions) or "? 0"),
        ("nsessions", str(len(sessions)) if sessions else "? 0"),
        ("nusers", "1" if sessions else "0"),
        ("idletime", str(idle)),
        ("totmem", f"{total_kb}kb"),
        ("availmem", f"{max(0, total_kb - 65536 * len(sessions))}kb"),
        ("physmem", f"{total_kb}kb"),
        ("ncpus", str(np)),
        ("loadave", f"{float(len(sessions)):.2f}"),
        ("gres", ""),
        ("netload", "0"),
        ("state", "free"),
        ("varattr", ""),
        ("cpuclock", "Fixed"),
        ("macaddr", _mac(node["name"])),
        ("version", MOM_VERSION),
        ("rectime", str(int(now))),
        ("jobs", " ".join(jobs)),
    ]
    return ",".join(f"{k}={v}" for k, v in fields)


def node_attributes(node: Mapping, alloc: Sequence[tuple[str, Sequence[int]]],
                    sessions: Sequence[int], now: float) -> list[Attr]:
    """The attributes of one node; ``alloc`` lists ``(job id, slots)`` in the order the jobs
    started."""
    used = sum(len(slots) for _job, slots in alloc)
    out: list[Attr] = [
        ("state", None, ",".join(state_words(node, used, now))),
        ("power_state", None, "Running"),
        ("np", None, str(node["np"])),
    ]
    if node["properties"]:
        out.append(("properties", None, node["properties"]))
    out.append(("ntype", None, "cluster"))
    if alloc:
        out.append(("jobs", None, node_jobs(alloc)))
    if node["up"]:
        out.append(("status", None, mom_status(node, [j for j, _ in alloc], sessions, now)))
    if node["note"]:
        out.append(("note", None, node["note"]))
    out += [
        ("mom_service_port", None, "15002"),
        ("mom_manager_port", None, "15003"),
    ]
    if node["gpus"]:
        out.append(("gpus", None, str(node["gpus"])))
    return out
