"""``phorque-demo``: Phorque's whole job, live, on the built-in sandbox and a local cloud.

It starts a moto server on 127.0.0.1 (the cloud), creates a sandbox Torque cluster with two
static nodes, starts the Phorque daemon, submits a burst of jobs larger than the cluster, and
shows the queue, the instances launching, the nodes joining, the jobs running, and the instances
draining and terminating at their (short, demo) charge boundary. Then it stops everything it
started and prints a summary. Nothing here needs Torque or a cloud account.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from phorque_testbed.demo_view import Observer, summary

DEMO_JOBS = [  # (qsub -l resources, sandbox run time in seconds, how many)
    ("nodes=1:ppn=4", 25, 4),
    ("nodes=2:ppn=4", 30, 1),
    ("nodes=1:ppn=2", 20, 4),
    ("nodes=1:ppn=1", 15, 4),  # not procs=1: a real pbs_sched 6.1.3 never starts procs jobs
]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:g} s") from None
            time.sleep(0.2)


CONFIG = """\
# Written by phorque-demo.
[Phorque]
cluster_directory = {cluster}
torque_home = {cluster}
state_dir = {state}
loop_sleep_secs = 120
event_delay_secs = 0.2
trigger_address = 127.0.0.1:{trigger}
boot_timeout_secs = 120

[Policy]
name = {policy}
price_per_hour = 1.0
{policy_options}
[Cloud-demo]
cloud_type = aws
cloud_uri = {moto}
autoscale_uri = {moto}
access_id = demo-access-key
secret_key = demo-secret-key
image_id = ami-12c6146b
autoscale_group_name = phorque-demo
launch_config_name = phorque-demo-lc
instance_type = t3.xlarge
instance_cores = 4
max_instances = 4
price = 0.10
charge_time_secs = {charge}
boot_secs = {boot}
"""


@dataclass
class Demo:
    workdir: Path
    charge: int
    boot: int
    policy: str
    speed: float = 1.0
    processes: list[subprocess.Popen] = field(default_factory=list)
    cluster: Path | None = None
    moto_url: str = ""
    conf: Path | None = None

    def bin(self, name: str) -> str:
        found = shutil.which(name, path=os.path.dirname(sys.executable))
        return found or name

    def start_cloud(self) -> None:
        port = free_port()
        self.moto_url = f"http://127.0.0.1:{port}"
        log = open(self.workdir / "moto.log", "w")
        self.processes.append(subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        wait_http(self.moto_url + "/moto-api/", 60)

    def start_cluster(self) -> None:
        self.cluster = self.workdir / "cluster"
        sandbox = self.bin("phorque-sandbox")
        subprocess.run([sandbox, "init", str(self.cluster), "--nodes", "2", "--np", "4",
                        "--server", "head.demo", "--cloud-endpoint", self.moto_url,
                        "--boot-delay", str(self.boot * self.speed), "--keep-completed", "0",
                        "--speed", f"{self.speed:g}"],
                       check=True, stdout=subprocess.DEVNULL, timeout=60)
        subprocess.run([sandbox, "start", str(self.cluster)], check=True, stdout=subprocess.DEVNULL,
                       timeout=60)

    def start_phorque(self) -> None:
        assert self.cluster is not None
        self.conf = self.workdir / "phorque.conf"
        options = "scale_in_margin_secs = 10\n" if self.policy == "CostAware" else ""
        self.conf.write_text(CONFIG.format(cluster=self.cluster, state=self.workdir / "state",
                                           trigger=free_port(socket.SOCK_DGRAM), moto=self.moto_url,
                                           charge=self.charge, boot=self.boot, policy=self.policy,
                                           policy_options=options))
        log = open(self.workdir / "phorque.log", "w")
        env = {**os.environ, "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_CONFIG_FILE": "/dev/null"}
        self.processes.append(subprocess.Popen([self.bin("phorque"), "-c", str(self.conf)],
                                               stdout=log, stderr=subprocess.STDOUT, env=env,
                                               start_new_session=True))

    def submit(self) -> list[str]:
        assert self.cluster is not None
        ids = []
        for resources, runtime, count in DEMO_JOBS:
            for _ in range(count):
                script = f"#!/bin/sh\n#SANDBOX runtime={runtime}\nsleep {runtime}\n"
                out = subprocess.run([str(self.cluster / "bin" / "qsub"), "-l", resources, "-N", "demo"],
                                     input=script, capture_output=True, text=True, timeout=30, check=True)
                ids.append(out.stdout.strip())
        return ids

    def stop(self) -> None:
        """Stop everything this demo started, daemon first."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.cluster is not None:
            subprocess.run([self.bin("phorque-sandbox"), "stop", str(self.cluster)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phorque-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--charge", type=int, default=60, help="demo billing period in seconds (60)")
    parser.add_argument("--boot", type=int, default=8, help="seconds an instance takes to boot (8)")
    parser.add_argument("--policy", default="CostAware", help="policy to run (CostAware)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="run the jobs this many times faster (the sandbox's speed factor)")
    parser.add_argument("--timeout", type=int, default=420, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the demo's folder (logs, state)")
    args = parser.parse_args(argv)
    try:
        import moto.server  # noqa: F401
    except ImportError:
        print("phorque-demo needs the sandbox extras: pip install 'phorque[sandbox]'", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="phorque-demo-"))
    demo = Demo(workdir, args.charge, args.boot, args.policy, args.speed)
    interrupted = False

    def on_signal(signum, _frame):
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    observer = None
    jobs: list[str] = []
    report, done = "", False
    try:
        print(f"Phorque demo in {workdir}: a local cloud (moto), a sandbox cluster of 2 nodes x 4 "
              f"cores, billing every {args.charge} s, instances booting in {args.boot} s")
        demo.start_cloud()
        demo.start_cluster()
        demo.start_phorque()
        assert demo.cluster is not None and demo.conf is not None
        observer = Observer(demo.cluster, demo.moto_url, workdir / "phorque.log", args.charge)
        observer.wait_for_daemon(60)
        jobs = demo.submit()
        print(f"submitted {len(jobs)} jobs needing {observer.queued_cores()} cores; the cluster has 8")
        deadline = time.monotonic() + args.timeout
        while not interrupted and time.monotonic() < deadline:
            observer.show()
            if observer.finished(len(jobs)):
                done = True
                break
            time.sleep(1)
        time.sleep(2)  # the last removals
        observer.show()
        report = summary(observer)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
        print(report or "(stopped before the end: no summary)")
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if interrupted:
        print("interrupted: everything the demo started has been stopped")
        return 130
    if not done:
        print(f"the demo did not finish within {args.timeout} s")
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
