"""What a spot market does and moto does not: take an instance back.

moto never reclaims an instance, so the tests do it the way EC2 and Auto Scaling would: the
instance is terminated with the spot state reason (``Server.SpotInstanceTermination``), marked
as a spot instance, and its group member goes ``Terminating``; with ``replace`` the group then
launches a replacement to keep its desired capacity, as Auto Scaling does. The moto server runs
in the test process (tests/conftest.py), so its backends are reached directly.
"""

from __future__ import annotations

import boto3
from moto.autoscaling.models import autoscaling_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ec2.models.instances import StateReason

SPOT_TERMINATION = "Server.SpotInstanceTermination"
MESSAGE = f"{SPOT_TERMINATION}: Spot instance termination"


def members(moto: str, group: str, region: str = "us-east-1") -> list[dict]:
    """The group's members as Auto Scaling describes them."""
    client = boto3.client("autoscaling", endpoint_url=moto, region_name=region,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    found = client.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return found[0]["Instances"] if found else []


def reclaim(group: str, instance_id: str, region: str = "us-east-1", replace: bool = False,
            group_knows: bool = True) -> None:
    """Take ``instance_id`` of ``group`` back as the spot market does (``group_knows=False``:
    the group has not noticed yet and still shows the member in service)."""
    ec2 = ec2_backends[DEFAULT_ACCOUNT_ID][region]
    asg = autoscaling_backends[DEFAULT_ACCOUNT_ID][region].autoscaling_groups[group]
    instance = ec2.get_instance(instance_id)
    instance.lifecycle = "spot"
    instance.terminate()
    instance.state_reason = StateReason(MESSAGE, SPOT_TERMINATION)
    instance._reason = MESSAGE
    for member in asg.instance_states:
        if member.instance.id == instance_id and group_knows:
            member.lifecycle_state = "Terminating"
    if replace:
        asg.set_desired_capacity(asg.desired_capacity)


def exec_node(starts: list[list[str]]) -> str | None:
    """The first host of the latest start among a job's S records (None: it never started)."""
    if not starts:
        return None
    hosts = next(t.split("=", 1)[1] for t in starts[-1][3].split() if t.startswith("exec_host="))
    return hosts.split("/")[0]


def desired(moto: str, group: str, region: str = "us-east-1") -> int:
    client = boto3.client("autoscaling", endpoint_url=moto, region_name=region,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    found = client.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return int(found[0]["DesiredCapacity"]) if found else 0
