"""phorque-status: the cluster as Phorque understands it, in JSON and as a table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fake_torque import FakeTorque

FIXTURES = Path(__file__).parents[1] / "fixtures" / "torque"

CONFIG = """
[Phorque]
cluster_directory = {root}
torque_home = {root}
state_dir = {state}
queue_name = {queue}

[Policy]
name = OnDemandPlusPlus

[Cloud-local]
cloud_uri = http://127.0.0.1:9
autoscale_uri = http://127.0.0.1:9
image_id = ami-12345678
autoscale_group_name = phorque-test
instance_type = m1.small
instance_cores = 2
max_instances = 4
connect_timeout_secs = 0.5
read_timeout_secs = 0.5
max_attempts = 1
"""


def status(tmp_path: Path, fake: FakeTorque, *args: str, queue: str = "*") -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "phorque.conf"
    conf.write_text(CONFIG.format(root=fake.root, state=tmp_path / "state", queue=queue))
    return subprocess.run([sys.executable, "-m", "phorque.cli.status", "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=120)


def test_json_cluster_view(tmp_path):
    fake = FakeTorque(tmp_path / "torque")
    fake.script("qstat", stdout_file=str(FIXTURES / "qstat_pretty.xml"))
    fake.script("pbsnodes", stdout_file=str(FIXTURES / "pbsnodes_pretty.xml"))
    proc = status(tmp_path, fake, "--json")
    assert proc.returncode == 1, proc.stderr  # the cloud (port 9) cannot be read: all else is shown
    cluster = json.loads(proc.stdout)["cluster"]
    assert cluster["queued_jobs"] == 2 and cluster["queued_cores"] == 8 + 12
    assert cluster["running_jobs"] == 3
    assert cluster["total_cores"] == 1008 and cluster["free_cores"] == 4 and cluster["down_cores"] == 1000
    job = next(j for j in cluster["jobs"] if j["id"] == "152.master.example.org")
    assert job == {**job, "state": "Q", "queue": "batch", "cores": 8, "walltime_secs": 3600}
    node = next(n for n in cluster["nodes"] if n["name"] == "master")
    assert node["np"] == 1000 and node["state"] == ["down", "offline"] and node["jobs"] == []


def test_queue_name_filters_jobs(tmp_path):
    fake = FakeTorque(tmp_path / "torque")
    fake.script("qstat", stdout_file=str(FIXTURES / "qstat_pretty.xml"))
    fake.script("pbsnodes", stdout_file=str(FIXTURES / "pbsnodes_pretty.xml"))
    proc = status(tmp_path, fake, "--json", queue="long")
    cluster = json.loads(proc.stdout)["cluster"]
    assert cluster["queued_jobs"] == 0 and cluster["jobs"] == []


def test_table_survives_hostile_names(tmp_path):
    fake = FakeTorque(tmp_path / "torque")
    hostile = "<Data><Node><name>evil\x1b[2J\nnode</name><state>free</state><np>2</np></Node></Data>"
    fake.script("qstat", stdout="")
    fake.script("pbsnodes", stdout=hostile)
    proc = status(tmp_path, fake)
    assert proc.returncode == 1, proc.stderr  # the cloud (port 9) cannot be read: all else is shown
    assert "\x1b" not in proc.stdout
    assert "evil" in proc.stdout


def test_torque_down_is_reported_not_fatal(tmp_path):
    fake = FakeTorque(tmp_path / "torque")
    fake.script("qstat", rc=111, stderr="qstat: cannot connect to server srv (errno=111) Connection refused\n")
    proc = status(tmp_path, fake, "--json")
    assert proc.returncode == 1  # reported, not fatal: the output is whole, the status says it is not
    cluster = json.loads(proc.stdout)["cluster"]
    assert "cannot connect" in cluster["error"]
