"""What ``phorque-demo`` shows: the queue, nodes, instances and Phorque's decisions, live; and
the summary at the end (jobs run, waits, instance-seconds paid)."""

from __future__ import annotations

import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

import boto3

from phorque.adapters.torque.accounting import AccountingParser, Record
from phorque.adapters.torque.commands import Torque
from phorque.core.errors import PhorqueError

EVENT_RE = re.compile(r"phorque\.(?:executor|daemon): (?P<text>(launch|join|drain|terminate|remove|undrain|cancel)"
                      r" .*|evaluation #\d+ .*)")


class Observer:
    """Watches the sandbox, the cloud and the daemon's log for the demo."""

    def __init__(self, cluster: Path, moto_url: str, log_path: Path, charge: int):
        self.cluster = cluster
        self.torque = Torque(cluster_directory=str(cluster), timeout=20)
        self.ec2 = boto3.client("ec2", endpoint_url=moto_url, region_name="us-east-1",
                                aws_access_key_id="demo", aws_secret_access_key="demo")
        self.log_path = log_path
        self.charge = charge
        self.started = time.time()
        self.launched: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self._log_offset = 0
        self.events: list[str] = []
        self.evaluations = 0
        self.tty = sys.stdout.isatty()
        self._last_line = ""

    def wait_for_daemon(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while "evaluation #1 " not in self.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not start; see {self.log_path}")
            time.sleep(0.2)

    # -- reading -------------------------------------------------------------------------
    def queued_cores(self) -> int:
        return sum(j.cores for j in self.torque.jobs() if j.is_queued)

    def _instances(self) -> dict[str, str]:
        states = {}
        for reservation in self.ec2.describe_instances()["Reservations"]:
            for inst in reservation["Instances"]:
                iid, state = inst["InstanceId"], inst["State"]["Name"]
                states[iid] = state
                self.launched.setdefault(iid, inst["LaunchTime"].timestamp())
                if state in ("terminated", "shutting-down"):
                    self.ended.setdefault(iid, time.time())
        return states

    def _new_events(self) -> list[str]:
        with open(self.log_path, errors="replace") as handle:
            handle.seek(self._log_offset)
            text = handle.read()
            self._log_offset = handle.tell()
        found = []
        for line in text.splitlines():
            match = EVENT_RE.search(line)
            if match:
                stamp = line[11:19]
                found.append(f"{stamp} {match.group('text')}")
                if "evaluation #" in line:
                    self.evaluations += 1
        return found

    def accounting(self) -> list[Record]:
        parser = AccountingParser()
        records: list[Record] = []
        folder = self.cluster / "server_priv" / "accounting"
        for name in sorted(os.listdir(folder)):
            records.extend(parser.parse_file(folder / name))
        return records

    def finished(self, jobs: int) -> bool:
        ended = sum(1 for r in self.accounting() if r.type == "E")
        live = [s for s in self._instances().values() if s not in ("terminated", "shutting-down")]
        return ended >= jobs and not live

    # -- showing -------------------------------------------------------------------------
    def show(self) -> None:
        try:
            jobs, nodes = self.torque.jobs(), self.torque.nodes()
        except PhorqueError as exc:
            print(f"(cannot read the sandbox: {exc})")
            return
        instances = self._instances()
        events = self._new_events()
        self.events.extend(e for e in events if "evaluation #" not in e)
        counts = {s: sum(1 for j in jobs if j.state == s) for s in "QR"}
        done = sum(1 for r in self.accounting() if r.type == "E")
        live = {i: s for i, s in instances.items() if s not in ("terminated",)}
        node_text = "  ".join(f"{_short(n.name)}[{','.join(sorted(n.state))}:{len(n.jobs)}]" for n in nodes)
        state = (f"queued {counts['Q']:2d}  running {counts['R']:2d}  done {done:2d}  instances {len(live)} "
                 f"({', '.join(sorted(set(live.values()))) or '-'})  nodes: {node_text}")
        line = f"t+{time.time() - self.started:3.0f}s  {state}"
        if self.tty:
            sys.stdout.write("\x1b[2J\x1b[H" + line + "\n\nPhorque's decisions:\n")
            for event in self.events[-14:]:
                sys.stdout.write(f"  {event[:150]}\n")
            sys.stdout.flush()
            return
        for event in events:
            if "evaluation #" not in event:
                print(f"    phorque: {event[:160]}")
        if state != self._last_line:
            print(line)
            self._last_line = state


def _short(name: str) -> str:
    return name.split(".", 1)[0][:18]


def summary(observer: Observer) -> str:
    """Jobs run, waits, and what the instances cost in paid seconds."""
    try:
        records = observer.accounting()
        observer._instances()
    except Exception as exc:  # the summary must never hide the demo's own result
        return f"(no summary: {exc})"
    queued = {r.job_id: r.time for r in records if r.type == "Q"}
    starts = {r.job_id: r.start or r.time for r in records if r.type == "S"}
    ends = [r for r in records if r.type == "E"]
    waits = [starts[j] - queued[j] for j in starts if j in queued]
    killed = [r.job_id for r in ends if (r.exit_status or 0) != 0]
    lines = ["", "Summary"]
    lines.append(f"  jobs run: {len(ends)} (exit status not 0: {len(killed)})")
    if waits:
        lines.append(f"  wait: mean {statistics.mean(waits):.1f} s, max {max(waits):.1f} s")
    paid = used = 0.0
    for iid, start in observer.launched.items():
        end = observer.ended.get(iid, time.time())
        life = max(0.0, end - start)
        used += life
        paid += math.ceil(life / observer.charge) * observer.charge if observer.charge else life
    lines.append(f"  instances: {len(observer.launched)}, alive {used:.0f} instance-seconds, "
                 f"paid {paid:.0f} instance-seconds (billing every {observer.charge} s)")
    lines.append(f"  Phorque's decisions: {len(observer.events)} actions over {observer.evaluations} evaluations")
    left = [i for i in observer.launched if i not in observer.ended]
    lines.append("  instances left running: " + (", ".join(left) if left else "none"))
    return "\n".join(lines)
