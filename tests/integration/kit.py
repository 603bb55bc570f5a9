"""Helpers for end-to-end tests: a Phorque configuration pointing at a sandbox and a moto server."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from phorque.adapters.config import Config, load_config
from tests import waiting


def conf_text(tmp_path: Path, sandbox, moto: str, *, charge: int = 3600, margin: int = 60,
              policy: str = "CostAware", max_instances: int = 3, cores: int = 4,
              loop_sleep: int = 120, watch: bool = True, trigger: str = "",
              extra_policy: str = "", boot_timeout: int = 300, price: float = 0.1,
              budget: str = "10", region: str = "us-east-1", group: str = "phorque-e2e",
              extra_cloud: str = "") -> str:
    margin_line = f"scale_in_margin_secs = {margin}\n" if policy == "CostAware" else ""
    return f"""
[Phorque]
cluster_directory = {getattr(sandbox, "cluster_directory", sandbox.root)}
torque_home = {getattr(sandbox, "torque_home", sandbox.root)}
state_dir = {tmp_path / 'state'}
loop_sleep_secs = {loop_sleep}
watch_files = {'true' if watch else 'false'}
event_delay_secs = 0.1
command_timeout_secs = 20
boot_timeout_secs = {boot_timeout}
trigger_address = {trigger}

[Policy]
name = {policy}
price_per_hour = {budget}
{margin_line}{extra_policy}
[Cloud-local]
cloud_uri = {moto}
autoscale_uri = {moto}
access_id = testing
secret_key = testing
region = {region}
availability_zone = {region}a
image_id = ami-12c6146b
autoscale_group_name = {group}
launch_config_name = {group}-lc
instance_type = t3.medium
instance_cores = {cores}
max_instances = {max_instances}
charge_time_secs = {charge}
price = {price}
boot_secs = 2
connect_timeout_secs = 2
read_timeout_secs = 10
{extra_cloud}"""


def dead_cloud(port: int, price: float, extra: str = "") -> str:
    """A ``[Cloud-dead]`` section whose endpoint (127.0.0.1:``port``, nothing listening) refuses
    every connection at once: a cloud that cannot be read."""
    return f"""
[Cloud-dead]
cloud_uri = http://127.0.0.1:{port}
autoscale_uri = http://127.0.0.1:{port}
access_id = testing
secret_key = testing
image_id = ami-12c6146b
autoscale_group_name = phorque-dead
launch_config_name = phorque-dead-lc
instance_type = t3.medium
instance_cores = 4
max_instances = 2
price = {price}
connect_timeout_secs = 1
read_timeout_secs = 2
max_attempts = 1
{extra}"""


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def e2e_config(tmp_path: Path, sandbox, moto: str, **kwargs) -> Config:
    path = tmp_path / "phorque.conf"
    path.write_text(conf_text(tmp_path, sandbox, moto, **kwargs))
    return load_config(path, environ={})


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    return waiting.wait_for(predicate, timeout, what, interval)


def exit_statuses(sandbox) -> dict[str, int]:
    """Job id -> Exit_status of every E record the sandbox wrote."""
    out = {}
    for _date, _kind, job, text in sandbox.records("E"):
        status = next(t.split("=", 1)[1] for t in text.split() if t.startswith("Exit_status="))
        out[job] = int(status)
    return out
