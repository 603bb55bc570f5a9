"""Helpers for the fault and concurrency tests: several clouds (moto groups behind their own fault
proxies, the Phantom double), the real daemon as a process, and a sampler that watches every
group's desired capacity and instances while a test runs."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from tests.cloud.cloudkit import PHANTOM_ID, PHANTOM_SECRET, http
from tests.integration.kit import wait_until

#: The cloud settings every test cloud shares: short timeouts, so faults cost seconds.
_COMMON = """instance_type = t3.medium
instance_cores = {cores}
max_instances = {max_instances}
charge_time_secs = {charge}
price = {price}
boot_secs = 1
boot_timeout_secs = {boot_timeout}
connect_timeout_secs = 1
read_timeout_secs = {read_timeout}
max_attempts = {attempts}
"""


@dataclass(frozen=True)
class Cloud:
    """One ``[Cloud-<name>]`` of a test configuration."""

    name: str
    kind: str          # "moto" (through ``url``, a fault proxy or moto itself) or "phantom"
    url: str           # Auto Scaling endpoint (moto: also EC2)
    group: str
    price: float
    max_instances: int
    cores: int = 4
    charge: int = 3600
    boot_timeout: int = 300
    read_timeout: float = 1.0
    attempts: int = 2
    ec2_url: str = ""  # the Phantom double's EC2 endpoint
    extra: str = ""    # more option lines (instance_gpus = 2, queues = gpu, ...)

    def section(self) -> str:
        common = _COMMON.format(cores=self.cores, max_instances=self.max_instances,
                                charge=self.charge, price=self.price,
                                boot_timeout=self.boot_timeout, read_timeout=self.read_timeout,
                                attempts=self.attempts) + self.extra
        if self.kind == "phantom":
            return (f"[Cloud-{self.name}]\ncloud_type = phantom\ncloud_uri = {self.ec2_url}\n"
                    f"autoscale_uri = {self.url}\naccess_id = {PHANTOM_ID}\n"
                    f"secret_key = {PHANTOM_SECRET}\nimage_id = debian-6.0.5.gz\n"
                    f"autoscale_group_name = {self.group}\n"
                    f"launch_config_name = {self.group}lc@hotel\n{common}\n")
        return (f"[Cloud-{self.name}]\ncloud_uri = {self.url}\nautoscale_uri = {self.url}\n"
                f"access_id = testing\nsecret_key = testing\nimage_id = ami-12c6146b\n"
                f"autoscale_group_name = {self.group}\nlaunch_config_name = {self.group}-lc\n"
                f"{common}\n")


def conf_text(tmp_path: Path, sandbox, clouds: list[Cloud], *, policy: str = "CostAware",
              budget: str = "", loop_sleep: int = 120, watch: bool = True, trigger: str = "",
              command_timeout: float = 5.0, policy_lines: str = "") -> str:
    """A whole configuration: the sandbox, the policy and the clouds."""
    budget_line = f"price_per_hour = {budget}\n" if budget else ""
    return (f"[Phorque]\ncluster_directory = {sandbox.root}\ntorque_home = {sandbox.root}\n"
            f"state_dir = {tmp_path / 'state'}\nloop_sleep_secs = {loop_sleep}\n"
            f"watch_files = {'true' if watch else 'false'}\nevent_delay_secs = 0.1\n"
            f"command_timeout_secs = {command_timeout}\ntrigger_address = {trigger}\n\n"
            f"[Policy]\nname = {policy}\n{budget_line}{policy_lines}\n"
            + "".join(c.section() for c in clouds))


def start_proxy(moto_url: str):
    """A fault proxy of its own in front of moto (faults on one cloud only); stop() it."""
    from tests.servers import faults as fault_proxy

    running, _app = fault_proxy.start(moto_url)
    return running


def set_faults(url: str, **doc) -> None:
    http("POST", url + "/_faults", doc)


def clear_faults(url: str) -> None:
    http("DELETE", url + "/_faults")


class DaemonProcess:
    """``phorque`` (the daemon) as a child process, its log in a file."""

    def __init__(self, conf: Path, log: Path, debug: bool = False):
        self.conf, self.log = conf, log
        self._out = open(log, "w")  # noqa: SIM115 (closed in stop)
        argv = [sys.executable, "-m", "phorque.cli.daemon", "-c", str(conf)] + (["-d"] if debug else [])
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text()

    def lines(self, *words: str) -> list[str]:
        """Log lines containing every one of ``words``."""
        return [line for line in self.text().splitlines() if all(w in line for w in words)]

    def wait_started(self, timeout: float = 60) -> None:
        wait_until(lambda: "evaluation #1 " in self.text() or self.proc.poll() is not None,
                   timeout, "the daemon's first evaluation")
        assert self.proc.poll() is None, self.text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._out.close()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self._out.close()


def start_daemon(tmp_path: Path, text: str, name: str = "daemon", debug: bool = False) -> DaemonProcess:
    """Write the configuration and start a daemon on it (use the ``daemons`` fixture in tests,
    which also kills what a failed test leaves running)."""
    conf = tmp_path / "phorque.conf"
    conf.write_text(text)
    daemon = DaemonProcess(conf, tmp_path / f"{name}.log", debug)
    try:
        daemon.wait_started()
    except BaseException:
        daemon.kill()
        raise
    return daemon


@dataclass
class Sample:
    """What the groups held at one moment between ``began`` and ``at`` (a read takes time)."""

    at: float
    clouds: dict[str, tuple[int, int]]  # name -> (desired, live instances)
    spend: float
    began: float = 0.0


@dataclass
class Sampler:
    """Reads every group (moto directly, the Phantom double's model) several times a second.

    ``capacity`` of a cloud is max(desired, live instances), as Phorque counts what it pays for.
    """

    moto_url: str
    clouds: list[Cloud]
    phantom: object = None
    interval: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._client = boto3.client("autoscaling", endpoint_url=self.moto_url, region_name="us-east-1",
                                    aws_access_key_id="testing", aws_secret_access_key="testing")
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def read(self) -> Sample:
        began = time.time()
        out: dict[str, tuple[int, int]] = {}
        moto = [c for c in self.clouds if c.kind == "moto"]
        if moto:
            reply = self._client.describe_auto_scaling_groups(
                AutoScalingGroupNames=[c.group for c in moto])
            by_name = {g["AutoScalingGroupName"]: g for g in reply["AutoScalingGroups"]}
            for cloud in moto:
                group = by_name.get(cloud.group)
                if group is None:
                    out[cloud.name] = (0, 0)
                    continue
                live = sum(1 for i in group["Instances"]
                           if not i["LifecycleState"].startswith(("Terminat", "Detach")))
                out[cloud.name] = (group["DesiredCapacity"], live)
        for cloud in self.clouds:
            if cloud.kind == "phantom":
                model = self.phantom.model
                with model.lock:
                    model.advance()
                    group = model.groups.get((PHANTOM_ID, cloud.group))
                    desired = group.minimum if group is not None else 0
                    live = sum(1 for vm in model.vms if vm.group == cloud.group and vm.alive)
                out[cloud.name] = (desired, live)
        prices = {c.name: c.price for c in self.clouds}
        spend = sum(max(d, n) * prices[name] for name, (d, n) in out.items())
        return Sample(time.time(), out, round(spend, 6), began)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.read())
            except Exception as exc:  # a sample lost is reported, not fatal to the test
                self.errors.append(repr(exc))
            self._stop.wait(self.interval)

    # -- what was seen -------------------------------------------------------------------
    def max_spend(self) -> float:
        return max((s.spend for s in self.samples), default=0.0)

    def max_capacity(self, cloud: str) -> int:
        return max((max(s.clouds[cloud]) for s in self.samples if cloud in s.clouds), default=0)

    def ever_used(self, cloud: str) -> bool:
        return self.max_capacity(cloud) > 0

    def first_used(self, cloud: str) -> float | None:
        return next((s.at for s in self.samples if max(s.clouds.get(cloud, (0, 0))) > 0), None)

    def used_for(self, cloud: str) -> tuple[float, float]:
        """The shortest and the longest the first use of ``cloud`` (capacity above 0, back to 0)
        can have lasted, given when the samples were taken: a sampler slowed by a busy machine
        widens the bracket, never moves it off the truth."""
        used = [max(s.clouds.get(cloud, (0, 0))) > 0 for s in self.samples]
        first = used.index(True)
        last = first + used[first:].index(False) - 1  # the last sample still using it
        end = self.samples[last + 1].at
        start_earliest = self.samples[first - 1].began if first > 0 else float("-inf")
        return self.samples[last].began - self.samples[first].at, end - start_earliest

    def check_limits(self, budget: float) -> None:
        """No cloud above its max_instances, no moment above the budget."""
        assert self.samples, f"no sample taken: {self.errors}"
        for cloud in self.clouds:
            top = self.max_capacity(cloud.name)
            assert top <= cloud.max_instances, f"{cloud.name}: capacity {top} > max {cloud.max_instances}"
        over = [s for s in self.samples if s.spend > budget + 1e-9]
        assert not over, f"spend above {budget}/h: {over[:3]}"
