"""The sandbox's qrerun, as pbs_server 6.1.3 answers it (req_rerun.c)."""

from __future__ import annotations

import subprocess
import sys

from tests import waiting


def _running(sandbox, job: str) -> None:
    waiting.wait_for(lambda: sandbox.records("S", job), 30, f"{job} to start")


def test_qrerun_requeues_a_running_rerunnable_job_with_an_r_record(sandbox):
    job = sandbox.qsub("-l", "nodes=1:ppn=2", runtime=600)
    _running(sandbox, job)
    done = sandbox.run("qrerun", job)
    assert (done.returncode, done.stderr) == (0, "")
    assert sandbox.records("R", job)
    # Back to queued, then started again by the scheduler (one more S record, no new Q).
    waiting.wait_for(lambda: len(sandbox.records("S", job)) == 2, 30, "the job to start again")
    assert len(sandbox.records("Q", job)) == 1


def test_qrerun_refuses_what_pbs_server_refuses(sandbox):
    fixed = sandbox.qsub("-r", "n", "-l", "nodes=1:ppn=2", runtime=600)
    _running(sandbox, fixed)
    refused = sandbox.run("qrerun", "-f", fixed, check=False)
    assert refused.returncode == 192
    assert refused.stderr == f"qrerun: job is not rerunnable MSG=job {fixed} not rerunnable {fixed}\n"
    assert not sandbox.records("R", fixed)
    unknown = sandbox.run("qrerun", "999", check=False)
    assert (unknown.returncode, unknown.stderr) == (153, "qrerun: Unknown Job Id Error 999.srv.test\n")
    usage = sandbox.run("qrerun", check=False)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: qrerun")


def test_qrerun_needs_f_when_the_jobs_mom_is_down(sandbox):
    job = sandbox.qsub("-l", "nodes=1:ppn=4", runtime=600)
    _running(sandbox, job)
    (host,) = {t.split("=", 1)[1].split("/")[0] for t in sandbox.records("S", job)[0][3].split()
               if t.startswith("exec_host=")}
    stopped = subprocess.run([sys.executable, "-m", "phorque_testbed.sandbox.cli", "mom", str(sandbox.root),
                              host, "down"], capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    refused = sandbox.run("qrerun", job, check=False)
    assert refused.returncode == 224 and "Server could not connect to MOM" in refused.stderr
    forced = sandbox.run("qrerun", "-f", job)
    assert forced.returncode == 0 and sandbox.records("R", job)
