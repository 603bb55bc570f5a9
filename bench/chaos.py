"""The chaos benchmark: a workload of many jobs through a sandbox cluster and two clouds (a
moto server behind the fault proxy) with the real daemon, while the cloud fails, Torque fails
and the daemon is killed, at random times and at random crash points, and restarted.

At the end, once the cluster has scaled in, it prints:

  jobs completed              E records with Exit_status 0
  jobs killed (must be 0)     E records with another exit status, D (deleted) and R (requeued)
                              records: a job Phorque's scale-in interrupted
  orphan instances (0)        live instances left at the end: not a Torque node after the boot
                              timeout, unknown to the state, or simply not scaled in
  orphan nodes (0)            Torque nodes, other than the static one, whose instance is gone
  lost state entries (0)      instances launched that the state never recorded, and records
                              whose stage or node disagrees with the instance after convergence
  faults injected, by kind; daemon kills, by kind; wall time

and exits 1 when a must-be-zero figure is not zero.

    python3 dev.py bench chaos                 # 10,000 jobs, about 15 minutes
    python3 dev.py bench chaos --jobs 500      # a quick try
    python3 dev.py bench chaos --seed 7 --dir /tmp/chaos   # keep the logs there
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test kit: moto in a process, daemon processes, the audit

from phorque.act.crashpoints import POINTS  # noqa: E402
from phorque.core.model import Stage  # noqa: E402
from phorque_testbed.sandbox import faults as torque_faults  # noqa: E402
from phorque_testbed.sandbox import server  # noqa: E402
from tests.integration.crashkit import DaemonProcess, MotoProcess, World, free_port  # noqa: E402
from tests.servers import faults as fault_proxy  # noqa: E402

REGION = "eu-west-1"
CHARGE_SECS = 30        # the cheap cloud bills per 30 s (real time); the dear one per second
BOOT_TIMEOUT = 25
SCRIPT = "#!/bin/sh\n#SANDBOX runtime={runtime}\ntrue\n"


def conf_text(world: World, proxy: str, trigger_port: int) -> str:
    cloud = """
[Cloud-{name}]
cloud_uri = {proxy}
autoscale_uri = {proxy}
access_id = testing
secret_key = testing
region = {region}
availability_zone = {region}a
image_id = ami-12c6146b
autoscale_group_name = chaos-{name}
launch_config_name = chaos-{name}-lc
instance_type = {type}
instance_cores = {cores}
max_instances = {max}
charge_time_secs = {charge}
price = {price}
boot_secs = 3
connect_timeout_secs = 2
read_timeout_secs = 4
max_attempts = 2
"""
    return f"""
[Phorque]
cluster_directory = {world.sandbox.root}
torque_home = {world.sandbox.root}
state_dir = {world.root / 'state'}
loop_sleep_secs = 10
event_delay_secs = 0.5
command_timeout_secs = 4
boot_timeout_secs = {BOOT_TIMEOUT}
trigger_address = 127.0.0.1:{trigger_port}

[Policy]
name = CostAware
price_per_hour = 10
scale_in_margin_secs = 6
""" + cloud.format(name="cheap", proxy=proxy, region=REGION, type="t3.xlarge", cores=4, max=8,
                   charge=CHARGE_SECS, price=0.1) + \
        cloud.format(name="dear", proxy=proxy, region=REGION, type="c5.2xlarge", cores=8, max=4,
                     charge=0, price=0.3)


class Accounting:
    """Counts the sandbox's accounting records as they are written (read incrementally)."""

    def __init__(self, directory: str):
        self.directory = directory
        self.offsets: dict[str, int] = {}
        self.started: set[str] = set()
        self.queued: set[str] = set()
        self.exits: dict[str, int] = {}
        self.deleted: set[str] = set()
        self.requeued: Counter[str] = Counter()
        self.lock = threading.Lock()

    def poll(self) -> None:
        with self.lock:
            for name in sorted(os.listdir(self.directory)):
                path = os.path.join(self.directory, name)
                with open(path, "rb") as handle:
                    handle.seek(self.offsets.get(path, 0))
                    data = handle.read()
                end = data.rfind(b"\n") + 1  # a line still being written is read next time
                self.offsets[path] = self.offsets.get(path, 0) + end
                for line in data[:end].decode("utf-8", "replace").splitlines():
                    self._record(line.split(";", 3))

    def _record(self, parts: list[str]) -> None:
        if len(parts) < 3:
            return
        kind, job = parts[1], parts[2]
        if kind == "Q":
            self.queued.add(job)
        elif kind == "S":
            self.started.add(job)
        elif kind == "E":
            status = next((t.split("=", 1)[1] for t in parts[3].split() if t.startswith("Exit_status=")), "?")
            self.exits[job] = int(status) if status.lstrip("-").isdigit() else -999
        elif kind == "D":
            self.deleted.add(job)
        elif kind == "R":
            self.requeued[job] += 1

    @property
    def completed(self) -> int:
        return sum(1 for status in self.exits.values() if status == 0)


class Workload:
    """Submits the jobs in waves of mixed shapes: arrays of one-core jobs, single and two-node
    jobs, three-core jobs; sandbox run times of 10-90 s."""

    def __init__(self, world: World, total: int, waves: int, rng: random.Random, torque_up: threading.Lock):
        self.world, self.total, self.waves, self.rng = world, total, waves, rng
        self.torque_up = torque_up
        self.submitted = 0
        self.shapes: Counter[str] = Counter()

    def qsub(self, args: list[str], runtime: int) -> None:
        script = SCRIPT.format(runtime=runtime)
        for _attempt in range(100):
            with self.torque_up:  # never while the chaos has pbs_server down
                proc = subprocess.run([self.world.sandbox.layout.command("qsub"), *args], input=script,
                                      text=True, capture_output=True, timeout=30)
            if proc.returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"qsub {args} kept failing: {proc.stderr}")

    def one(self, left: int) -> int:
        r, rng = self.rng.random(), self.rng
        if r < 0.25:
            count = min(left, rng.randint(2, 10))
            self.qsub(["-t", f"0-{count - 1}", "-l", "nodes=1:ppn=1"], rng.randint(10, 60))
            self.shapes["array sub-job, 1 core"] += count
            return count
        if r < 0.65:
            ppn = rng.choice((1, 2, 4))
            self.qsub(["-l", f"nodes=1:ppn={ppn}"], rng.randint(10, 90))
            self.shapes[f"nodes=1:ppn={ppn}"] += 1
        elif r < 0.9:
            self.qsub(["-l", "nodes=2:ppn=2"], rng.randint(10, 60))
            self.shapes["nodes=2:ppn=2"] += 1
        else:
            # not procs=3: a real pbs_sched 6.1.3 never starts procs jobs (nor does the sandbox)
            self.qsub(["-l", "nodes=1:ppn=3"], rng.randint(10, 60))
            self.shapes["nodes=1:ppn=3"] += 1
        return 1

    def wave(self, size: int) -> None:
        target = min(self.total, self.submitted + size)
        while self.submitted < target:
            self.submitted += self.one(target - self.submitted)


class Chaos:
    """Injects cloud faults (through the proxy), Torque faults (the sandbox's fault table, and
    pbs_server down) and kills the daemon (SIGKILL at random times, and crash points)."""

    CLOUD_ACTIONS = ("SetDesiredCapacity", "DescribeAutoScalingGroups", "DescribeInstances",
                     "TerminateInstanceInAutoScalingGroup", "DescribeAutoScalingInstances")

    def __init__(self, world: World, proxy: str, rng: random.Random, torque_up: threading.Lock):
        self.world, self.proxy, self.rng = world, proxy, rng
        self.torque_up = torque_up
        self.faults: Counter[str] = Counter()
        self.kills: Counter[str] = Counter()
        self.stop = threading.Event()
        self.daemon: DaemonProcess | None = None
        self.starts = 0
        self.stuck_until = 0.0

    # -- the daemon ------------------------------------------------------------------------
    def start_daemon(self, crashpoint: str | None = None) -> None:
        log = self.world.root / f"daemon{self.starts:03d}.log"
        self.starts += 1
        self.daemon = DaemonProcess(self.world.conf, log, crashpoint)

    def _next_kill(self) -> float:
        # A daemon armed with a crash point gets longer to reach it.
        assert self.daemon is not None
        return time.monotonic() + self.rng.uniform(*((60, 150) if self.daemon.crashpoint else (15, 40)))

    def supervise(self) -> None:
        """Restart the daemon whenever it died; kill it now and then."""
        next_kill = self._next_kill()
        while not self.stop.wait(0.2):
            assert self.daemon is not None
            if not self.daemon.alive():
                code = self.daemon.kill()
                if self.daemon.crashpoint and f"crash point {self.daemon.crashpoint.split(':')[0]}" \
                        in self.daemon.text():
                    self.kills[f"crash point {self.daemon.crashpoint.split(':')[0]}"] += 1
                elif code != -9:
                    self.kills[f"daemon exited by itself ({code})"] += 1
                time.sleep(self.rng.uniform(0.2, 3))
                self._restart()
                next_kill = self._next_kill()
            elif time.monotonic() >= next_kill:
                self.daemon.kill()
                armed = " (its crash point not reached)" if self.daemon.crashpoint else ""
                self.kills[f"SIGKILL at a random time{armed}"] += 1
                time.sleep(self.rng.uniform(0.2, 3))
                self._restart()
                next_kill = self._next_kill()

    def _restart(self) -> None:
        point = None
        if self.rng.random() < 0.6:
            point = f"{self.rng.choice(list(POINTS))}:{self.rng.randint(1, 2)}"
        self.start_daemon(point)

    # -- faults ----------------------------------------------------------------------------
    def _control(self, method: str, doc: dict | None = None) -> None:
        data = None if doc is None else json.dumps(doc).encode()
        req = urllib.request.Request(self.proxy + "/_faults", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (127.0.0.1)
            resp.read()

    def cloud_fault(self) -> None:
        rng = self.rng
        if time.monotonic() < self.stuck_until:
            return  # a new control would release the stuck instances early
        if self.stuck_until:
            self._control("DELETE")
            self.stuck_until = 0.0
        kind = rng.choice(("error", "throttle", "timeout", "drop-after", "stuck-pending"))
        action = rng.choice(self.CLOUD_ACTIONS)
        if kind == "stuck-pending":
            self._control("POST", {"stuck_pending": {"new": True}})
            self.stuck_until = time.monotonic() + rng.uniform(10, 30)
        elif kind == "error":
            self._control("POST", {"rules": [{"kind": "error", "status": rng.choice((500, 503)),
                                              "action": action, "times": rng.randint(1, 2)}]})
        elif kind == "throttle":
            self._control("POST", {"rules": [{"kind": "throttle", "action": action,
                                              "times": rng.randint(1, 3)}]})
        elif kind == "timeout":
            self._control("POST", {"rules": [{"kind": "delay", "seconds": 6, "action": action,
                                              "times": 2}]})
        else:
            action = rng.choice(("SetDesiredCapacity", "TerminateInstanceInAutoScalingGroup"))
            self._control("POST", {"rules": [{"kind": "drop", "phase": "after", "action": action,
                                              "times": 1}]})
        self.faults[f"cloud {kind}"] += 1

    def torque_fault(self) -> None:
        rng = self.rng
        if rng.random() < 0.15:
            with self.torque_up:
                server.stop(self.world.sandbox.layout)
                time.sleep(rng.uniform(2, 8))
                server.start(self.world.sandbox.layout)
            self.faults["torque pbs_server down"] += 1
            return
        command = rng.choice(("qstat", "pbsnodes", "pbsnodes", "qmgr"))
        mode = rng.choice(("fail", "hang", "truncate", "invalid") if command != "qmgr" else ("fail", "hang"))
        table = torque_faults.read(self.world.sandbox.layout)
        table[command] = {"mode": mode, "count": rng.randint(1, 3)}
        torque_faults.write(self.world.sandbox.layout, table)
        self.faults[f"torque {command} {mode}"] += 1

    def inject(self) -> None:
        while not self.stop.wait(self.rng.uniform(3, 8)):
            try:
                # Cloud faults are rarer: each failure lengthens the cloud's back-off (up to
                # 30 minutes), and a benchmark that only waits for back-offs measures nothing.
                self.cloud_fault() if self.rng.random() < 0.25 else self.torque_fault()
            except Exception as exc:  # the benchmark goes on; the count says what happened
                self.faults[f"injection failed: {type(exc).__name__}"] += 1

    def calm(self) -> None:
        """Stop the chaos: clear every fault, pbs_server up, one daemon without a crash point."""
        self.stop.set()
        self._control("DELETE")
        torque_faults.write(self.world.sandbox.layout, {})
        if not server.server_running(self.world.sandbox.layout):
            server.start(self.world.sandbox.layout)
        if self.daemon is not None and self.daemon.alive() and self.daemon.crashpoint:
            self.daemon.kill()
        if self.daemon is None or not self.daemon.alive():
            self.start_daemon()


def reap_stray_commands(bin_dir: str) -> int:
    """Kill the cluster's Torque commands still running: a daemon killed while a command hung
    (a sandbox ``hang`` fault) leaves it behind, in its own session. Returns how many."""
    found = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if any(a.decode(errors="replace").startswith(bin_dir + os.sep) for a in argv[:3]):
            try:
                os.kill(int(entry), 9)
                found += 1
            except OSError:
                pass
    return found


def wait(predicate, timeout: float, interval: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs to run (array sub-jobs count one each)")
    parser.add_argument("--waves", type=int, default=0, help="submission waves (default: one per 500 jobs)")
    parser.add_argument("--speed", type=float, default=30.0, help="sandbox speed factor (default 30)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", default="", help="keep the cluster, state and logs here")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    base = Path(args.dir or tempfile.mkdtemp(prefix="phorque-chaos-"))
    base.mkdir(parents=True, exist_ok=True)
    waves = args.waves or max(2, args.jobs // 500)
    started = time.monotonic()
    moto = MotoProcess(base / "moto.log")
    moto.warm([REGION])
    proxy, _ = fault_proxy.start(moto.url)
    world = World(base / "world", moto.url, REGION, static_nodes=1, static_np=4, boot_delay=60,
                  speed=args.speed, boot_timeout=BOOT_TIMEOUT)
    world.conf.write_text(conf_text(world, proxy.url, free_port(socket.SOCK_DGRAM)))
    acct = Accounting(world.sandbox.layout.accounting)
    torque_up = threading.Lock()
    work = Workload(world, args.jobs, waves, rng, torque_up)
    chaos = Chaos(world, proxy.url, random.Random(args.seed + 1), torque_up)
    chaos.start_daemon()
    threads = [threading.Thread(target=chaos.supervise, daemon=True),
               threading.Thread(target=chaos.inject, daemon=True)]
    for thread in threads:
        thread.start()
    print(f"chaos: {args.jobs:,} jobs in {waves} waves, speed {args.speed:g}, seed {args.seed}; "
          f"logs in {base}", flush=True)
    try:
        for number in range(waves):
            work.wave(-(-(args.jobs - work.submitted) // (waves - number)))
            # Let the wave start; then a pause of random length, so that instances also idle
            # out, drain and go between waves.
            wait(lambda: (acct.poll(), len(acct.started) >= work.submitted)[1], 1800, 2)
            time.sleep(rng.choice((0, 10, 40)))
            print(f"  wave {number + 1}/{waves}: {work.submitted:,} submitted, {acct.completed:,} "
                  f"completed, {sum(chaos.faults.values())} faults, {sum(chaos.kills.values())} kills, "
                  f"{time.monotonic() - started:.0f} s", flush=True)
        wait(lambda: (acct.poll(), len(acct.exits) + len(acct.deleted - set(acct.exits)) >= work.submitted)[1],
             1800, 2)
    finally:
        chaos.calm()
        for thread in threads:
            thread.join(timeout=30)
    # Converge: every instance scaled in, only the static node left, every record final.
    def converged() -> bool:
        try:
            instances, nodes, records = world.instances(), world.nodes(), world.records()
        except Exception:
            return False
        return (not any(i.live for i in instances) and set(nodes) == world.static
                and all(r.stage == Stage.GONE for r in records))

    settled = wait(converged, 4 * CHARGE_SECS + 3 * BOOT_TIMEOUT, 2)
    final = world.audit()
    instances = world.instances()
    acct.poll()
    assert chaos.daemon is not None
    chaos.daemon.stop()
    logs = "".join(p.read_text(errors="replace") for p in sorted(world.root.glob("daemon*.log")))
    wall = time.monotonic() - started
    proxy.stop()
    world.close()
    moto.stop()
    strays = reap_stray_commands(world.sandbox.layout.bin)

    killed_exit = sorted(j for j, s in acct.exits.items() if s != 0)
    killed = len(killed_exit) + len(acct.deleted) + len(acct.requeued)
    unfinished = work.submitted - len(acct.exits) - len(acct.deleted - set(acct.exits))
    live_left = [i.id for i in instances if i.live]
    orphans = sorted(set(final.orphan_instances) | {f"{i} still live at the end" for i in live_left})
    rows = [
        ("jobs submitted", f"{work.submitted:,}", ", ".join(f"{k} {v:,}" for k, v in sorted(work.shapes.items()))),
        ("jobs completed", f"{acct.completed:,}", "Exit_status 0"),
        ("jobs killed (must be 0)", f"{killed}", f"non-zero exit {len(killed_exit)}, deleted "
                                                 f"{len(acct.deleted)}, requeued {len(acct.requeued)}"),
        ("jobs unfinished", f"{unfinished}", ""),
        ("instances launched", f"{len(instances)}", ""),
        ("orphan instances (must be 0)", f"{len(orphans)}", "; ".join(orphans[:5])),
        ("orphan nodes (must be 0)", f"{len(final.orphan_nodes)}", ", ".join(final.orphan_nodes[:5])),
        ("lost state entries (must be 0)", f"{len(final.lost_state)}", "; ".join(final.lost_state[:5])),
        ("converged after the chaos", "yes" if settled else "NO", ""),
        ("daemon kills", f"{sum(chaos.kills.values())}", ", ".join(f"{k} {v}" for k, v in sorted(chaos.kills.items()))),
        ("daemon starts", f"{chaos.starts}", ""),
        ("faults injected", f"{sum(chaos.faults.values())}", ""),
    ]
    rows += [(f"  {kind}", f"{count}", "") for kind, count in sorted(chaos.faults.items())]
    rows += [("tracebacks in the daemon logs", f"{logs.count('Traceback')}", ""),
             ("hung commands left by killed daemons", f"{strays}", "killed at the end"),
             ("wall time", f"{wall // 60:.0f} min {wall % 60:.0f} s", "")]
    print()
    for label, value, detail in rows:
        print(f"{label:<34} {value:>8}  {detail}".rstrip())
    bad = killed or orphans or final.orphan_nodes or final.lost_state or unfinished or not settled
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
