"""Shared set-up for daemon benchmarks: a moto server, a sandbox cluster and the daemon, all real
processes on 127.0.0.1, and a sampler of the group's desired capacity."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3

BIN = Path(sys.executable).parent


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Rig:
    """moto + sandbox + (optionally) the daemon, in a temporary folder; ``close()`` stops all."""

    kind = "sandbox"
    instance_cores = 4

    def __init__(self, static_np: int = 1, boot_delay: float = 100000):
        self._start_moto()
        self.cluster = self.dir / "cluster"
        self.cluster_directory = self.torque_home = str(self.cluster)
        sandbox = str(BIN / "phorque-sandbox")
        # pbs_sched would delete the cloud-only jobs (no placeholder nodes here), as the test kits
        # explain (tests/conftest.py); moto's instance names resolve as a site's DNS would.
        subprocess.run([sandbox, "init", str(self.cluster), "--nodes", "1", "--np", str(static_np),
                        "--server", "head.bench", "--boot-delay", str(boot_delay), "--fixed-boot",
                        "--keep-completed", "0", "--delete-infeasible", "no"],
                       check=True, stdout=subprocess.DEVNULL, timeout=60)
        with open(self.cluster / "sandbox" / "hosts", "a", encoding="utf-8") as hosts:
            hosts.write("*.amazonaws.com *.internal\n")
        subprocess.run([sandbox, "start", str(self.cluster)], check=True, stdout=subprocess.DEVNULL,
                       timeout=60)
        subprocess.run([str(self.cluster / "bin" / "qmgr"), "-c", "set queue batch is_transit = true"],
                       check=True, timeout=60)  # the cloud-only jobs are taken, as the README says
        self.static_nodes = set(self.node_names())

    def _start_moto(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="phorque-bench-"))
        self.procs: list[subprocess.Popen] = []
        port = free_port()
        self.moto = f"http://127.0.0.1:{port}"
        self.procs.append(subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                            "-p", str(port)], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL, start_new_session=True))
        self._wait(self.moto + "/moto-api/")
        self.asg = boto3.client("autoscaling", endpoint_url=self.moto, region_name="us-east-1",
                                aws_access_key_id="bench", aws_secret_access_key="bench")
        self.daemon: subprocess.Popen | None = None

    @staticmethod
    def _wait(url: str) -> None:
        for _ in range(300):
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{url} did not start")

    def config(self, *, watch: bool, loop_sleep: int = 120, max_instances: int = 100,
               trigger: bool = True, state: str = "state", event_delay: float | None = None) -> Path:
        conf = self.dir / f"{state}.conf"
        trigger_address = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}" if trigger else ""
        delay = "" if event_delay is None else f"event_delay_secs = {event_delay:g}\n"
        conf.write_text(f"""
[Phorque]
cluster_directory = {self.cluster_directory}
torque_home = {self.torque_home}
state_dir = {self.dir / state}
loop_sleep_secs = {loop_sleep}
watch_files = {str(watch).lower()}
trigger_address = {trigger_address}
boot_timeout_secs = 36000
{delay}
[Policy]
name = CostAware

[Cloud-bench]
cloud_uri = {self.moto}
autoscale_uri = {self.moto}
access_id = bench-access-key
secret_key = bench-secret-key
image_id = ami-12c6146b
autoscale_group_name = phorque-bench
launch_config_name = phorque-bench-lc
instance_type = t3.xlarge
instance_cores = {self.instance_cores}
max_instances = {max_instances}
charge_time_secs = 3600
""")
        return conf

    def start_daemon(self, conf: Path) -> Path:
        log = self.dir / f"{conf.stem}.log"
        self.daemon = subprocess.Popen([str(BIN / "phorque"), "-c", str(conf)], stdout=open(log, "w"),
                                       stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(600):
            if "evaluation #1 " in log.read_text():
                return log
            if self.daemon.poll() is not None:
                raise RuntimeError(log.read_text())
            time.sleep(0.1)
        raise RuntimeError("the daemon did not start")

    def stop_daemon(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            self.daemon.wait(timeout=60)
        self.daemon = None

    def desired(self) -> int:
        groups = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=["phorque-bench"])
        found = groups["AutoScalingGroups"]
        return found[0]["DesiredCapacity"] if found else 0

    def reset_cloud(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.moto + "/moto-api/reset", method="POST"),
                               timeout=30).read()

    def qsub(self, resources: str = "nodes=1:ppn=4", runtime: int = 36000) -> str:
        script = f"#!/bin/sh\n#SANDBOX runtime={runtime}\ntrue\n"
        return subprocess.run([str(self.cluster / "bin" / "qsub"), "-l", resources], input=script,
                              capture_output=True, text=True, timeout=60, check=True).stdout.strip()

    def qdel_all(self) -> None:
        """Delete and purge every job, and wait until none is left: a running job deleted ends
        with its mom's obit, and one whose node is removed before that is queued again."""
        deadline = time.monotonic() + 120
        while True:
            subprocess.run([str(self.cluster / "bin" / "qdel"), "-p", "all"], capture_output=True, timeout=60)
            states = re.findall(r"<job_state>(\w)</job_state>", self.command("qstat", "-f", "-x", "-t").stdout)
            if all(state == "C" for state in states) or time.monotonic() > deadline:
                return
            time.sleep(0.5)

    def command(self, name: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.cluster / "bin" / name), *args], capture_output=True, text=True,
                              timeout=120, check=False)

    def node_names(self) -> list[str]:
        out = self.command("pbsnodes", "-x").stdout
        return re.findall(r"<Node><name>([^<]+)</name>", out)

    def remove_cloud_nodes(self) -> None:
        """Delete from Torque the nodes a run's instances became. The next run starts with a new
        state and a reset cloud, so to its daemon they would be nodes of no instance of its
        groups: reported and left alone, their cores free for its jobs."""
        names = [n for n in self.node_names() if n not in self.static_nodes]
        # Side by side: a real pbs_server holds each `qmgr delete node` for 2 s or more.
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda name: self.command("qmgr", "-c", f"delete node {name}"), names))

    def close(self) -> None:
        self.stop_daemon()
        subprocess.run([str(BIN / "phorque-sandbox"), "stop", str(self.cluster)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        self._stop_moto()

    def _stop_moto(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


class TorqueRig(Rig):
    """moto + the private real Torque of `python3 dev.py torque build` (two moms of np=2) + the
    daemon. Instances' DNS names resolve (so they join as nodes), but they get no mom, so they
    never come up: every answer is a launch.

    `fill` occupies the moms' cores with long jobs first, so that every benchmark job needs a
    new instance, as the sandbox rig's one-core static node does."""

    kind = "real Torque"
    instance_cores = 2

    def __init__(self, fill: bool = True):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from torquebed.cluster import USER, Cluster

        self._start_moto()
        self.torque = Cluster.find()
        self.started_torque = not self.torque.running()
        if self.started_torque:
            self.torque.start(moms=2, np=2)
        self.user = USER
        self.cluster_directory = str(self.torque.build.prefix)
        self.torque_home = str(self.torque.home)
        self.cluster = Path(self.cluster_directory)
        self.static_nodes = set(self.torque.state.moms)
        self.remove_cloud_nodes()
        # What an instance's boot does on a site: its DNS name resolves, so Phorque's join (qmgr
        # create node) succeeds once instead of failing at every evaluation. The aliases are
        # marked lines of /etc/hosts, removed by `dev.py torque stop`.
        self._ec2 = boto3.client("ec2", endpoint_url=self.moto, region_name="us-east-1",
                                 aws_access_key_id="bench", aws_secret_access_key="bench")
        self._halt = threading.Event()
        self._aliaser = threading.Thread(target=self._alias_instances, daemon=True)
        self._aliaser.start()
        self.qdel_all()
        self.blockers = [self.qsub("nodes=1:ppn=2") for _ in range(2)] if fill else []
        deadline = time.monotonic() + 120
        while self.blockers and time.monotonic() < deadline:
            out = self.torque.run("qstat", "-f", "-x", *self.blockers).stdout
            if out.count("<job_state>R</job_state>") == len(self.blockers):
                break
            time.sleep(0.3)

    def _alias_instances(self) -> None:
        while not self._halt.wait(0.2):
            try:
                for res in self._ec2.describe_instances()["Reservations"]:
                    for inst in res["Instances"]:
                        if inst.get("PublicDnsName"):
                            self.torque.add_alias(inst["PublicDnsName"])
            except Exception:  # a failed look is tried again at the next one
                pass

    def qsub(self, resources: str = "nodes=1:ppn=2", runtime: int = 36000) -> str:
        return self.torque.qsub("-l", resources, script=f"sleep {runtime}\n")

    def qdel_all(self) -> None:
        self.torque.run("qdel", "-p", "all", timeout=300)

    def command(self, name: str, *args: str) -> subprocess.CompletedProcess:
        return self.torque.run(name, *args, timeout=120)

    def close(self) -> None:
        self._halt.set()
        self._aliaser.join(timeout=30)
        self.stop_daemon()
        self.qdel_all()
        self.remove_cloud_nodes()
        if self.started_torque:
            self.torque.stop()
        self._stop_moto()


class Sampler(threading.Thread):
    """Samples the group's desired capacity every ``interval`` seconds: (monotonic time, value)."""

    def __init__(self, rig: Rig, interval: float = 0.02):
        super().__init__(daemon=True)
        self.rig, self.interval = rig, interval
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append((time.monotonic(), self.rig.desired()))
            except Exception:  # a slow or failed sample is just a missing sample
                pass
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def first_reaching(self, value: int, after: float) -> float | None:
        for at, seen in self.samples:
            if at >= after and seen >= value:
                return at
        return None


def evaluation_seconds(log_text: str) -> list[float]:
    """The duration of every evaluation in a daemon's log (its "evaluation #N (...): ..., X s")."""
    return [float(m) for m in re.findall(r"evaluation #\d+ \(.*\): .* done, ([\d.]+) s$", log_text, re.M)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


os.environ.setdefault("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
os.environ.setdefault("AWS_CONFIG_FILE", "/dev/null")
