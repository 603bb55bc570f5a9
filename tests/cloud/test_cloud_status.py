"""``phorque-status`` shows the clouds; an unreachable one is shown with its error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from phorque.adapters.cloud import make_provider
from phorque.adapters.cloud.backoff import CloudHealthRecord, record_failure
from phorque.adapters.cloud.status import describe_clouds
from phorque.adapters.config import load_config
from phorque.adapters.state import StateStore
from tests.cloud.cloudkit import (
    AWS_ID,
    AWS_SECRET,
    PHANTOM_ID,
    PHANTOM_SECRET,
    set_faults,
    wait_for,
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path: Path, moto: str, phantom) -> Path:
    dead = f"http://127.0.0.1:{closed_port()}"
    path.write_text(f"""
[Phorque]
cluster_directory = {path.parent / "no-torque"}
state_dir = {path.parent / "state"}

[Policy]
name = OnDemandPlusPlus

[Cloud-amazon]
cloud_type = aws
cloud_uri = {moto}
autoscale_uri = {moto}
access_id = $PHORQUE_TEST_AWS_ID
secret_key = $PHORQUE_TEST_AWS_SECRET
image_id = ami-12c6146b
instance_type = t3.micro
instance_cores = 2
max_instances = 4
price = 0.10
autoscale_group_name = phorque-asg
launch_config_name = phorque-lc

[Cloud-hotel]
cloud_type = nimbus
cloud_uri = {phantom.ec2.url}
autoscale_uri = {phantom.autoscale.url}
access_id = {PHANTOM_ID}
secret_key = {PHANTOM_SECRET}
image_id = debian-6.0.5.gz
instance_type = m1.large
instance_cores = 2
max_instances = 8
price = 0
autoscale_group_name = hotelasg
launch_config_name = hotellc@hotel

[Cloud-gone]
cloud_uri = {dead}
autoscale_uri = {dead}
access_id = {AWS_ID}
secret_key = {AWS_SECRET}
image_id = ami-1
instance_type = t3.micro
instance_cores = 2
max_instances = 2
price = 0.5
autoscale_group_name = far-away
connect_timeout_secs = 0.5
max_attempts = 1
""")
    return path


ENV = {"PHORQUE_TEST_AWS_ID": AWS_ID, "PHORQUE_TEST_AWS_SECRET": AWS_SECRET}


def test_describe_clouds(moto: str, phantom, tmp_path: Path) -> None:
    set_faults(phantom.autoscale.url, extra={"requested_secs": 60})  # requests stay requests
    config = load_config(write_config(tmp_path / "phorque.conf", moto, phantom), environ=ENV)
    for cloud in config.clouds[:2]:
        make_provider(cloud).ensure_setup()
    make_provider(config.cloud("amazon")).set_desired(2)
    make_provider(config.cloud("hotel")).set_desired(1)
    records = {"amazon": record_failure(CloudHealthRecord(), 1000.0, "throttled")}
    clouds = describe_clouds(config, records, now=1010.0)
    assert [c["name"] for c in clouds] == ["hotel", "amazon", "gone"]  # price order
    hotel, amazon, gone = clouds
    assert (hotel["type"], hotel["price"], hotel["desired"], hotel["max_instances"], hotel["health"]) == \
        ("nimbus", 0.0, 1, 8, "ok")
    assert [(i["id"], i["state"], i["dns"]) for i in hotel["instances"]] == [("", "requested", None)]
    assert (amazon["desired"], amazon["health"], amazon["error"]) == (2, "backoff", "throttled")
    assert amazon["backoff_until"] == "1970-01-01T00:17:40Z"
    for inst in amazon["instances"]:
        assert inst["state"] == "running" and inst["dns"].endswith("amazonaws.com")
        assert inst["launch_time"].endswith("Z") and inst["id"].startswith("i-")
    assert gone["health"] == "unreachable" and gone["desired"] is None and gone["instances"] == []
    assert "gone" in gone["error"] and "Could not connect" in gone["error"]
    json.dumps(clouds)  # plain JSON data


def test_a_cloud_answering_with_an_error_is_failed(moto: str, phantom, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "phorque.conf", moto, phantom), environ=ENV)
    clouds = {c["name"]: c for c in describe_clouds(config)}
    assert clouds["amazon"]["health"] == "failed"  # no group yet: set-up has not run
    assert "does not exist" in clouds["amazon"]["error"]


def run_status(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(ENV, PATH=os.environ.get("PATH", ""))
    return subprocess.run([sys.executable, "-m", "phorque.cli.status", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


def test_phorque_status_prints_the_clouds(moto: str, phantom, tmp_path: Path) -> None:
    path = write_config(tmp_path / "phorque.conf", moto, phantom)
    config = load_config(path, environ=ENV)
    make_provider(config.cloud("amazon")).ensure_setup()
    make_provider(config.cloud("amazon")).set_desired(1)
    make_provider(config.cloud("hotel")).ensure_setup()
    make_provider(config.cloud("hotel")).set_desired(1)
    wait_for(lambda: make_provider(config.cloud("hotel")).describe().instances[0].id)
    store = StateStore(config.phorque.state_path)  # as the daemon leaves it after a failure
    store.save_health("hotel", asdict(record_failure(CloudHealthRecord(), time.time(), "timed out")))
    store.close()
    done = run_status(path, "--json")
    assert done.returncode == 1, done.stderr  # 'gone' cannot be read: exit 1
    status = json.loads(done.stdout)
    assert status["cluster"]["error"]  # no Torque here, and the status still printed
    clouds = {c["name"]: c for c in status["clouds"]}
    assert clouds["amazon"]["health"] == "ok" and clouds["amazon"]["desired"] == 1
    assert clouds["hotel"]["instances"][0]["id"].startswith("i-")
    assert (clouds["hotel"]["health"], clouds["hotel"]["error"]) == ("backoff", "timed out")
    assert clouds["gone"]["health"] == "unreachable"
    text = run_status(path)
    assert text.returncode == 1, text.stderr  # 'gone' cannot be read: exit 1
    assert "CLOUD" in text.stdout and "unreachable" in text.stdout
    assert "hotel" in text.stdout and clouds["hotel"]["instances"][0]["id"] in text.stdout
    for secret in (AWS_ID, AWS_SECRET, PHANTOM_SECRET):
        assert secret not in done.stdout + done.stderr + text.stdout + text.stderr
