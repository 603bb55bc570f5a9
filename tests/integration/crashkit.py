"""The crash tests' and the chaos benchmark's kit: the real daemon as a process that can be
killed anywhere, a moto server in its own process, and an audit of reality (the cloud's
instances, Torque's nodes) against Phorque's state.

Each scenario lives in a *world*: a sandbox cluster whose cloud nodes boot while their EC2
instance lives (so a terminated instance really takes its pbs_mom, and its jobs, with it), one
region of the moto server to itself, and its own state folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config as BotoConfig

from phorque.adapters.state import StateStore
from phorque.adapters.torque.commands import Torque
from phorque.core.model import Node, Owned, Stage
from phorque_testbed.sandbox import cluster, server
from tests.integration.kit import conf_text
from tests.sandboxkit import Sandbox

#: moto regions, one per world, so that worlds running side by side never see each other.
REGIONS = ("us-west-1", "us-west-2", "us-east-2", "eu-west-1", "eu-west-2", "eu-west-3",
           "eu-central-1", "eu-north-1", "ap-south-1", "ap-northeast-1", "ap-northeast-2",
           "ap-southeast-1", "ap-southeast-2", "ca-central-1", "sa-east-1", "ap-northeast-3",
           "eu-south-1", "me-south-1", "af-south-1", "us-east-1")
LIVE = ("pending", "running")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoProcess:
    """A moto server in a process of its own (the daemons and sandboxes load it in parallel)."""

    def __init__(self, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                      "-p", str(self.port)], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                client(self.url, "us-east-1", "ec2").describe_instances()
                break
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start (see {log})") from None
                time.sleep(0.2)

    def warm(self, regions) -> None:
        """Build moto's per-region backends now, not during a timed scenario."""
        for region in regions:
            client(self.url, region, "autoscaling").describe_auto_scaling_groups()
            client(self.url, region, "ec2").describe_instances()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def client(url: str, region: str, service: str):
    return boto3.client(service, endpoint_url=url, region_name=region, aws_access_key_id="testing",
                        aws_secret_access_key="testing",
                        config=BotoConfig(connect_timeout=5, read_timeout=30, retries={"max_attempts": 5}))


def daemon_env(crashpoint: str | None = None) -> dict[str, str]:
    """The environment of a daemon: no ambient AWS settings, the crash point if any."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "PHORQUE_CRASHPOINT"}
    env["AWS_SHARED_CREDENTIALS_FILE"] = env["AWS_CONFIG_FILE"] = os.devnull
    if crashpoint:
        env["PHORQUE_CRASHPOINT"] = crashpoint
    return env


class DaemonProcess:
    """``python -m phorque.cli.daemon`` with its log in a file."""

    def __init__(self, conf: Path, log: Path, crashpoint: str | None = None):
        self.log = log
        self.crashpoint = crashpoint
        self._out = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "phorque.cli.daemon", "-c", str(conf)],
                                     stdout=self._out, stderr=subprocess.STDOUT, env=daemon_env(crashpoint))

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int | None:
        """The exit status (-9 for SIGKILL), or None if still running after ``timeout``."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        code = self.proc.wait()
        self._out.close()
        return code

    def stop(self, timeout: float = 60) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = self.kill()
        self._out.close()
        return code


@dataclass(frozen=True)
class InstanceFact:
    """One EC2 instance of a group, as the real service (not Phorque) sees it."""

    id: str
    state: str
    dns: str
    launch_time: float

    @property
    def live(self) -> bool:
        return self.state in LIVE


@dataclass
class Audit:
    """What disagrees between the cloud, Torque and Phorque's state."""

    orphan_instances: list[str] = field(default_factory=list)
    orphan_nodes: list[str] = field(default_factory=list)
    lost_state: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.orphan_instances or self.orphan_nodes or self.lost_state)

    def __str__(self) -> str:
        return (f"orphan instances {self.orphan_instances}, orphan nodes {self.orphan_nodes}, "
                f"lost state entries {self.lost_state}")


def audit(instances: list[InstanceFact], nodes: dict[str, Node], static: set[str],
          records: list[Owned], now: float, boot_timeout: float) -> Audit:
    """Compare reality with the state, for a daemon that has had time to look.

    * an *orphan instance* is a live instance that, past the boot timeout, is not a Torque node
      or that the state does not hold as live;
    * an *orphan node* is a Torque node, other than the static ones, whose instance is not live;
    * a *lost state entry* is an instance launched in the group that the state never recorded,
      or a record whose stage or node disagrees with the instance (a live stage for an instance
      that is gone, ``gone`` for one that lives, a node that is not the instance's name).
    """
    out = Audit()
    by_id = {r.instance_id: r for r in records}
    live_names = {i.dns for i in instances if i.live and i.dns}
    for inst in instances:
        rec = by_id.get(inst.id)
        if rec is None:
            out.lost_state.append(f"{inst.id} ({inst.state}) was never recorded")
            if inst.live:
                out.orphan_instances.append(f"{inst.id}: unknown to the state")
            continue
        if inst.live:
            if rec.stage == Stage.GONE:
                out.lost_state.append(f"{inst.id} lives but its record says gone")
                out.orphan_instances.append(f"{inst.id}: the state holds it as gone")
            elif inst.dns not in nodes and now - inst.launch_time > boot_timeout:
                out.orphan_instances.append(f"{inst.id} ({inst.dns}) is not a Torque node "
                                            f"{now - inst.launch_time:.0f} s after its launch")
        elif rec.stage != Stage.GONE:
            out.lost_state.append(f"{inst.id} is {inst.state} but its record says {rec.stage}")
        if rec.node and inst.dns and rec.node != inst.dns:
            out.lost_state.append(f"{inst.id}: record names node {rec.node}, the instance is {inst.dns}")
    known = {i.id for i in instances}
    for rec in records:
        if rec.instance_id not in known and rec.stage != Stage.GONE:
            out.lost_state.append(f"record {rec.instance_id} ({rec.stage}) has no instance")
    for name in sorted(set(nodes) - static - live_names):
        out.orphan_nodes.append(name)
    return out


class World:
    """One isolated scenario: a sandbox, a region of the moto server, a state folder."""

    def __init__(self, root: Path, moto: str, region: str, *, static_nodes: int = 1, static_np: int = 2,
                 endpoint: str | None = None, boot_delay: float = 1.0, speed: float = 1.0,
                 boot_timeout: int = 12, group: str = "phorque-crash", **conf: object):
        self.root = root
        self.moto, self.region, self.group = moto, region, group
        self.boot_timeout = boot_timeout
        root.mkdir(parents=True, exist_ok=True)
        # As tests/conftest.py's make_sandbox: real Torque's delays on but short, the queue takes
        # jobs only cloud nodes can run and nothing deletes them meanwhile (see there why).
        settings = {"keep_completed": 0, "boot_mode": "cloud", "cloud_endpoint": moto,
                    "cloud_region": region, "boot_delay": boot_delay, "speed": speed,
                    "mom_list_delay": 1, "obit_delay": 1, "delete_infeasible": 0}
        layout = cluster.init(str(root / "cluster"), static_nodes, static_np, "srv.test", settings)
        cluster.set_queue(layout, "batch", is_transit="true")
        self.sandbox = Sandbox(layout)
        self.sandbox.start()
        self.torque = Torque(str(self.sandbox.root), 30)
        self.static = set(self.nodes())
        self.conf = root / "phorque.conf"
        conf.setdefault("trigger", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}")
        self.conf.write_text(conf_text(root, self.sandbox, endpoint or moto, region=region, group=group,
                                       boot_timeout=boot_timeout, **conf))
        self.state_path = root / "state" / "phorque.db"
        self.daemons: list[DaemonProcess] = []
        self._asg = client(moto, region, "autoscaling")
        self._ec2 = client(moto, region, "ec2")

    # -- the daemon ------------------------------------------------------------------------
    def daemon(self, crashpoint: str | None = None) -> DaemonProcess:
        proc = DaemonProcess(self.conf, self.root / f"daemon{len(self.daemons)}.log", crashpoint)
        self.daemons.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.daemons:
            if proc.alive():
                proc.kill()
        server.stop(self.sandbox.layout)

    # -- reality ---------------------------------------------------------------------------
    def desired(self) -> int:
        groups = self._asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])
        found = groups["AutoScalingGroups"]
        return int(found[0]["DesiredCapacity"]) if found else 0

    def instances(self) -> list[InstanceFact]:
        """Every instance ever launched in the group, terminated ones too.

        The world has its region to itself, so these are the region's instances (moto drops
        the group's tag from an instance when it terminates).
        """
        out = []
        for page in self._ec2.get_paginator("describe_instances").paginate():
            for reservation in page["Reservations"]:
                for i in reservation["Instances"]:
                    out.append(InstanceFact(i["InstanceId"], i["State"]["Name"], i.get("PublicDnsName") or "",
                                            i["LaunchTime"].timestamp()))
        return out

    def nodes(self) -> dict[str, Node]:
        return {n.name: n for n in self.torque.nodes()}

    def records(self) -> list[Owned]:
        if not self.state_path.exists():
            return []
        store = StateStore(str(self.state_path))
        try:
            return store.owned(include_gone=True)
        finally:
            store.close()

    def health(self) -> dict:
        store = StateStore(str(self.state_path))
        try:
            return store.health()
        finally:
            store.close()

    def audit(self) -> Audit:
        return audit(self.instances(), self.nodes(), self.static, self.records(), time.time(),
                     self.boot_timeout)

