"""Huge inputs, and the peak memory of reading them, measured in a fresh process.

Generators write an accounting log of a given size (realistic lines, or one line without end) and
a ``qstat -f -x -t`` answer of N jobs with variable lists of a given size; a scripted ``qstat``
streams that file as the real one would. ``measure_in_child`` reads an input in a new Python
process and reports its peak resident memory (``ru_maxrss``), so the figure is the reader's own.

    python -m tests.hostile.huge KIND PATH      # prints one JSON object; KIND as in READERS
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER = "torque01.hpc.example.org"


def _accounting_block(first: int, jobs: int) -> bytes:
    lines = []
    for n in range(first, first + jobs):
        job = f"{n}.{SERVER}"
        lines.append(f"11/25/2026 09:{n % 60:02d}:{n % 60:02d};Q;{job};queue=batch")
        common = (f"user=u{n % 900:04d} group=hpc jobname=run-{n} queue=batch ctime=1764057600 "
                  f"qtime=1764057600 etime=1764057600 start=1764057660 owner=u{n % 900:04d}@login01 "
                  f"exec_host=node{n % 400:04d}.{SERVER}/0-15+node{(n + 1) % 400:04d}.{SERVER}/0-15 "
                  f"Resource_List.nodes=2:ppn=16 Resource_List.walltime=04:00:00 "
                  f"Resource_List.nodect=2 Resource_List.neednodes=2:ppn=16")
        lines.append(f"11/25/2026 09:{n % 60:02d}:{n % 60:02d};S;{job};{common} ")
        lines.append(f"11/25/2026 10:{n % 60:02d}:{n % 60:02d};E;{job};{common} session={n} "
                     f"total_execution_slots=32 unique_node_count=2 end=1764061200 Exit_status=0 "
                     f"resources_used.cput=115200 resources_used.mem=4194304kb "
                     f"resources_used.walltime=01:00:00")
    return ("\n".join(lines) + "\n").encode()


def write_accounting(path: Path, size: int, newlines: bool = True) -> int:
    """An accounting file of about ``size`` bytes; returns its number of lines.

    Without ``newlines`` the file is one line that never ends, as a broken writer might leave.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    block = _accounting_block(0, 1000) if newlines else b"x" * (1 << 20)
    count = max(1, size // len(block))
    with open(path, "wb") as out:
        for _ in range(count):
            out.write(block)
    return block.count(b"\n") * count


def write_qstat(path: Path, jobs: int, variables: int = 200) -> int:
    """``qstat -f -x -t`` of ``jobs`` jobs (half queued, half running) with a Variable_List of
    about ``variables`` bytes each, as one line the way Torque prints it; returns its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    filler = ("PBS_O_PATH=/usr/local/bin:/usr/bin:/bin,HOME=/home/u,X=" + "v" * variables)[:max(variables, 1)]
    with open(path, "wb") as out:
        out.write(b'<?xml version="1.0"?>\n<Data>')
        batch = []
        for n in range(jobs):
            running = n % 2 == 1
            state = "R" if running else "Q"
            extra = (f"<exec_host>node{n % 400:04d}/0-7</exec_host><start_time>1764057660</start_time>"
                     if running else "")
            batch.append(
                f"<Job><Job_Id>{n}.{SERVER}</Job_Id><Job_Name>run-{n}</Job_Name>"
                f"<Job_Owner>u{n % 900:04d}@login01</Job_Owner><job_state>{state}</job_state>"
                f"<queue>batch</queue><Resource_List><nodes>1:ppn=8</nodes><walltime>04:00:00</walltime>"
                f"</Resource_List><Variable_List>{filler}</Variable_List><qtime>1764057600</qtime>"
                f"{extra}<Walltime><Remaining>14400</Remaining></Walltime></Job>")
            if len(batch) == 100:
                out.write("".join(batch).encode())
                batch = []
        out.write("".join(batch).encode())
        out.write(b"</Data>\n")
    return path.stat().st_size


QSTAT = """#!{python}
import shutil, sys
if sys.argv[1:] != ["-f", "-x", "-t"]:
    sys.exit("unexpected arguments: " + repr(sys.argv[1:]))
with open({source!r}, "rb") as data:
    shutil.copyfileobj(data, sys.stdout.buffer, 1 << 20)
"""


def fake_qstat(root: Path, source: Path) -> Path:
    """``root/bin/qstat`` that streams ``source`` (never holding it whole); returns ``root``."""
    (root / "bin").mkdir(parents=True, exist_ok=True)
    script = root / "bin" / "qstat"
    script.write_text(QSTAT.format(python=sys.executable, source=str(source)))
    script.chmod(0o755)
    return root


def _read_parse_file(path: str) -> dict:
    from phorque.adapters.torque.accounting import AccountingParser

    parser = AccountingParser(log_limit=0)
    records = sum(1 for _ in parser.parse_file(path))
    return {"records": records, "bad": parser.bad}


def _read_tailer(path: str) -> dict:
    from phorque.adapters.torque.accounting import AccountingParser
    from phorque.adapters.torque.tailer import AccountingTailer

    tailer = AccountingTailer(os.path.dirname(path), from_start=True, parser=AccountingParser(log_limit=0))
    records = 0
    while batch := tailer.poll(limit=1000):
        records += len(batch)
    return {"records": records, "bad": tailer.parser.bad}


def _read_qstat(root: str) -> dict:
    from phorque.adapters.torque.commands import Torque

    jobs = Torque(root, timeout=3600).jobs()  # kept, as a snapshot keeps them
    return {"jobs": len(jobs), "queued": sum(1 for j in jobs if j.is_queued)}


READERS = {"parse_file": _read_parse_file, "tailer": _read_tailer, "qstat": _read_qstat}


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB.

    ``VmHWM`` where Linux has it: ``ru_maxrss`` survives ``exec``, so a child would report the
    peak of the process it was forked from.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(kind: str, path: str) -> dict:
    """Read ``path`` with the reader ``kind`` in this process; its figures and peak memory."""
    import logging

    logging.disable(logging.WARNING)  # the figures, not one warning per skipped line
    import phorque.adapters.torque.commands  # noqa: F401  (imports are not part of the reading)
    import phorque.adapters.torque.tailer  # noqa: F401

    before = peak_rss_mib()
    started = time.perf_counter()
    out = READERS[kind](path)
    out["seconds"] = round(time.perf_counter() - started, 2)
    out["baseline_mib"] = before
    out["peak_mib"] = peak_rss_mib()
    return out


def measure_in_child(kind: str, path: Path, timeout: float = 600) -> dict:
    """:func:`measure` in a fresh interpreter, so earlier work does not count."""
    done = subprocess.run([sys.executable, "-m", "tests.hostile.huge", kind, str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{kind} {path}: exit {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2])))
