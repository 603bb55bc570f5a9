"""A long sandbox workload under rotating cloud and Torque faults, with the real daemon.

Two cheap clouds (moto groups, each behind a fault proxy of its own) and a dear one (the Phantom
double). While a stream of jobs runs, every ``--period`` seconds the next fault of the schedule
is injected: API errors, throttling, read timeouts, replies lost after the change was made,
dropped connections, instances stuck pending, nodes that never come up, Torque commands failing,
hanging or printing partial output, pbs_server down. A sampler reads every group ten times a
second. Billing is per second (instances are released after 5 s idle), so instances come and go
and the faults meet launches, joins and terminations. At the end it prints the figures: did
every job complete, was ``max_instances`` or ``price_per_hour`` ever exceeded, and what Phorque
logged about each fault. Exit status 0 when every job ended with status 0 within the limits.

    python3 dev.py bench cloud_faults [--jobs 120] [--submit-secs 240] [--period 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test kits: the same clouds, sampler and daemon runner

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from phorque_testbed.sandbox import cli as sandbox_cli  # noqa: E402
from phorque_testbed.sandbox import cluster, hosts, server  # noqa: E402
from phorque_testbed.sandbox import faults as sandbox_faults  # noqa: E402
from tests.cloud.cloudkit import PHANTOM_ID, PHANTOM_SECRET  # noqa: E402
from tests.integration.faultkit import (  # noqa: E402
    Cloud,
    DaemonProcess,
    Sampler,
    clear_faults,
    conf_text,
    set_faults,
    start_proxy,
)
from tests.sandboxkit import Sandbox  # noqa: E402
from tests.servers import phantom as phantom_server  # noqa: E402
from tests.servers.phantom_model import Timing  # noqa: E402

BUDGET = 1.6


def schedule(c1: str, c2: str, sandbox: Sandbox) -> list[tuple[str, object]]:
    """(name, action) pairs, applied in turn; each clears what the one before set."""
    def api(url, **doc):
        return lambda: set_faults(url, **doc)

    def torque(command, mode):
        return lambda: sandbox_faults.write(sandbox.layout, {command: {"mode": mode}})

    def boot_delay(secs):
        return lambda: sandbox_cli.main(["configure", str(sandbox.root), "--boot-delay", str(secs)])

    return [
        ("cheap1: SetDesiredCapacity 500", api(c1, rules=[{"kind": "error", "status": 500,
                                                           "action": "SetDesiredCapacity"}])),
        ("cheap2: throttled", api(c2, rules=[{"kind": "throttle", "action": "*"}])),
        ("cheap1: instances stuck pending", api(c1, stuck_pending={"new": True})),
        ("cheap2: group reads time out", api(c2, rules=[{"kind": "delay", "seconds": 4,
                                                          "action": "DescribeAutoScalingGroups"}])),
        ("Torque: pbsnodes partial", torque("pbsnodes", "partial")),
        ("cheap1: launch replies lost", api(c1, rules=[{"kind": "delay", "seconds": 4, "phase": "after",
                                                         "action": "SetDesiredCapacity"}])),
        ("nodes never come up", boot_delay(100_000)),
        ("cheap2: connections dropped", api(c2, rules=[{"kind": "drop", "action": "*"}])),
        ("Torque: qstat hangs", torque("qstat", "hang")),
        ("Torque: pbs_server down", lambda: server.stop(sandbox.layout)),
        ("Torque: pbsnodes truncated", torque("pbsnodes", "truncate")),
        ("no fault", lambda: None),
    ]


def clear_all(c1: str, c2: str, sandbox: Sandbox) -> None:
    clear_faults(c1)
    clear_faults(c2)
    sandbox_faults.write(sandbox.layout, {})
    sandbox_cli.main(["configure", str(sandbox.root), "--boot-delay", "2"])
    if not server.server_running(sandbox.layout):
        server.start(sandbox.layout)


def submit_stream(sandbox: Sandbox, jobs: int, secs: float, rng: random.Random, out: list[str]) -> None:
    shapes = ["nodes=1:ppn=1", "nodes=1:ppn=2", "nodes=1:ppn=4", "nodes=2:ppn=4", "nodes=1:ppn=3"]
    for _ in range(jobs):
        time.sleep(rng.expovariate(jobs / secs))
        while True:
            try:
                out.append(sandbox.qsub("-l", rng.choice(shapes), runtime=rng.randint(5, 40)))
                break
            except AssertionError:  # pbs_server down: a user would submit again
                time.sleep(1)


def main() -> int:
    # The in-process moto server logs every request through werkzeug: thousands of lines that
    # would bury the benchmark's own.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=120)
    parser.add_argument("--submit-secs", type=float, default=240.0)
    parser.add_argument("--period", type=float, default=20.0, help="seconds each fault lasts")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    work = Path(tempfile.mkdtemp(prefix="phorque-faults-"))
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(work / "none")
    os.environ["AWS_CONFIG_FILE"] = str(work / "none")

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    boto3.client("autoscaling", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="a",
                 aws_secret_access_key="b").describe_auto_scaling_groups()
    phantom = phantom_server.start({PHANTOM_ID: PHANTOM_SECRET}, Timing(0.5, 1.0, 0.5))
    p1, p2 = start_proxy(moto_url), start_proxy(moto_url)
    # As the test kits: Torque's delays short, cloud-only jobs taken and kept (tests/conftest.py).
    layout = cluster.init(str(work / "cluster"), 1, 4, "srv.bench",
                          {"keep_completed": 0, "boot_delay": 2, "mom_list_delay": 1,
                           "obit_delay": 1, "delete_infeasible": 0}, None)
    cluster.set_queue(layout, "batch", is_transit="true")
    hosts.add_names(layout, ("*.amazonaws.com", "*.internal", "*.phantom.test", "*.internal.test"))
    sandbox = Sandbox(layout)
    sandbox.start()
    clouds = [Cloud("cheap1", "moto", p1.url, "g-cheap1", price=0.10, max_instances=4, charge=0,
                    boot_timeout=15),
              Cloud("cheap2", "moto", p2.url, "g-cheap2", price=0.12, max_instances=4, charge=0,
                    boot_timeout=15),
              Cloud("dear", "phantom", phantom.autoscale.url, "dearasg", price=0.40, max_instances=4,
                    charge=0, boot_timeout=15, ec2_url=phantom.ec2.url)]
    conf = work / "phorque.conf"
    conf.write_text(conf_text(work, sandbox, clouds, budget=str(BUDGET), loop_sleep=10, command_timeout=3,
                              policy_lines="idle_secs = 5\n"))
    sampler = Sampler(moto_url, clouds, phantom).start()
    daemon = DaemonProcess(conf, work / "daemon.log")
    daemon.wait_started()
    submitted: list[str] = []
    started = time.monotonic()
    feeder = threading.Thread(target=submit_stream, args=(sandbox, args.jobs, args.submit_secs, rng, submitted),
                              daemon=True)
    feeder.start()
    injected: list[str] = []
    steps = schedule(p1.url, p2.url, sandbox)
    step = 0
    try:
        while feeder.is_alive() or len({r[2] for r in sandbox.records("E")}) < len(submitted):
            name, action = steps[step % len(steps)]
            clear_all(p1.url, p2.url, sandbox)
            action()
            injected.append(name)
            print(f"{time.monotonic() - started:6.0f} s  {name}", flush=True)
            time.sleep(args.period)
            step += 1
            if time.monotonic() - started > args.submit_secs + 900:
                print("giving up: the workload did not complete")
                break
    finally:
        clear_all(p1.url, p2.url, sandbox)
    took = time.monotonic() - started
    time.sleep(2)
    sampler.stop()
    daemon.stop()
    ends = {r[2]: r[3] for r in sandbox.records("E")}
    ok = sum(1 for text in ends.values() if "Exit_status=0" in text)
    text = daemon.text()

    def count(*words: str) -> int:
        return sum(1 for line in text.splitlines() if all(w in line for w in words))

    print(f"\n{len(submitted)} jobs submitted, {len(ends)} ended ({ok} with exit status 0) in {took:.0f} s; "
          f"{len(injected)} fault periods of {args.period:g} s")
    print(f"max spend {sampler.max_spend():.2f}/h (budget {BUDGET}/h) over {len(sampler.samples)} samples")
    for cloud in clouds:
        print(f"  {cloud.name:7s} max capacity {sampler.max_capacity(cloud.name)} (max_instances "
              f"{cloud.max_instances}); launches done {count('launch', f'on {cloud.name}', '-> done')}, "
              f"failed {count('launch', f'on {cloud.name}', '-> failed')}; failures recorded "
              f"{count(f'cloud {cloud.name}: failure')} (and {count(f'cloud {cloud.name}: failed again')} "
              "more while backed off)")
    for label, words in (("evaluations", ("evaluation #",)),
                         ("evaluations skipped (Torque unreadable)", ("skipped: Torque could not be read",)),
                         ("planned again after a cloud fell", ("planning again",)),
                         ("clouds unreadable", ("cannot read its group",)),
                         ("instances given up (never joined)", ("terminate", "did not join", "-> done")),
                         ("nodes given up (never came up)", ("terminate", "never came up", "-> done")),
                         ("nodes missing from a read, left alone", ("is missing from Torque's node list",)),
                         ("drains skipped (a job started / unreadable)", ("drain", "-> skipped"))):
        print(f"  {label}: {count(*words)}")
    over = [s for s in sampler.samples if s.spend > BUDGET + 1e-9]
    capped = all(sampler.max_capacity(c.name) <= c.max_instances for c in clouds)
    print(f"log: {daemon.log}")
    p1.stop()
    p2.stop()
    phantom.stop()
    server.stop(sandbox.layout)
    moto.stop()
    good = ok == len(submitted) == args.jobs and not over and capped
    print("RESULT:", "ok" if good else "FAILED")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
