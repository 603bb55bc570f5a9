"""The standard dialect against a moto server (real HTTP, real boto3 signing and parsing)."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import boto3
import pytest

from phorque.adapters.cloud import make_provider
from phorque.adapters.cloud.aws import AwsProvider
from phorque.core.errors import CloudError
from phorque.core.model import InstanceState
from tests.cloud.cloudkit import AWS_ID, AWS_SECRET, aws_settings, set_faults


def raw(url: str, service: str):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=AWS_ID, aws_secret_access_key=AWS_SECRET)


def group(url: str, name: str = "phorque-asg") -> dict:
    return raw(url, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def inventory(url: str) -> dict:
    asg, ec2 = raw(url, "autoscaling"), raw(url, "ec2")
    return {
        "lcs": sorted((lc["LaunchConfigurationName"], lc["ImageId"], lc["InstanceType"], lc.get("UserData"))
                      for lc in asg.describe_launch_configurations()["LaunchConfigurations"]),
        "templates": sorted(t["LaunchTemplateName"] for t in ec2.describe_launch_templates()["LaunchTemplates"]),
        "groups": sorted((g["AutoScalingGroupName"], g["MinSize"], g["MaxSize"], g["DesiredCapacity"])
                         for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]),
    }


def test_make_provider_picks_the_dialect(moto: str) -> None:
    assert isinstance(make_provider(aws_settings(moto)), AwsProvider)


def test_setup_creates_configuration_and_group_once(moto: str, tmp_path) -> None:
    user_data = tmp_path / "user-data"
    user_data.write_text("#!/bin/sh\necho joined torque\n")
    settings = aws_settings(moto, user_data_file=str(user_data))
    make_provider(settings).ensure_setup()
    first = inventory(moto)
    make_provider(settings).ensure_setup()  # a second run (a restart) changes nothing
    assert inventory(moto) == first
    assert first["groups"] == [("phorque-asg", 0, 6, 0)]
    assert first["templates"] == []
    lc = raw(moto, "autoscaling").describe_launch_configurations()["LaunchConfigurations"][0]
    assert (lc["LaunchConfigurationName"], lc["ImageId"], lc["InstanceType"]) == ("phorque-lc", "ami-12c6146b", "t3.micro")
    assert base64.b64decode(lc["UserData"]) == user_data.read_bytes()
    assert not lc.get("KeyName") and not lc.get("SecurityGroups")  # nothing hard-coded
    g = group(moto)
    assert g["AvailabilityZones"] == ["us-east-1a"]
    assert g["NewInstancesProtectedFromScaleIn"] is True
    assert g["LaunchConfigurationName"] == "phorque-lc"


def test_key_pair_and_security_groups_are_passed_when_configured(moto: str) -> None:
    make_provider(aws_settings(moto, key_name="hpc-key", security_groups=("torque", "ssh"))).ensure_setup()
    lc = raw(moto, "autoscaling").describe_launch_configurations()["LaunchConfigurations"][0]
    assert lc["KeyName"] == "hpc-key"
    assert lc["SecurityGroups"] == ["torque", "ssh"]


def test_setup_realigns_an_existing_groups_maximum(moto: str) -> None:
    make_provider(aws_settings(moto)).ensure_setup()
    make_provider(aws_settings(moto, max_instances=9)).ensure_setup()
    assert group(moto)["MaxSize"] == 9


def test_forced_launch_template(moto: str, tmp_path) -> None:
    user_data = tmp_path / "ud"
    user_data.write_bytes(b"#cloud-config\n")
    settings = aws_settings(moto, launch_method="template", user_data_file=str(user_data), key_name="k1")
    make_provider(settings).ensure_setup()
    make_provider(settings).ensure_setup()
    inv = inventory(moto)
    assert inv["lcs"] == [] and inv["templates"] == ["phorque-lc"]
    assert group(moto)["LaunchTemplate"]["LaunchTemplateName"] == "phorque-lc"
    data = raw(moto, "ec2").describe_launch_template_versions(LaunchTemplateName="phorque-lc")[
        "LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert base64.b64decode(data["UserData"]) == b"#cloud-config\n"
    assert (data["ImageId"], data["InstanceType"], data["KeyName"]) == ("ami-12c6146b", "t3.micro", "k1")


def test_falls_back_to_a_template_when_configurations_are_refused(proxy: str) -> None:
    # As AWS answers accounts created since October 2024.
    set_faults(proxy, rules=[{"kind": "error", "action": "CreateLaunchConfiguration", "status": 400,
                              "code": "UnsupportedOperation",
                              "message": "The Launch Configuration creation operation is not "
                                         "available in your account. Use launch templates ..."}])
    settings = aws_settings(proxy)
    provider = make_provider(settings)
    provider.ensure_setup()
    inv = inventory(proxy)
    assert inv["lcs"] == [] and inv["templates"] == ["phorque-lc"]
    assert group(proxy)["LaunchTemplate"]["LaunchTemplateName"] == "phorque-lc"
    make_provider(settings).ensure_setup()  # the template is found and reused, not recreated
    assert inventory(proxy) == inv
    provider.set_desired(1)
    assert len(provider.describe().live) == 1


def test_other_launch_configuration_errors_are_not_swallowed(proxy: str) -> None:
    set_faults(proxy, rules=[{"kind": "error", "action": "CreateLaunchConfiguration", "status": 400,
                              "code": "ValidationError", "message": "bad image"}])
    with pytest.raises(CloudError) as info:
        make_provider(aws_settings(proxy)).ensure_setup()
    assert info.value.code == "ValidationError"
    assert inventory(proxy)["groups"] == []


def test_describe_joins_the_group_with_ec2(moto: str) -> None:
    provider = make_provider(aws_settings(moto))
    provider.ensure_setup()
    before = datetime.now(UTC).timestamp()
    provider.set_desired(3)
    view = provider.describe()
    assert (view.desired, view.max_size, len(view.instances)) == (3, 6, 3)
    for inst in view.instances:
        assert inst.state == InstanceState.RUNNING and inst.lifecycle == "InService"
        assert inst.id.startswith("i-")
        assert inst.dns and inst.dns.endswith("amazonaws.com")
        assert inst.private_dns and inst.private_dns.endswith(".internal")
        assert inst.launch_time is not None and abs(inst.launch_time - before) < 120
    private = make_provider(aws_settings(moto, node_dns="private")).describe()
    assert {i.dns for i in private.instances} == {i.private_dns for i in view.instances}


def test_set_desired_refuses_more_than_max_instances(moto: str) -> None:
    provider = make_provider(aws_settings(moto, max_instances=2))
    provider.ensure_setup()
    provider.set_desired(2)
    with pytest.raises(ValueError, match="above max_instances 2"):
        provider.set_desired(3)
    with pytest.raises(ValueError):
        provider.set_desired(-1)
    assert group(moto)["DesiredCapacity"] == 2


def test_terminate_decrements_and_nothing_replaces_the_instance(moto: str) -> None:
    provider = make_provider(aws_settings(moto))
    provider.ensure_setup()
    provider.set_desired(3)
    victim = provider.describe().instances[0].id
    provider.terminate(victim)
    time.sleep(0.2)
    view = provider.describe()
    assert view.desired == 2
    assert victim not in {i.id for i in view.live}
    assert len(view.live) == 2
    ec2 = raw(moto, "ec2").describe_instances(InstanceIds=[victim])["Reservations"][0]["Instances"][0]
    assert ec2["State"]["Name"] == "terminated"


def test_terminate_refuses_an_instance_of_another_group(moto: str) -> None:
    mine, other = make_provider(aws_settings(moto)), make_provider(
        aws_settings(moto, name="other", autoscale_group_name="someone-elses", launch_config_name="their-lc"))
    mine.ensure_setup()
    other.ensure_setup()
    other.set_desired(1)
    theirs = other.describe().instances[0].id
    with pytest.raises(CloudError) as info:
        mine.terminate(theirs)
    assert info.value.code == "NotAMember"
    assert other.describe().live[0].id == theirs  # untouched


def test_cancel_requests_never_goes_below_live_members(moto: str) -> None:
    provider = make_provider(aws_settings(moto))
    provider.ensure_setup()
    provider.set_desired(2)
    live = {i.id for i in provider.describe().live}
    assert provider.cancel_requests(5) == 2  # both are VMs: nothing to cancel
    # A cloud that cannot launch (moto fails every launch of this configuration, as AWS does
    # when out of capacity): desired capacity stays above the members.
    break_launches(moto)
    view = provider.describe()
    assert (view.desired, len(view.live)) == (5, 2)
    assert provider.cancel_requests(10) == 2
    view = provider.describe()
    assert view.desired == 2 and {i.id for i in view.live} == live
    assert all(i.state == InstanceState.RUNNING for i in view.live)


def break_launches(url: str, desired: int = 5) -> None:
    """Switch the group to a configuration moto cannot launch, then ask for ``desired``."""
    asg = raw(url, "autoscaling")
    asg.create_launch_configuration(LaunchConfigurationName="broken", ImageId="ami-12c6146b",
                                    InstanceType="t3.micro", SecurityGroups=["sg-0missing"])
    asg.update_auto_scaling_group(AutoScalingGroupName="phorque-asg", LaunchConfigurationName="broken")
    with pytest.raises(Exception):  # noqa: B017 (moto answers its failed launch with a 500 page)
        raw_no_retry(url).set_desired_capacity(AutoScalingGroupName="phorque-asg", DesiredCapacity=desired)


def raw_no_retry(url: str):
    from botocore.config import Config
    return boto3.client("autoscaling", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=AWS_ID, aws_secret_access_key=AWS_SECRET,
                        config=Config(retries={"mode": "standard", "total_max_attempts": 1}))


def test_describe_of_a_missing_group_is_a_cloud_error(moto: str) -> None:
    with pytest.raises(CloudError) as info:
        make_provider(aws_settings(moto)).describe()
    assert info.value.code == "NoSuchGroup"


def test_unreadable_user_data_is_a_cloud_error(moto: str, tmp_path) -> None:
    settings = aws_settings(moto, user_data_file=str(tmp_path / "missing"))
    with pytest.raises(CloudError) as info:
        make_provider(settings).ensure_setup()
    assert info.value.code == "UserData"


def test_named_profile_credentials(moto: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(f"[hotel]\naws_access_key_id = {AWS_ID}\naws_secret_access_key = {AWS_SECRET}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    provider = make_provider(aws_settings(moto, access_id=None, secret_key=None, profile="hotel"))
    provider.ensure_setup()
    assert provider.describe().desired == 0
    with pytest.raises(CloudError) as info:
        make_provider(aws_settings(moto, access_id=None, secret_key=None, profile="nobody")).describe()
    assert info.value.code == "NoCredentials"
