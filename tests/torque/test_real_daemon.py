"""The daemon end to end on a real pbs_server, pbs_sched and pbs_moms, with a moto server as the
cloud: instances join as real moms, run real jobs, are drained at their charge boundary,
terminated and removed from Torque; a job that lands between the drain decision and the
terminate is never killed."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import boto3

from tests import waiting
from tests.integration.faultkit import start_daemon
from tests.integration.kit import conf_text
from tests.torque.torquekit import BASE_MOMS, CloudMoms, PeakDesired

GROUP = "phorque-e2e"


def _asg(moto: str):
    return boto3.client("autoscaling", endpoint_url=moto, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _desired(moto: str) -> int:
    groups = _asg(moto).describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"]
    return groups[0]["DesiredCapacity"] if groups else 0


def _fill_static_nodes(real_torque) -> list[str]:
    blockers = [real_torque.qsub("-l", "nodes=1:ppn=2", script="sleep 600\n") for _ in BASE_MOMS]
    real_torque.wait_jobs(blockers, "R")
    return blockers


def test_an_instance_joins_as_a_mom_runs_jobs_and_leaves_at_its_charge_boundary(real_torque, moto, tmp_path):
    _fill_static_nodes(real_torque)
    text = conf_text(tmp_path, real_torque, moto, cores=2, max_instances=4, charge=60, margin=40,
                     loop_sleep=10, boot_timeout=300, budget="10")
    with PeakDesired(moto, [GROUP]) as peak, CloudMoms(real_torque, moto, GROUP) as moms:
        daemon = start_daemon(tmp_path, text)
        try:
            # Two short jobs one after the other on the one node they fit: one instance.
            first = real_torque.qsub("-l", "nodes=1:ppn=2", script="sleep 5\n")
            waiting.wait_for(lambda: real_torque.exit_status(first) is not None, 300,
                             "the job to run on a cloud node and end", interval=0.5)
            cloud_nodes = set(moms.started)
            assert len(cloud_nodes) == 1, moms.errors
            (node,) = cloud_nodes
            second = real_torque.qsub("-l", "nodes=1:ppn=2", script="sleep 2\n")
            waiting.wait_for(lambda: real_torque.exit_status(second) is not None, 120,
                             "the second job on the same cloud node", interval=0.5)
            for job in (first, second):
                assert real_torque.exit_status(job) == 0
                assert f"exec_host={node}/" in real_torque.records("S", job)[0][3]
            # Idle, it is drained before its charge boundary, terminated and removed.
            waiting.wait_for(lambda: _desired(moto) == 0 and node not in real_torque.nodes(), 300,
                             "the idle instance terminated and its node removed", interval=0.5)
        finally:
            daemon.stop()
    # A new node is down,offline,MOM-list-not-sent for ~10 s: that offline is Torque's, and
    # taking it for an administrator's launched again after every join.
    assert peak.value[GROUP] == 1, daemon.text()
    assert set(real_torque.nodes()) == set(BASE_MOMS)
    log = daemon.text()
    assert "Traceback" not in log
    assert f"remove {node}" in log and "drain" in log


RACE_WRAPPER = """#!{python}
# pbsnodes for the test: right before the daemon offlines a cloud node to drain it, start the
# job waiting in the stopped queue "race" on that node (qrun), as pbs_sched might at that moment.
import os, subprocess, sys
real = {real!r}
args = sys.argv[1:]
flag = {flag!r}
if "-o" in args and os.path.exists(flag):
    node = args[-1]
    job = open(flag).read().strip()
    os.unlink(flag)
    qmgr, qrun = os.path.join({bindir!r}, "qmgr"), os.path.join({bindir!r}, "qrun")
    subprocess.run([qmgr, "-c", "set queue race started = true"], check=True, timeout=60)
    subprocess.run([qrun, "-H", node, job], check=True, timeout=60)
    open(flag + ".done", "w").write(node)
os.execv(real, [real] + args)
"""


def _wrapped_commands(real_torque, folder: Path, flag: Path) -> Path:
    bindir = Path(real_torque.cluster_directory) / "bin"
    (folder / "bin").mkdir(parents=True)
    for name in ("qstat", "qmgr"):
        os.symlink(bindir / name, folder / "bin" / name)
    wrapper = folder / "bin" / "pbsnodes"
    wrapper.write_text(RACE_WRAPPER.format(python=sys.executable, real=str(bindir / "pbsnodes"),
                                           flag=str(flag), bindir=str(bindir)))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def test_a_job_that_lands_between_drain_decision_and_terminate_is_never_killed(real_torque, moto, tmp_path):
    _fill_static_nodes(real_torque)
    # The racing job waits in a queue Phorque does not count, stopped so pbs_sched leaves it.
    real_torque.qmgr("create queue race")
    for directive in ("set queue race queue_type = execution", "set queue race enabled = true",
                      "set queue race started = false"):
        real_torque.qmgr(directive)
    racer = real_torque.qsub("-q", "race", "-l", "nodes=1:ppn=1", script="sleep 20\n")
    flag = tmp_path / "race-job"
    wrapped = _wrapped_commands(real_torque, tmp_path / "torque", flag)

    class Where:
        cluster_directory = str(wrapped)
        torque_home = real_torque.torque_home
        root = str(wrapped)

    text = conf_text(tmp_path, Where, moto, cores=2, max_instances=1, charge=60, margin=40,
                     loop_sleep=10, boot_timeout=300, budget="10")
    text = text.replace("[Phorque]\n", "[Phorque]\nqueue_name = batch\n", 1)
    try:
        with CloudMoms(real_torque, moto, GROUP) as moms:
            daemon = start_daemon(tmp_path, text)
            try:
                job = real_torque.qsub("-l", "nodes=1:ppn=2", script="sleep 3\n")
                waiting.wait_for(lambda: real_torque.exit_status(job) is not None, 300,
                                 "the job on the cloud node to end", interval=0.5)
                flag.write_text(racer)  # armed: the next drain's offline starts the racer first
                waiting.wait_for(lambda: (tmp_path / "race-job.done").exists(), 300,
                                 "the daemon to drain the idle cloud node", interval=0.5)
                node = (tmp_path / "race-job.done").read_text()
                assert node in moms.started
                # The racer runs to its end on that node: it was not killed by a terminate.
                waiting.wait_for(lambda: real_torque.exit_status(racer) is not None, 300,
                                 "the racing job to end", interval=0.5)
                assert real_torque.exit_status(racer) == 0
                started = real_torque.records("S", racer)[0][3]
                assert f"exec_host={node}/" in started
                # Then, idle again, the instance goes.
                waiting.wait_for(lambda: _desired(moto) == 0 and node not in real_torque.nodes(), 300,
                                 "the instance terminated after the racer ended", interval=0.5)
            finally:
                daemon.stop()
        assert "a job started on it; put back in service" in daemon.text()
    finally:
        real_torque.run("qdel", "-p", racer)
        real_torque.cluster.qmgr("delete queue race", check=False)
