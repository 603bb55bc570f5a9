"""``phorque-status --why`` and the ``why`` of each queued job, on the sandbox and a moto server."""

from __future__ import annotations

import json
import subprocess
import sys

import boto3

from phorque.adapters.state import StateStore
from tests.integration.kit import conf_text, dead_cloud, free_tcp_port


def run(module: str, conf, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=180)


def why(conf, job: str) -> str:
    done = run("phorque.cli.status", conf, "--why", job)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{job}: "), done.stdout
    return done.stdout.strip()


def instance_ids(moto: str) -> list[str]:
    client = boto3.client("autoscaling", endpoint_url=moto, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=["phorque-e2e"])["AutoScalingGroups"]
    return [i["InstanceId"] for g in groups for i in g["Instances"]]


def test_status_says_why_each_job_waits(make_sandbox, moto, tmp_path):
    # The instance takes long to join: it stays "booting" for the whole test.
    sandbox = make_sandbox(nodes=1, np=2, boot_delay=600)
    conf = tmp_path / "phorque.conf"
    conf.write_text(conf_text(tmp_path, sandbox, moto, max_instances=1, cores=4, price=0.4,
                              budget="10", extra_cloud="instance_memory_mb = 16384\n")
                    + dead_cloud(free_tcp_port(), 0.05, "instance_memory_mb = 16384\n"))
    small = sandbox.qsub("-l", "nodes=1:ppn=2", runtime=600)
    sandbox.wait_for(lambda: sandbox.records("S", small), 60, "the small job to start")
    first = sandbox.qsub("-l", "nodes=1:ppn=4", runtime=30)
    huge = sandbox.qsub("-l", "nodes=1:ppn=2,mem=512gb", runtime=30)

    # Before any evaluation: the next one launches for it (the dead cloud, cheaper, is not read).
    text = why(conf, first)
    assert "an instance of cloud local is launched for it now" in text, text
    assert "it can never run: it asks for 512 GB per node; the largest node or instance has 16 GB" in why(conf, huge)

    done = run("phorque.cli.evaluate", conf, "--local")
    assert done.returncode == 0, done.stderr
    ids = instance_ids(moto)
    assert len(ids) == 1
    text = why(conf, first)
    assert f"covered by instance {ids[0]} of cloud local, booting" in text, text

    second = sandbox.qsub("-l", "nodes=1:ppn=4", runtime=30)
    text = why(conf, second)
    # Both clouds named, the cheaper first: the dead one is unreachable (and backed off after the
    # failure the evaluation recorded), the other at max_instances.
    assert "held back: cloud dead cannot be read" in text, text
    assert "cloud local is at max_instances (1)" in text, text
    assert text.index("cloud dead") < text.index("cloud local")

    # Another evaluation records the instance in Phorque's state (and launches nothing).
    assert run("phorque.cli.evaluate", conf, "--local").returncode == 0
    assert instance_ids(moto) == ids
    status = run("phorque.cli.status", conf, "--json")
    assert status.returncode == 1  # a cloud could not be read: the status says so
    data = json.loads(status.stdout)
    jobs = {j["id"]: j for j in data["cluster"]["jobs"]}
    assert jobs[second]["why_kind"] == "backed_off" and jobs[second]["why"] in text
    assert jobs[first]["why_kind"] == "booting" and jobs[huge]["why_kind"] == "never"
    assert "why" not in jobs[small]  # running, not waiting
    assert data["cluster"]["spending"] == {"per_hour": 0.4, "budget_per_hour": 10.0, "share": 0.04}
    dead = next(c for c in data["clouds"] if c["name"] == "dead")
    assert dead["failures"] == 1 and dead["backoff_until"]
    live = [i for i in data["phorque"]["instances"] if i["stage"] != "gone"]
    assert len(live) == 1 and 0 < live[0]["next_charge_secs"] <= 3600

    table = run("phorque.cli.status", conf).stdout
    assert "Spending: 0.40/h of a 10.00/h budget (4 %)" in table
    assert "backed off until" in table and "after 1 failure(s)" in table
    assert "NEXT CHARGE" in table and "WHY" in table
    assert f"covered by instance {ids[0]}" in table

    # A job that runs, and one Torque does not know, have no sentence: said on stderr, exit 1.
    done = run("phorque.cli.status", conf, "--why", small)
    assert done.returncode == 1 and "is not waiting: it runs" in done.stderr
    done = run("phorque.cli.status", conf, "--why", "99999.nowhere")
    assert done.returncode == 1 and "not known to Torque" in done.stderr
    # The short id works too.
    done = run("phorque.cli.status", conf, "--why", first.split(".")[0])
    assert done.returncode == 0 and done.stdout.startswith(f"{first}: covered by instance")
    assert StateStore(str(tmp_path / "state" / "phorque.db")).health()["dead"]["failures"] == 1
