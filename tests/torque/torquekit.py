"""The real-Torque tier's kit: the private Torque of `torquebed`, reset between tests, and the
stand-in for a cloud instance's user data (a real pbs_mom for each instance Phorque joins)."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from tests import waiting
from torquebed.cluster import Cluster

BASE_MOMS = ("torque-mom1", "torque-mom2")
NP = 2


@dataclass
class RealTorque:
    """The running private Torque, as the tests use it."""

    cluster: Cluster

    @property
    def cluster_directory(self) -> str:
        return str(self.cluster.build.prefix)

    @property
    def torque_home(self) -> str:
        return str(self.cluster.home)

    # The sandbox's names, so the end-to-end kits' configuration writers take either.
    @property
    def root(self) -> str:
        return self.cluster_directory

    @property
    def server_priv(self) -> Path:
        return self.cluster.server_priv

    def run(self, name: str, *args: str, **kwargs):
        return self.cluster.run(name, *args, **kwargs)

    def qsub(self, *args: str, script: str = "sleep 1\n") -> str:
        return self.cluster.qsub(*args, script=script)

    def qmgr(self, directive: str) -> None:
        self.cluster.qmgr(directive)

    def job_states(self) -> dict[str, str]:
        """Job id -> state letter, from `qstat -f -x -t`."""
        out = self.run("qstat", "-f", "-x", "-t").stdout
        if not out.strip():
            return {}
        root = ET.fromstring(out)
        return {j.findtext("Job_Id", ""): j.findtext("job_state", "") for j in root.iter("Job")}

    def job_attr(self, job_id: str, tag: str) -> str | None:
        out = self.run("qstat", "-f", "-x", job_id).stdout
        if not out.strip():
            return None
        job = ET.fromstring(out).find("Job")
        return None if job is None else job.findtext(tag)

    def nodes(self) -> dict[str, str]:
        return self.cluster.node_states()

    def accounting(self) -> list[str]:
        folder = self.server_priv / "accounting"
        lines: list[str] = []
        for path in sorted(folder.iterdir()):
            lines.extend(path.read_text(errors="replace").splitlines())
        return lines

    def records(self, kind: str, job: str | None = None) -> list[list[str]]:
        out = []
        for line in self.accounting():
            parts = line.split(";", 3)
            if len(parts) == 4 and parts[1] == kind and (job is None or parts[2] == job):
                out.append(parts)
        return out

    def exit_status(self, job: str) -> int | None:
        for _date, _kind, _job, text in self.records("E", job):
            for token in text.split():
                if token.startswith("Exit_status="):
                    return int(token.split("=", 1)[1])
        return None

    def wait_jobs(self, ids, states: str, timeout: float = 120) -> None:
        waiting.wait_for(lambda: all(self.job_states().get(i, "C") in states for i in ids), timeout,
                         f"jobs {' '.join(ids)} in state {states}", interval=0.3)

    def recreate_base_node(self, name: str) -> None:
        """Give a base mom's node its first attributes back (qmgr cannot unset ``gpus``, nor
        set it to 0): delete it and create it again at its mom's ports; the running mom
        reports in again and ``reset`` waits for the node to be free."""
        port = self.cluster.state.moms[name]
        self.cluster.qmgr(f"delete node {name}")
        self.cluster.qmgr(f"create node {name} np={NP},mom_service_port={port},mom_manager_port={port + 1}")

    def reset(self) -> None:
        """No job left that is not complete, only the base moms' nodes, the base settings."""
        self.run("qdel", "-p", "all")
        waiting.wait_for(lambda: all(s == "C" for s in self.job_states().values()), 120,
                         "every job purged", interval=0.3)
        for name in list(self.nodes()):
            if name not in BASE_MOMS:
                self.cluster.stop_mom(name)
                self.cluster.qmgr(f"delete node {name}", check=False)
        for name in BASE_MOMS:
            self.run("pbsnodes", "-c", "-N", "", "--", name)
        for directive in ("unset queue batch is_transit", "delete queue long"):
            self.cluster.qmgr(directive, check=False)
        self.cluster.qmgr("set server scheduling = true")
        self.cluster.wait_nodes_free(list(BASE_MOMS), timeout=120)


@dataclass
class CloudMoms:
    """What an instance's user data would do: for every instance of the group that has a DNS
    name, make the name resolve here (an /etc/hosts alias to 127.0.0.1) and, once Phorque has
    made it a Torque node, start a real pbs_mom for it. Phorque creates nodes with Torque's
    default mom ports, so only one cloud node at a time can have a mom on this host."""

    torque: RealTorque
    moto: str
    group: str
    region: str = "us-east-1"
    started: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    errors: list[str] = field(default_factory=list)

    def _clients(self):
        kw = dict(endpoint_url=self.moto, region_name=self.region, aws_access_key_id="testing",
                  aws_secret_access_key="testing")
        return boto3.client("autoscaling", **kw), boto3.client("ec2", **kw)

    def dns_names(self) -> dict[str, list[str]]:
        """Instance id -> DNS names (public, private) of the group's live instances."""
        asg, ec2 = self._clients()
        groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])["AutoScalingGroups"]
        ids = [i["InstanceId"] for g in groups for i in g["Instances"]]
        if not ids:
            return {}
        out = {}
        for res in ec2.describe_instances(InstanceIds=ids)["Reservations"]:
            for inst in res["Instances"]:
                if inst["State"]["Name"] in ("pending", "running"):
                    out[inst["InstanceId"]] = [n for n in (inst.get("PublicDnsName"),
                                                           inst.get("PrivateDnsName")) if n]
        return out

    def step(self) -> None:
        names = {n for dns in self.dns_names().values() for n in dns}
        for dns in names:
            self.torque.cluster.add_alias(dns)
        nodes = self.torque.nodes()
        for dns in names:
            # One cloud mom at a time: it takes Torque's default mom ports (see add_mom). It
            # starts once the server has sent the new node list out, as a booting instance's
            # would: a mom that asks for its hierarchy before that is left down.
            if dns in nodes and "MOM-list-not-sent" not in nodes[dns] and dns not in self.started \
                    and not self.started:
                self.torque.cluster.add_mom(dns, create_node=False)
                self.started.add(dns)
        # An instance that is gone takes its mom with it.
        for dns in list(self.started - names):
            self.torque.cluster.stop_mom(dns)
            self.started.discard(dns)

    def _loop(self) -> None:
        while not self._stop.wait(0.3):
            try:
                self.step()
            except Exception as exc:  # keep standing in; the test sees the errors
                self.errors.append(repr(exc))

    def __enter__(self) -> CloudMoms:
        self._thread = threading.Thread(target=self._loop, name="cloud-moms", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        for dns in self.started:
            self.torque.cluster.stop_mom(dns)


class PeakDesired:
    """The highest desired capacity each group ever had while the test ran."""

    def __init__(self, moto: str, groups: list[str]):
        self.asg = boto3.client("autoscaling", endpoint_url=moto, region_name="us-east-1",
                                aws_access_key_id="testing", aws_secret_access_key="testing")
        self.groups, self.value = groups, dict.fromkeys(groups, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                found = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=self.groups)
            except Exception:  # moto busy: look again
                continue
            for group in found["AutoScalingGroups"]:
                name = group["AutoScalingGroupName"]
                self.value[name] = max(self.value[name], group["DesiredCapacity"])

    def __enter__(self) -> PeakDesired:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
