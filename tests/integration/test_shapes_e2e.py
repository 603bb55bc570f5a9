"""Right-sized launches under the real daemon on the sandbox: a GPU job and a big-memory job
each start on a new node of the cloud that can run it, although a cheaper cloud had room and a
count of cores alone would have launched there; a job no cloud can hold launches nothing and is
named by phorque-evaluate and phorque-status."""

from __future__ import annotations

import json
import subprocess
import sys

import boto3

from tests.integration.faultkit import Cloud, conf_text
from tests.integration.kit import exit_statuses, wait_until


def group_dns(moto: str, group: str) -> set[str]:
    """DNS names of every instance the group ever had (terminated ones included)."""
    kw = dict(endpoint_url=moto, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    ec2 = boto3.client("ec2", **kw)
    names = set()
    for res in ec2.describe_instances()["Reservations"]:
        for inst in res["Instances"]:
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
            if tags.get("aws:autoscaling:groupName") == group:
                names.update(n for n in (inst.get("PublicDnsName"), inst.get("PrivateDnsName")) if n)
    return names


def exec_host(sandbox, job: str) -> str:
    (record,) = sandbox.records("S", job)
    field = next(t for t in record[3].split() if t.startswith("exec_host="))
    return field.split("=", 1)[1].split("/", 1)[0]


CLOUDS = lambda moto: [  # noqa: E731 - the three shapes, cheapest first
    Cloud("cpu", "moto", moto, "g-cpu", price=0.1, max_instances=3, cores=4,
          extra="instance_memory_mb = 8192\n"),
    Cloud("bigmem", "moto", moto, "g-bigmem", price=0.3, max_instances=1, cores=4,
          extra="instance_memory_mb = 65536\nnode_properties = bigmem\n"),
    Cloud("gpu", "moto", moto, "g-gpu", price=0.9, max_instances=1, cores=2,
          extra="instance_memory_mb = 16384\ninstance_gpus = 2\n"),
]


def test_gpu_and_big_memory_jobs_start_on_new_nodes_of_the_clouds_that_can_run_them(
        make_sandbox, moto, daemons, tmp_path):
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=1)
    daemon = daemons(conf_text(tmp_path, sandbox, CLOUDS(moto), loop_sleep=30))
    gpu_job = sandbox.qsub("-l", "nodes=1:ppn=2:gpus=2", runtime=2)
    mem_job = sandbox.qsub("-l", "nodes=1:ppn=2,mem=32gb", runtime=2)
    wait_until(lambda: len(sandbox.records("E")) == 2, 120, "both jobs to run and end", interval=0.5)
    assert exit_statuses(sandbox) == {gpu_job: 0, mem_job: 0}
    assert exec_host(sandbox, gpu_job) in group_dns(moto, "g-gpu")
    assert exec_host(sandbox, mem_job) in group_dns(moto, "g-bigmem")
    # The cheapest cloud had room for both by cores (4 cores per instance): nothing went there.
    assert group_dns(moto, "g-cpu") == set()
    assert not daemon.lines("launch", "on cpu")
    assert daemon.stop() == 0


def _cli(module: str, conf, *args: str) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", module, "-c", str(conf), *args, "--json"],
                          capture_output=True, text=True, timeout=120)
    return done.returncode, json.loads(done.stdout)


def test_a_job_no_cloud_can_hold_is_named_by_evaluate_and_status(make_sandbox, moto, tmp_path):
    # No static node: pbs_server places by cores, not memory, and would start the 512 GB job on
    # any free node at once.
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=1)
    conf = tmp_path / "phorque.conf"
    conf.write_text(conf_text(tmp_path, sandbox, CLOUDS(moto)))
    huge = sandbox.qsub("-l", "nodes=1:ppn=2,mem=512gb", runtime=2)
    gpus = sandbox.qsub("-l", "nodes=1:ppn=1:gpus=4", runtime=2)
    rc, plan = _cli("phorque.cli.evaluate", conf, "--dry-run")
    assert rc == 0 and not [a for a in plan["actions"] if a["action"] == "launch"], plan
    notes = " ".join(plan["notes"])
    assert f"job {huge} can never run: it asks for 512 GB per node; the largest instance has 64 GB" \
        in notes, notes
    assert f"job {gpus} can never run: it asks for 4 GPUs per node; the most any instance has is 2" \
        in notes, notes
    _rc, status = _cli("phorque.cli.status", conf)
    reasons = {j["id"]: j["cannot_run"] for j in status["cluster"]["jobs"]}
    assert reasons[huge] == "it asks for 512 GB per node; the largest instance has 64 GB"
    assert reasons[gpus].startswith("it asks for 4 GPUs per node")
