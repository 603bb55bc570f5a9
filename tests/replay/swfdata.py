"""Hand-made SWF traces for the replay tests."""

from __future__ import annotations

from pathlib import Path

from phorque.core.model import CloudState

HEADER = "; Version: 2.2\n; UnixStartTime: 1000000000\n; MaxProcs: {procs}\n"


def swf_line(number: int, submit: int, run: int, cores: int, req_time: int = -1, wait: int = -1,
             queue: int = 1, req_mem_kb: int = -1, used_mem_kb: int = -1) -> str:
    """One SWF job line with the 18 fields (memory in KB per processor)."""
    fields = [number, submit, wait, run, cores, -1, used_mem_kb, cores, req_time, req_mem_kb, 1, 1, 1, -1,
              queue, -1, -1, -1]
    return " ".join(str(f) for f in fields) + "\n"


def write_swf(path: Path, jobs: list[tuple[int, int, int, int]], procs: int = 4, extra: str = "") -> Path:
    """``jobs`` are ``(submit, run, cores, requested time)``, numbered from 1."""
    text = HEADER.format(procs=procs)
    text += "".join(swf_line(i, *job) for i, job in enumerate(jobs, 1))
    path.write_text(text + extra)
    return path


def one_cloud(price: float = 1.0, cores: int = 4, max_instances: int = 2, charge: int = 3600,
              boot: int = 100) -> CloudState:
    return CloudState(name="c", price=price, instance_cores=cores, max_instances=max_instances,
                      charge_time_secs=charge, boot_secs=boot)
