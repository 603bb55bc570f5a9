"""What qstat and pbsnodes print, byte for byte as Torque 6.1's clients (src/cmds/qstat.c,
pbsnodes.c).

- ``-x`` output is ``<?xml version="1.0"?>`` and one line of XML built by MXML, which escapes
  nothing itself: ``qstat -x`` values come escaped from pbs_server 6.1.3 (``&amp; &lt; &gt;
  &apos; &quot;``); ``pbsnodes -x`` values are written raw, ``<`` as byte 0x0e.
- ``qstat -f`` prints ``    name[.res] = value`` lines wrapped at 77 columns on commas
  (``prt_attr``), times as ``ctime()`` strings, and a blank line after each job.
- ``qstat -a`` prints fixed-width, truncating columns (``altdsp_statjob``).
- ``pbsnodes -a`` prints the name, ``     attr = value`` lines and a blank line per node.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

from phorque_testbed.sandbox.request import duration, hms

Attr = tuple[str, "str | None", str]

XML_HEADER = '<?xml version="1.0"?>\n'
LINESIZE = 77
MAX_LINESIZE = 65536
TIME_ATTRIBUTES = frozenset({"ctime", "etime", "mtime", "qtime", "start_time", "comp_time",
                             "checkpoint_time", "Execution_Time"})
BLANK = " -- "


def xml_escape(value: str) -> str:
    """A job's value as pbs_server 6.1.3 hands it to qstat for ``-x``: escaped for XML
    (``&amp; &lt; &gt; &apos; &quot;``), as the real captures show."""
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


def mxml_value(value: str) -> str:
    """A value as MXMLSetVal stores it: ``<`` replaced by byte 14, nothing escaped."""
    return value.replace("<", "\x0e")


def grouped(attrs: Sequence[Attr]) -> list[tuple[str, str | list[tuple[str, str]]]]:
    """Attributes as XML nests them: ``(name, value)``, or ``(name, [(resource, value)...])``
    for a run of resource attributes (``Resource_List``, ``resources_used``, ``Walltime``)."""
    out: list[tuple[str, str | list[tuple[str, str]]]] = []
    for name, res, value in attrs:
        if res is None:
            out.append((name, value))
        elif out and out[-1][0] == name and isinstance(out[-1][1], list):
            out[-1][1].append((res, value))
        else:
            out.append((name, [(res, value)]))
    return out


def _xml_attrs(attrs: Sequence[Attr], encode=mxml_value) -> str:
    out = []
    for name, value in grouped(attrs):
        if isinstance(value, str):
            out.append(f"<{name}>{encode(value)}</{name}>")
        else:
            inner = "".join(f"<{res}>{encode(v)}</{res}>" for res, v in value)
            out.append(f"<{name}>{inner}</{name}>")
    return "".join(out)


def jobs_xml(jobs: Iterable[tuple[str, Sequence[Attr]]]) -> str:
    """``qstat -x``/``-f -x``: ``<Data><Job><Job_Id>…</Job_Id>…</Job></Data>`` on one line."""
    body = "".join(f"<Job><Job_Id>{xml_escape(job_id)}</Job_Id>{_xml_attrs(attrs, xml_escape)}</Job>"
                   for job_id, attrs in jobs)
    return f"{XML_HEADER}<Data>{body}</Data>\n"


def nodes_xml(nodes: Iterable[tuple[str, Sequence[Attr]]]) -> str:
    """``pbsnodes -x``: ``<Data><Node><name>…</name>…</Node></Data>`` on one line."""
    body = "".join(f"<Node><name>{mxml_value(name)}</name>{_xml_attrs(attrs)}</Node>"
                   for name, attrs in nodes)
    return f"<Data>{body}</Data>\n"


def prt_attr(name: str, res: str | None, value: str, linesize: int = LINESIZE) -> str:
    """One ``qstat -f`` attribute line, wrapped as ``prt_attr`` wraps it."""
    out = ["    ", name]
    start = len(name) + 7
    if res is not None:
        start += len(res) + 1
        out.append("." + res)
    out.append(" = ")
    tokens = [t for t in value.split(",") if t]  # strtok skips empty fields
    first = True
    for i, token in enumerate(tokens):
        if len(token) + start < linesize:
            out.append(token)
            start += len(token)
        else:
            if not first:
                out.append("\n\t")
                start = 9
            for ch in token:
                out.append(ch)
                start += 1
                if start > linesize:
                    start = 8
                    out.append("\n\t")
        if i + 1 < len(tokens):
            first = False
            out.append(",")
    return "".join(out)


def jobs_full(jobs: Iterable[tuple[str, Sequence[Attr]]], wrap: bool = True) -> str:
    """``qstat -f``: one block per job, each followed by a blank line."""
    linesize = LINESIZE if wrap else MAX_LINESIZE
    out = []
    for job_id, attrs in jobs:
        out.append(f"Job Id: {job_id}\n")
        for name, res, value in attrs:
            if name in TIME_ATTRIBUTES and res is None:
                out.append(prt_attr(name, res, time.ctime(int(value)) + "\n", linesize))
            else:
                out.append(prt_attr(name, res, value, linesize) + "\n")
        out.append("\n")
    return "".join(out)


def _find(attrs: Sequence[Attr], name: str, res: str | None = None) -> str | None:
    for n, r, v in attrs:
        if n == name and r == res:
            return v
    return None


def _tasks(attrs: Sequence[Attr]) -> str:
    """TSK: Σ N×ppn over the ``nodes`` parts, else ``procs``, else ``ncpus`` (qstat's rule)."""
    nodes = _find(attrs, "Resource_List", "nodes")
    if nodes:
        from phorque.adapters.torque.resources import count_proc
        tasks = count_proc(nodes)
        if tasks:
            return str(tasks)
    for key in ("procs", "ncpus"):
        value = _find(attrs, "Resource_List", key)
        if value and value != "0":
            return value
    return BLANK


def jobs_alt(server: str, jobs: Sequence[tuple[str, Sequence[Attr]]]) -> str:
    """``qstat -a``; prints nothing at all when there are no jobs."""
    if not jobs:
        return ""
    out = [
        f"\n{server}: ",
        "\n                                                                                  Req'd       Req'd       Elap",
        "\nJob ID                  Username    Queue    Jobname          SessID  NDS   TSK   Memory      Time    S   Time",
        "\n----------------------- ----------- -------- ---------------- ------ ----- ------ --------- --------- - ---------\n",
    ]
    for job_id, attrs in jobs:
        state = _find(attrs, "job_state") or BLANK
        walltime = _find(attrs, "Resource_List", "walltime")
        elapsed = BLANK
        if state not in ("Q", "C", "H"):
            limit = duration(walltime) if walltime else 0
            elapsed = hms(limit - int(_find(attrs, "Walltime", "Remaining") or 0))
        memory = BLANK
        for key in ("mem", "pmem", "vmem"):  # the alphabetically last one wins, as in qstat
            memory = _find(attrs, "Resource_List", key) or memory
        user = (_find(attrs, "Job_Owner") or "").split("@", 1)[0]
        # printf("%-23.22s %-11.11s %-8.8s %-16.16s %6.6s %5.5s %*.*s %9.9s %9.9s %1.1s %9.9s")
        out.append(f"{job_id:<23.22} {user:<11.11} {_find(attrs, 'queue') or '':<8.8} "
                   f"{_find(attrs, 'Job_Name') or '':<16.16} "
                   f"{_find(attrs, 'session_id') or BLANK:>6.6} "
                   f"{_find(attrs, 'Resource_List', 'nodect') or BLANK:>5.5} "
                   f"{_tasks(attrs):>6.6} {memory:>9.9} {walltime or BLANK:>9.9} {state:>1.1} "
                   f"{elapsed:>9.9}\n")
    return "".join(out)


def jobs_summary(jobs: Sequence[tuple[str, Sequence[Attr]]]) -> str:
    """Plain ``qstat``: the summary table (header once, before the first job)."""
    if not jobs:
        return ""
    out = ["Job ID                    Name             User            Time Use S Queue\n",
           "------------------------- ---------------- --------------- -------- - -----\n"]
    for job_id, attrs in jobs:
        jid = job_id[:29] if len(job_id) > 23 else job_id
        name = _find(attrs, "Job_Name") or ""
        if len(name) > 16:
            cut = len(name) - 16 + 3
            slash = name.find("/", cut)
            name = "..." + (name[slash:] if slash != -1 else name[cut:])
            name = name[:16]
        owner = (_find(attrs, "Job_Owner") or "").split("@", 1)[0][:15]
        used = (_find(attrs, "resources_used", "cput") or "0")[:8]
        state = (_find(attrs, "job_state") or "")[:1]
        queue = (_find(attrs, "queue") or "").split("@", 1)[0][:15]
        out.append(f"{jid:<26} {name:<16} {owner:<15} {used:>8} {state:>1} {queue:<15}\n")
    return "".join(out)


def nodes_plain(nodes: Iterable[tuple[str, Sequence[Attr]]]) -> str:
    """``pbsnodes`` / ``pbsnodes -a``."""
    out = []
    for name, attrs in nodes:
        out.append(f"{name}\n")
        for attr, _res, value in attrs:
            if value.startswith("?"):
                continue
            out.append(f"     {attr} = {value}\n")
        out.append("\n")
    return "".join(out)


def nodes_list(nodes: Iterable[tuple[str, Mapping[str, str]]], with_notes: bool) -> str:
    """``pbsnodes -l [-n]``: ``%-20.20s %s`` (name, state), with the note under ``-n``."""
    out = []
    for name, info in nodes:
        note = info.get("note")
        if with_notes and note:
            out.append(f"{name:<20.20} {info['state']:<26.26} {note}\n")
        else:
            out.append(f"{name:<20.20} {info['state']}\n")
    return "".join(out)
