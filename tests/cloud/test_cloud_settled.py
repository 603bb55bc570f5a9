"""``describe(fresh=False)``: EC2 is asked only about the members that are not settled, against a
moto server (real HTTP, real boto3). The calls are counted at botocore's own event hook."""

from __future__ import annotations

import boto3

from phorque.adapters.cloud.aws import AwsProvider
from phorque.adapters.cloud.provider import SETTLED_REUSE_SECS
from phorque.core.model import InstanceState
from tests.cloud.cloudkit import AWS_ID, AWS_SECRET, aws_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def provider_with_asks(url: str, clock: Clock, **overrides):
    """A provider, and the instance ids of each DescribeInstances it sends."""
    provider = AwsProvider(aws_settings(url, max_instances=6, **overrides), clock=clock)
    provider.ensure_setup()
    asks: list[list[str]] = []

    def note(params, **_):
        for f in params.get("Filters") or []:
            if f.get("Name") == "instance-id":
                asks.append(sorted(f.get("Values") or []))

    provider.client("ec2").meta.events.register("provide-client-params.ec2.DescribeInstances", note)
    return provider, asks


def raw(url: str, service: str):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=AWS_ID, aws_secret_access_key=AWS_SECRET)


def ids(view) -> list[str]:
    return sorted(i.id for i in view.instances)


def states(view) -> dict[str, InstanceState]:
    return {i.id: i.state for i in view.instances}


def test_a_trigger_describes_only_members_not_settled(moto: str) -> None:
    clock = Clock()
    provider, asks = provider_with_asks(moto, clock)
    provider.set_desired(3)
    first = provider.describe(fresh=False)  # nothing known yet: every member is asked about
    assert len(first.instances) == 3 and all(i.state == InstanceState.RUNNING and i.dns for i in first.instances)
    assert asks == [ids(first)]
    again = provider.describe(fresh=False)
    assert asks == [ids(first)], "settled members were asked about again"
    assert again == first  # described as EC2 last said, member for member

    provider.set_desired(4)  # one new member: only it is asked about
    grown = provider.describe(fresh=False)
    new = sorted(set(ids(grown)) - set(ids(first)))
    assert len(new) == 1 and asks[-1] == new
    assert grown == provider.describe(fresh=True)
    assert asks[-1] == ids(grown)  # fresh: every member


def test_reuse_ends_with_age_and_with_a_change_the_group_shows(moto: str) -> None:
    clock = Clock()
    provider, asks = provider_with_asks(moto, clock)
    provider.set_desired(2)
    view = provider.describe(fresh=False)
    gone, kept = ids(view)
    # EC2 stops one behind the group's back (the group still shows it in service): a
    # trigger's describe may go on saying running, for SETTLED_REUSE_SECS at most.
    raw(moto, "ec2").stop_instances(InstanceIds=[gone])
    clock.now += SETTLED_REUSE_SECS / 2
    assert states(provider.describe(fresh=False))[gone] == InstanceState.RUNNING
    assert len(asks) == 1
    clock.now += SETTLED_REUSE_SECS / 2
    assert states(provider.describe(fresh=False))[gone] == InstanceState.FAILED
    assert asks[-1] == sorted([gone, kept])
    assert states(provider.describe(fresh=True))[gone] == InstanceState.FAILED
    clock.now += 1
    provider.describe(fresh=False)
    assert asks[-1] == [gone], "a stopped member is settled no more"

    # A member the group shows in another state is asked about at once.
    raw(moto, "autoscaling").set_instance_health(InstanceId=kept, HealthStatus="Unhealthy",
                                                 ShouldRespectGracePeriod=False)
    unhealthy = provider.describe(fresh=False)
    assert kept in asks[-1]
    assert states(unhealthy)[kept] == InstanceState.FAILED
