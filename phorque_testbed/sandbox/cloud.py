"""Cloud-linked boots: a node's pbs_mom is up while its EC2 instance exists.

In ``boot_mode = cloud`` a node created with qmgr becomes ``free`` once the instance whose
public or private DNS name equals the node's name has existed (since its ``LaunchTime``) for
the boot delay, and goes ``down`` again when that instance is stopped, terminated or gone, as
a pbs_mom on a dead instance stops answering. Instances are looked up with EC2
DescribeInstances against the configured endpoint (for example a moto server on 127.0.0.1).
A cloud node's pbs_mom reports the memory of its instance's type (DescribeInstanceTypes'
``MemoryInfo``), as a mom reports the machine it runs on.

Only the sandbox server imports this module (and boto3); the commands never do.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

LIVE_STATES = ("pending", "running")


@dataclass
class CloudLink:
    """An EC2 endpoint to look instances up on."""

    endpoint: str
    region: str = "us-east-1"
    timeout: float = 5.0

    def __post_init__(self) -> None:
        import boto3
        from botocore.config import Config

        self._client = boto3.client(
            "ec2",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "sandbox"),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "sandbox"),
            config=Config(connect_timeout=self.timeout, read_timeout=self.timeout,
                          retries={"max_attempts": 1}),
        )
        self._memory: dict[str, int] = {}

    def launch_times(self) -> dict[str, float]:
        """Launch time (epoch seconds) of each live instance, by public and private DNS name.

        Raises the botocore exception when the endpoint cannot be asked; the caller keeps the
        nodes as they were.
        """
        return self._instances()[0]

    def survey(self) -> tuple[dict[str, float], dict[str, int]]:
        """Launch times (see :meth:`launch_times`) and the memory in MiB of each live
        instance's type, by DNS name (absent when the endpoint does not know the type)."""
        found, types = self._instances()
        memory = {name: self.memory_mib(kind) for name, kind in types.items()}
        return found, {name: mib for name, mib in memory.items() if mib}

    def _instances(self) -> tuple[dict[str, float], dict[str, str]]:
        """Launch time and instance type of each live instance, by DNS name."""
        found: dict[str, float] = {}
        types: dict[str, str] = {}
        paginator = self._client.get_paginator("describe_instances")
        for page in paginator.paginate():
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    if instance.get("State", {}).get("Name") not in LIVE_STATES:
                        continue
                    launched = instance.get("LaunchTime")
                    if launched is None:
                        continue
                    for key in ("PublicDnsName", "PrivateDnsName"):
                        name = instance.get(key)
                        if name:
                            found[name] = launched.timestamp()
                            if instance.get("InstanceType"):
                                types[name] = instance["InstanceType"]
        return found, types

    def memory_mib(self, instance_type: str) -> int:
        """The memory of an instance type in MiB (0 when unknown), asked once per type."""
        if instance_type not in self._memory:
            try:
                reply = self._client.describe_instance_types(InstanceTypes=[instance_type])
                found = reply.get("InstanceTypes") or [{}]
                self._memory[instance_type] = int(found[0].get("MemoryInfo", {}).get("SizeInMiB", 0))
            except Exception as exc:  # an endpoint without the call, or a type it does not know
                log.info("no memory size for instance type %s: %s", instance_type, exc)
                self._memory[instance_type] = 0
        return self._memory[instance_type]


_links: dict[tuple[str, str], CloudLink] = {}


def live_names(endpoint: str, region: str) -> set[str]:
    """The DNS names of the live instances at the endpoint, asked now (a client is kept per
    endpoint). Raises the botocore exception when the endpoint cannot be asked."""
    key = (endpoint, region)
    if key not in _links:
        _links[key] = CloudLink(endpoint, region)
    return set(_links[key].launch_times())


def moms_up(nodes: list[str], launch_times: dict[str, float], now: float,
            boot_seconds: float) -> dict[str, bool]:
    """Which of the cloud nodes have a pbs_mom up at ``now``."""
    return {name: name in launch_times and now - launch_times[name] >= boot_seconds
            for name in nodes}
