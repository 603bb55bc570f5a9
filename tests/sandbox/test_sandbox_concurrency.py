"""Many commands at once never lose or corrupt a job: every change is made under one lock."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

from phorque.adapters.torque import xmlparse

SUBMISSIONS = 160


def test_concurrent_qsubs_and_readers(make_sandbox):
    sb = make_sandbox(nodes=2, np=4, speed=20, keep_completed=600)

    def submit(i: int) -> str:
        args = ["-N", f"job{i}"] + (["-l", "nodes=1:ppn=2"] if i % 3 == 0 else [])
        return sb.qsub(*args, runtime=1 + i % 4)

    def read(i: int) -> int:
        command = ("qstat", "-f", "-x", "-t") if i % 2 else ("pbsnodes", "-x")
        result = sb.run(*command)
        assert result.returncode == 0, result.stderr
        return len(result.stdout)

    with ThreadPoolExecutor(max_workers=24) as pool:
        readers = [pool.submit(read, i) for i in range(40)]
        ids = list(pool.map(submit, range(SUBMISSIONS)))
        assert all(r.result() > 0 for r in readers)

    numbers = sorted(int(job.split(".")[0]) for job in ids)
    assert numbers == list(range(SUBMISSIONS))  # every qsub got its own id, none was lost
    assert sorted(r[2] for r in sb.records("Q")) == sorted(ids)
    assert {f"{job}.JB" for job in ids} <= sb.job_files()

    sb.wait_for(lambda: len(sb.records("E")) == SUBMISSIONS, timeout=60, what="every job to end")
    body = sb.run("qstat", "-f", "-x", "-t", check=True).stdout.split("\n")[1]
    jobs = ET.fromstring(xmlparse.sanitize(body))
    assert len(jobs) == SUBMISSIONS and {j.findtext("job_state") for j in jobs} == {"C"}
    assert sorted(r[2] for r in sb.records("S")) == sorted(ids)
    names = {j.findtext("Job_Id"): j.findtext("Job_Name") for j in jobs}
    assert all(names[job] == f"job{i}" for i, job in enumerate(ids))
