"""Several instance types behind one section: the group's mixed-instances policy on a real moto
server, and a launch the cloud cannot fulfil read from its scaling activities.

moto stores a MixedInstancesPolicy as given (and shows it in DescribeAutoScalingGroups), but it
always launches the launch template's own type and lists no scaling activity: the fallback from
one type to the next is the service's, so what is tested here is what Phorque asks for. A group
short of capacity is the fault proxy's ``no_capacity`` (requests kept from moto, a failed launch
activity in AWS's words).
"""

from __future__ import annotations

import logging
from typing import Any

import boto3

from phorque.adapters.cloud import make_provider
from phorque.adapters.cloud.aws import launch_failure
from tests.cloud.cloudkit import aws_settings, fault_counts, set_faults

TYPES = ("c6i.4xlarge", "c6a.4xlarge", "m6i.4xlarge")


def autoscaling(url: str) -> Any:
    return boto3.client("autoscaling", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def the_group(url: str, name: str = "phorque-asg") -> dict[str, Any]:
    (group,) = autoscaling(url).describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return group


def overrides(group: dict[str, Any]) -> list[str]:
    return [o["InstanceType"] for o in group["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]]


def launched_types(url: str) -> list[str]:
    ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    return [i["InstanceType"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] not in ("terminated", "shutting-down")]


def test_the_group_gets_a_mixed_instances_policy_with_the_types_in_order(moto: str) -> None:
    provider = make_provider(aws_settings(moto, instance_types=TYPES, instance_type=TYPES[0]))
    provider.ensure_setup()
    group = the_group(moto)
    assert overrides(group) == list(TYPES)
    policy = group["MixedInstancesPolicy"]
    assert policy["InstancesDistribution"]["OnDemandAllocationStrategy"] == "prioritized"
    assert policy["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 100
    assert policy["LaunchTemplate"]["LaunchTemplateSpecification"]["LaunchTemplateName"] == "phorque-lc"
    # A mixed-instances policy takes a launch template: no launch configuration is made.
    assert not group.get("LaunchConfigurationName")
    assert not autoscaling(moto).describe_launch_configurations()["LaunchConfigurations"]
    ec2 = boto3.client("ec2", endpoint_url=moto, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    (template,) = ec2.describe_launch_templates(LaunchTemplateNames=["phorque-lc"])["LaunchTemplates"]
    version = ec2.describe_launch_template_versions(LaunchTemplateId=template["LaunchTemplateId"])
    assert version["LaunchTemplateVersions"][0]["LaunchTemplateData"]["InstanceType"] == TYPES[0]
    # The group still launches, protected from scale-in (moto launches the first type).
    provider.set_desired(2)
    assert launched_types(moto) == [TYPES[0]] * 2
    assert all(m["ProtectedFromScaleIn"] for m in the_group(moto)["Instances"])


def test_an_existing_group_is_moved_to_the_configured_types_and_keeps_its_instances(moto: str) -> None:
    # A group made with one type, through a launch configuration.
    single = make_provider(aws_settings(moto))
    single.ensure_setup()
    single.set_desired(1)
    assert the_group(moto).get("LaunchConfigurationName") == "phorque-lc"
    members = {m["InstanceId"] for m in the_group(moto)["Instances"]}

    # instance_types given: the group is updated to launch them, in order, from a template.
    make_provider(aws_settings(moto, instance_types=TYPES, instance_type=TYPES[0],
                               launch_config_name="phorque-lt")).ensure_setup()
    group = the_group(moto)
    assert overrides(group) == list(TYPES)
    assert {m["InstanceId"] for m in group["Instances"]} == members
    assert group["DesiredCapacity"] == 1

    # Another order is another priority: the group follows it.
    again = aws_settings(moto, instance_types=TYPES[::-1], instance_type=TYPES[2],
                         launch_config_name="phorque-lt")
    make_provider(again).ensure_setup()
    assert overrides(the_group(moto)) == list(TYPES[::-1])


def test_another_change_to_the_group_keeps_its_types(moto: str) -> None:
    make_provider(aws_settings(moto, instance_types=TYPES, instance_type=TYPES[0])).ensure_setup()
    # max_instances changed: the group's maximum is updated, and its policy stays (moto drops a
    # policy an update does not repeat, so Phorque repeats it).
    make_provider(aws_settings(moto, instance_types=TYPES, instance_type=TYPES[0],
                               max_instances=9)).ensure_setup()
    group = the_group(moto)
    assert group["MaxSize"] == 9
    assert overrides(group) == list(TYPES)


def test_a_group_with_types_is_left_alone_when_instance_types_is_not_set(moto: str, caplog) -> None:
    make_provider(aws_settings(moto, instance_types=TYPES, instance_type=TYPES[0])).ensure_setup()
    with caplog.at_level(logging.WARNING, logger="phorque.cloud.aws"):
        make_provider(aws_settings(moto, instance_type=TYPES[0])).ensure_setup()
    assert overrides(the_group(moto)) == list(TYPES)
    assert any("instance_types is not set: left as it is" in r.getMessage() for r in caplog.records)


def test_a_launch_with_no_capacity_is_read_from_the_scaling_activities(proxy: str, caplog) -> None:
    provider = make_provider(aws_settings(proxy, instance_types=TYPES, instance_type=TYPES[0]))
    provider.ensure_setup()
    provider.set_desired(1)
    set_faults(proxy, extra={"no_capacity": {"groups": ["phorque-asg"]}}, reset_counts=True)
    view = provider.describe()
    # At its capacity, the group is not asked for activities at all.
    assert view.launch_failure is None and len(view.live) == 1
    assert "DescribeScalingActivities" not in fault_counts(proxy)

    with caplog.at_level(logging.WARNING, logger="phorque.cloud.aws"):
        provider.set_desired(3)
        view = provider.describe()
        again = provider.describe()
    assert view.desired == 3 and len(view.live) == 1
    failure = view.launch_failure
    assert failure is not None and failure.no_capacity
    assert failure.code == "InsufficientInstanceCapacity"
    assert "InsufficientInstanceCapacity" in failure.message
    # The same failure read twice is one failure (its id), and is logged once.
    assert again.launch_failure == failure
    said = [r.getMessage() for r in caplog.records if "could not launch" in r.getMessage()]
    assert len(said) == 1 and "cloud amazon" in said[0] and "InsufficientInstanceCapacity" in said[0]

    # Capacity back: the requests reach the service and the group fills.
    set_faults(proxy)
    provider.set_desired(3)
    view = provider.describe()
    assert len(view.live) == 3 and view.launch_failure is None


def _activity(aid: str, status: str, started: str, message: str = "",
              description: str = "Launching a new EC2 instance: i-0123") -> dict[str, Any]:
    return {"ActivityId": aid, "Description": description, "StatusCode": status,
            "StartTime": started, "StatusMessage": message}


def test_only_the_latest_launch_counts() -> None:
    full = ("We currently do not have sufficient c6i.4xlarge capacity in the Availability Zone you "
            "requested (us-east-1a). Launching EC2 instance failed.")
    failed = _activity("a1", "Failed", "2024-05-01T10:00:00Z", full,
                       "Launching a new EC2 instance.  Status Reason: " + full)
    worked = _activity("a2", "Successful", "2024-05-01T10:05:00Z")
    ending = _activity("a3", "Failed", "2024-05-01T10:09:00Z", "instance gone",
                       "Terminating EC2 instance: i-0456")
    # A later launch worked: nothing to report, whatever terminations did since.
    assert launch_failure([ending, worked, failed]) is None
    found = launch_failure([ending, failed])
    assert found is not None and found.id == "a1" and found.no_capacity
    # A failed launch for another reason is a launch failure, not a capacity shortage.
    limit = _activity("a4", "Failed", "2024-05-01T11:00:00Z",
                      "You have requested more instances (7) than your current instance limit of 6 "
                      "allows for the specified instance type.")
    other = launch_failure([failed, limit])
    assert other is not None and other.id == "a4" and other.code == "LaunchFailed"
    assert not other.no_capacity
    assert launch_failure([_activity("a5", "InProgress", "2024-05-01T12:00:00Z"), limit]) is None
    assert launch_failure([]) is None
