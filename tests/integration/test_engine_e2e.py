"""End to end: the engine with the Torque sandbox and a moto server on 127.0.0.1.

Jobs queue, instances launch, nodes join, jobs run, idle instances are drained and terminated at
their charge boundary; no job is killed, static nodes and an administrator's offline node are
never touched, and the executor refuses to terminate a node that runs a job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import boto3

from phorque.act.engine import Engine
from phorque.adapters.config import load_config
from phorque.core.model import Stage
from phorque.core.plan import Kind, Plan
from phorque.policy.common import retire
from phorque.policy.view import View
from tests.integration.kit import conf_text, e2e_config, exit_statuses, wait_until


def group(moto: str, name: str = "phorque-e2e") -> dict:
    client = boto3.client("autoscaling", endpoint_url=moto, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    (found,) = client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return found


def live_instances(moto: str) -> list[dict]:
    ec2 = boto3.client("ec2", endpoint_url=moto, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    out = []
    for reservation in ec2.describe_instances()["Reservations"]:
        out += [i for i in reservation["Instances"] if i["State"]["Name"] not in ("terminated", "shutting-down")]
    return out


def node_names(sandbox) -> set[str]:
    out = sandbox.run("pbsnodes", "-x", check=True).stdout
    import re

    return set(re.findall(r"<name>([^<]+)</name>", out))


def test_burst_launches_joins_runs_and_scales_in_at_the_boundary(make_sandbox, moto, tmp_path):
    sandbox = make_sandbox(nodes=1, np=4, boot_delay=1)
    config = e2e_config(tmp_path, sandbox, moto, charge=16, margin=4)
    engine = Engine(config)
    jobs = [sandbox.qsub("-l", "nodes=1:ppn=4", runtime=3) for _ in range(3)]

    first = engine.evaluate()
    launches = [o for o in first.outcomes if o.action.kind == Kind.LAUNCH]
    assert [(o.action.cloud, o.action.count, o.status) for o in launches] == [("local", 2, "done")]
    assert group(moto)["DesiredCapacity"] == 2

    second = engine.evaluate()
    joined = [o.action.node for o in second.outcomes if o.action.kind == Kind.JOIN and o.status == "done"]
    assert len(joined) == 2
    assert set(joined) <= node_names(sandbox)
    assert not [o for o in second.outcomes if o.action.kind == Kind.LAUNCH], "launched twice"

    # The nodes boot (1 s), the sandbox runs the queued jobs on them, and they end.
    wait_until(lambda: len(sandbox.records("E")) == 3, 30, "all jobs to end")
    assert exit_statuses(sandbox) == {job: 0 for job in jobs}

    # Idle instances stay while their (16 s) charge period is paid, then go.
    def scaled_in():
        engine.evaluate()
        return not live_instances(moto) and node_names(sandbox) == {"node01"}

    wait_until(scaled_in, 40, "instances to be terminated at their boundary", interval=0.5)
    assert group(moto)["DesiredCapacity"] == 0
    engine.evaluate()  # observes that the instances are gone
    history = engine.state.transitions()
    stages = [row["stage"] for row in history if row["instance_id"] == history[0]["instance_id"]]
    for stage in ("booting", "idle", "draining", "terminating", "gone"):
        assert stage in stages, stages
    assert "node01" in node_names(sandbox)  # the static node was never touched


def test_executor_never_terminates_a_node_that_runs_a_job(make_sandbox, moto, tmp_path):
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=0.5)
    config = e2e_config(tmp_path, sandbox, moto, charge=3600, margin=60)
    engine = Engine(config)
    job = sandbox.qsub("-l", "nodes=1:ppn=4", runtime=6)
    engine.evaluate()
    engine.evaluate()
    wait_until(lambda: sandbox.records("S", job), 20, "the job to start on the cloud node")
    snapshot = engine.snapshot(time.time(), save=False)
    (busy,) = [cn for cn in View(snapshot).cloud_nodes if cn.node is not None]
    assert busy.busy
    # A plan no policy would make: retire the busy node. The executor must refuse.
    from phorque.act.executor import Executor
    from phorque.adapters.cloud.lock import cloud_lock

    with cloud_lock(config.phorque.lock_path):
        outcomes = Executor(engine.torque, engine.providers, {c.name: c for c in config.clouds},
                            engine.state, time.time(), lambda *_: None).apply(
            Plan(actions=tuple(retire(busy, "test: retire a busy node"))), snapshot)
    assert [(o.action.kind, o.status) for o in outcomes] == [
        (Kind.DRAIN, "skipped"), (Kind.TERMINATE, "skipped"), (Kind.REMOVE, "skipped")]
    assert len(live_instances(moto)) == 1
    node = engine.torque.node(busy.node.name)
    assert node is not None and not node.is_offline  # put back in service
    wait_until(lambda: sandbox.records("E", job), 30, "the job to end")
    assert exit_statuses(sandbox) == {job: 0}


def test_administrator_offline_node_is_left_alone(make_sandbox, moto, tmp_path):
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=0.2)
    config = e2e_config(tmp_path, sandbox, moto, charge=8, margin=2)
    engine = Engine(config)
    sandbox.qsub("-l", "nodes=1:ppn=4", runtime=1)
    engine.evaluate()
    joined = [o.action.node for o in engine.evaluate().outcomes if o.action.kind == Kind.JOIN]
    (name,) = joined
    wait_until(lambda: sandbox.records("E"), 20, "the job to end")
    sandbox.run("pbsnodes", "-o", "-N", "disk check by admin", "--", name, check=True)
    deadline = time.monotonic() + 12  # past the 8 s charge boundary
    while time.monotonic() < deadline:
        ev = engine.evaluate()
        assert not [a for a in ev.plan.actions if a.node == name], ev.plan.actions
        time.sleep(0.5)
    assert name in node_names(sandbox) and len(live_instances(moto)) == 1


def test_dry_run_changes_nothing_and_evaluate_json(make_sandbox, moto, tmp_path):
    sandbox = make_sandbox(nodes=1, np=2, boot_delay=1)
    config = e2e_config(tmp_path, sandbox, moto, charge=3600, margin=60)
    sandbox.qsub("-l", "nodes=1:ppn=4", runtime=30)
    conf = tmp_path / "phorque.conf"
    conf.write_text(conf_text(tmp_path, sandbox, moto, charge=3600, margin=60))

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "phorque.cli.evaluate", "-c", str(conf), *args],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    dry = run("--dry-run", "--json")
    assert dry["executed"] is False and dry["policy"] == "CostAware"
    assert dry["cluster"] == {"queued_jobs": 1, "queued_cores": 4, "total_cores": 2, "free_cores": 2,
                              "down_cores": 0}
    assert [(a["action"], a["cloud"], a["count"]) for a in dry["actions"]] == [("launch", "local", 1)]
    assert "reason" in dry["actions"][0] and "outcome" not in dry["actions"][0]
    assert not os.path.exists(config.phorque.state_path)  # a dry run writes no state
    assert live_instances(moto) == []

    done = run("--json", "--local")
    assert done["executed"] is True
    assert [(a["action"], a["outcome"]) for a in done["actions"]][0] == ("launch", "done: desired capacity 0 -> 1")
    assert done["clouds"][0]["name"] == "local" and done["clouds"][0]["max_instances"] == 3
    assert group(moto)["DesiredCapacity"] == 1
    assert Engine(load_config(conf)).state.decisions()[0]["action"] == "launch"
    assert [o.stage for o in Engine(load_config(conf)).state.owned()] in ([], [Stage.REQUESTED],
                                                                          [Stage.BOOTING])
