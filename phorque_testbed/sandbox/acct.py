"""Accounting records, written as pbs_server 6.1 writes them (src/server/accounting.c).

A line is ``MM/DD/YYYY HH:MM:SS;T;JOBID;TEXT`` in the server's local time, appended to
``server_priv/accounting/YYYYMMDD`` named by the local date of the record. S and E texts are
``acct_job``'s: each pair followed by one space, so an S record ends with a space; E appends
``session total_execution_slots unique_node_count end``, then ``Exit_status=N`` and
`` resources_used.X=V`` pairs (each with a leading space), so an E record does not.
"""

from __future__ import annotations

import os
import time

from phorque_testbed.sandbox.layout import Layout
from phorque_testbed.sandbox.request import decode_resources, hms
from phorque_testbed.sandbox.rows import Record

QUEUE = "Q"
START = "S"
END = "E"
DELETE = "D"
ABORT = "A"
RERUN = "R"


def stamp(when: float) -> str:
    t = time.localtime(when)
    return (f"{t.tm_mon:02d}/{t.tm_mday:02d}/{t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}")


def file_name(when: float) -> str:
    """The accounting file a record written at ``when`` goes to (``YYYYMMDD``, local date)."""
    return time.strftime("%Y%m%d", time.localtime(when))


def line(when: float, kind: str, job_id: str, text: str) -> str:
    return f"{stamp(when)};{kind};{job_id};{text}\n"


def append(layout: Layout, records: list[tuple[float, str, str, str]]) -> None:
    """Append records, one ``write`` per line (as Torque's unbuffered ``fprintf``)."""
    fd = -1
    current = ""
    try:
        for when, kind, job_id, text in records:
            name = file_name(when)
            if name != current:
                if fd >= 0:
                    os.close(fd)
                fd = os.open(os.path.join(layout.accounting, name),
                             os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                current = name
            os.write(fd, line(when, kind, job_id, text).encode("utf-8", "replace"))
    finally:
        if fd >= 0:
            os.close(fd)


def job_text(job: Record) -> str:
    """``acct_job``: the common part of S and E records."""
    parts = [f"user={job['euser']}", f"group={job['egroup']}"]
    if job["account"]:
        parts.append(f"account={job['account']}")
    parts += [
        f"jobname={job['name']}",
        f"queue={job['queue']}",
        f"ctime={int(job['ctime'])}",
        f"qtime={int(job['qtime'])}",
        f"etime={int(job['etime'])}",
        f"start_count={job['start_count']}",
        f"start={int(job['start'] or 0)}",
        f"owner={job['owner']}",
    ]
    if job["exec_host"]:
        parts.append(f"exec_host={job['exec_host']}")
    parts += [f"Resource_List.{k}={v}" for k, v in decode_resources(job["resources"])]
    return " ".join(parts) + " "


def start_text(job: Record) -> str:
    return job_text(job)


def used(cores: int, walltime: float) -> list[tuple[str, str]]:
    """``resources_used`` of a job that ran ``walltime`` sandbox seconds on ``cores`` slots
    (busy on every core; memory grows with the cores)."""
    wall = int(walltime)
    return [
        ("cput", str(wall * cores)),
        ("energy_used", "0"),
        ("mem", f"{4096 + 1024 * cores}kb"),
        ("vmem", f"{65536 + 4096 * cores}kb"),
        ("walltime", hms(wall)),
    ]


def end_text(job: Record) -> str:
    """``account_jobend``: the S text plus session, slots, end, exit status and usage."""
    text = job_text(job)
    text += f"session={job['session']} "
    if job["exec_host"]:
        # counted when the slots were allocated, as add_procs_and_nodes_used counts exec_host
        text += f"total_execution_slots={job['slots']} unique_node_count={job['hosts']} "
    text += f"end={int(job['comp_time'])} "
    text += f"Exit_status={job['exit_status']}"
    usage = used(job["slots"] or 0, job["used_walltime"] or 0)
    text += "".join(f" resources_used.{k}={v}" for k, v in usage)
    return text
