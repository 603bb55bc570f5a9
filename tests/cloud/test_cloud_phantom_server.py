"""The Phantom double reproduces each quirk, and the repair handler makes boto3 cope with it.

Each quirk is shown twice: a plain boto3 client fails on it the way boto3 failed on Phantom,
and the same client with :func:`repair_phantom_reply` registered reads the reply.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import boto3
import botocore.exceptions as bce
import pytest
from botocore.auth import SigV2Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.parsers import ResponseParserError

from phorque.adapters.cloud import make_provider
from phorque.adapters.cloud.phantom import phantom_tags
from phorque.adapters.cloud.phantom_repair import repair_phantom_reply
from phorque.core.errors import CloudError
from phorque.core.options import Secret
from tests.cloud.cloudkit import PHANTOM_ID, PHANTOM_SECRET, phantom_settings, set_faults, wait_for


def client(url: str, service: str = "autoscaling", repaired: bool = True, v2: bool = True,
           secret: str = PHANTOM_SECRET, **config):
    cfg = Config(signature_version="v2" if v2 else None,
                 retries={"mode": "standard", "total_max_attempts": config.pop("attempts", 1)}, **config)
    c = boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id=PHANTOM_ID,
                     aws_secret_access_key=secret, config=cfg)
    if repaired:
        c.meta.events.register("before-parse.auto-scaling.*", repair_phantom_reply)
    return c


def make_group(phantom, desired: int = 0) -> None:
    provider = make_provider(phantom_settings(phantom))
    provider.ensure_setup()
    if desired:
        provider.set_desired(desired)
        wait_for(lambda: sum(i.lifecycle == "600-RUNNING" for i in provider.describe().instances) == desired)


def test_sigv2_is_checked_against_the_secret(phantom) -> None:
    with pytest.raises(CloudError) as info:
        make_provider(phantom_settings(phantom, secret_key=Secret("wrong"))).describe()
    assert info.value.code == "IncompleteSignature"
    good = client(phantom.autoscale.url)
    assert good.describe_auto_scaling_groups()["AutoScalingGroups"] == []


def test_nimbus_ec2_checks_sigv2_too(phantom) -> None:
    assert client(phantom.ec2.url, "ec2").describe_instances()["Reservations"] == []
    with pytest.raises(bce.ClientError) as info:
        client(phantom.ec2.url, "ec2", secret="wrong").describe_instances()
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(bce.ClientError) as info:
        client(phantom.ec2.url, "ec2", v2=False).describe_instances()
    assert info.value.response["Error"]["Code"] == "MissingClientTokenId"


def test_sigv4_fails_as_it_did_on_phantom(phantom) -> None:
    with pytest.raises(ResponseParserError):  # a text/plain 500 that boto3 cannot read
        client(phantom.autoscale.url, v2=False, repaired=False).describe_auto_scaling_groups()
    with pytest.raises(bce.ClientError) as info:
        client(phantom.autoscale.url, v2=False).describe_auto_scaling_groups()
    assert info.value.response["Error"]["Code"] == "InternalFailure"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def signed_post(url: str, params: dict[str, str], secret: str = PHANTOM_SECRET) -> tuple[int, str]:
    """POST ``params`` signed with botocore's own SigV2 signer (the Timestamp as given)."""
    params = dict(params, AWSAccessKeyId=PHANTOM_ID, SignatureVersion="2", SignatureMethod="HmacSHA256")
    request = AWSRequest(method="POST", url=url + "/", data=params)
    _, params["Signature"] = SigV2Auth(Credentials(PHANTOM_ID, secret)).calc_signature(request, params)
    body = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(url + "/", data=body, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (127.0.0.1)
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def stamp(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_timestamps_must_be_within_15_minutes(phantom) -> None:
    params = {"Action": "DescribeAutoScalingGroups", "Version": "2011-01-01"}
    status, body = signed_post(phantom.autoscale.url, dict(params, Timestamp=stamp(timedelta(minutes=-10))))
    assert status == 200 and "<DescribeAutoScalingGroupsResult>" in body
    for delta in (timedelta(minutes=-20), timedelta(minutes=20)):
        status, body = signed_post(phantom.autoscale.url, dict(params, Timestamp=stamp(delta)))
        assert (status, body.splitlines()[0]) == (400, "400 RequestExpired")
    status, body = signed_post(phantom.autoscale.url, params)
    assert (status, body.splitlines()[0]) == (400, "400 MissingParameter")


def test_nimbus_requests_are_valid_for_five_minutes(phantom) -> None:
    params = {"Action": "DescribeInstances", "Version": "2009-08-15"}
    status, _ = signed_post(phantom.ec2.url, dict(params, Timestamp=stamp(timedelta(minutes=-4))))
    assert status == 200
    status, body = signed_post(phantom.ec2.url, dict(params, Timestamp=stamp(timedelta(minutes=-6))))
    assert status == 400 and "<Code>RequestExpired</Code>" in body


def test_errors_are_text_pages_that_the_repair_turns_into_client_errors(phantom) -> None:
    kwargs = {"LaunchConfigurationName": "no-site", "ImageId": "img", "InstanceType": "m1.small"}
    with pytest.raises(ResponseParserError):
        client(phantom.autoscale.url, repaired=False).create_launch_configuration(**kwargs)
    with pytest.raises(bce.ClientError) as info:
        client(phantom.autoscale.url).create_launch_configuration(**kwargs)
    assert info.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "<dt name>@<site name>" in info.value.response["Error"]["Message"]


def test_unknown_action_is_a_404(phantom) -> None:
    with pytest.raises(bce.ClientError) as info:
        client(phantom.autoscale.url).describe_policies()
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_describe_autoscaling_instances_lacks_its_result_wrapper(phantom) -> None:
    make_group(phantom, 1)
    with pytest.raises(KeyError):
        client(phantom.autoscale.url, repaired=False).describe_auto_scaling_instances()
    found = client(phantom.autoscale.url).describe_auto_scaling_instances()["AutoScalingInstances"]
    assert [(i["AutoScalingGroupName"], i["LifecycleState"], i["HealthStatus"]) for i in found] == \
        [("hotelasg", "600-RUNNING", "Healthy")]


def test_terminate_reply_lacks_result_and_activity(phantom) -> None:
    make_group(phantom, 2)
    asg = client(phantom.autoscale.url, repaired=False)
    victim = phantom.model.members(PHANTOM_ID, "hotelasg")[0].instance_id
    with pytest.raises(KeyError):  # boto3 fails *after* the server acted
        asg.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=True)
    assert phantom.model.groups[(PHANTOM_ID, "hotelasg")].minimum == 1
    other = phantom.model.members(PHANTOM_ID, "hotelasg")[1].instance_id
    reply = client(phantom.autoscale.url).terminate_instance_in_auto_scaling_group(
        InstanceId=other, ShouldDecrementDesiredCapacity=True)
    assert "Activity" not in reply and reply["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_booleans_are_capitalised(phantom) -> None:
    make_group(phantom)
    plain = client(phantom.autoscale.url, repaired=False).describe_launch_configurations()
    fixed = client(phantom.autoscale.url).describe_launch_configurations()
    assert plain["LaunchConfigurations"][0]["InstanceMonitoring"]["Enabled"] is False  # misread
    assert fixed["LaunchConfigurations"][0]["InstanceMonitoring"]["Enabled"] is True
    assert fixed["LaunchConfigurations"][0]["LaunchConfigurationName"] == "hotellc@hotel"


def test_group_listing_drops_the_site_and_has_no_tags(phantom) -> None:
    make_group(phantom)
    group = client(phantom.autoscale.url).describe_auto_scaling_groups()["AutoScalingGroups"][0]
    assert (group["LaunchConfigurationName"], group["Tags"], group["MinSize"], group["MaxSize"]) == \
        ("hotellc", [], 0, 0)


def test_set_desired_capacity_sets_the_maximum_too(phantom) -> None:
    make_group(phantom)
    asg = client(phantom.autoscale.url)
    asg.set_desired_capacity(AutoScalingGroupName="hotelasg", DesiredCapacity=4)
    group = asg.describe_auto_scaling_groups()["AutoScalingGroups"][0]
    assert (group["DesiredCapacity"], group["MinSize"], group["MaxSize"]) == (4, 4, 4)


def test_should_decrement_is_required_and_unknown_ids_are_refused(phantom) -> None:
    make_group(phantom, 1)
    victim = phantom.model.members(PHANTOM_ID, "hotelasg")[0].instance_id
    loose = client(phantom.autoscale.url, parameter_validation=False)
    with pytest.raises(bce.ClientError) as info:
        loose.terminate_instance_in_auto_scaling_group(InstanceId=victim)
    assert info.value.response["Error"]["Code"] == "MissingParameter"
    with pytest.raises(bce.ClientError) as info:
        client(phantom.autoscale.url).terminate_instance_in_auto_scaling_group(
            InstanceId="i-0000dead", ShouldDecrementDesiredCapacity=True)
    assert info.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_tags_need_five_fields_and_n_preserve_is_refused(phantom) -> None:
    asg = client(phantom.autoscale.url)
    asg.create_launch_configuration(LaunchConfigurationName="lc@hotel", ImageId="img", InstanceType="m1.small")
    base = {"AutoScalingGroupName": "g", "LaunchConfigurationName": "lc@hotel", "MinSize": 0,
            "MaxSize": 0, "AvailabilityZones": ["hotel"]}
    obsolete = phantom_tags("g", "hotel")[:2] + [
        {"Key": "n_preserve", "Value": "0", "PropagateAtLaunch": False, "ResourceId": "g",
         "ResourceType": "auto-scaling-group"}]
    with pytest.raises(bce.ClientError) as info:
        asg.create_auto_scaling_group(Tags=obsolete, **base)
    assert info.value.response["Error"]["Code"] == "InvalidParameterValue"
    short = [{"Key": "clouds", "Value": "hotel:-1"}]  # boto2 filled in the rest; boto3 does not
    with pytest.raises(bce.ClientError) as info:
        asg.create_auto_scaling_group(Tags=short, **base)
    assert info.value.response["Error"]["Code"] == "MissingParameter"
    no_zones = {k: v for k, v in base.items() if k != "AvailabilityZones"}
    with pytest.raises(bce.ClientError) as info:
        client(phantom.autoscale.url, parameter_validation=False).create_auto_scaling_group(
            Tags=phantom_tags("g", "hotel"), **no_zones)
    assert info.value.response["Error"]["Code"] == "MissingParameter"
    asg.create_auto_scaling_group(Tags=phantom_tags("g", "hotel"), **base)


def test_a_blindly_retried_terminate_lowers_capacity_twice(phantom) -> None:
    """Why Phorque never retries a Phantom terminate: each attempt decrements again."""
    make_group(phantom, 3)
    victim = phantom.model.members(PHANTOM_ID, "hotelasg")[0].instance_id
    set_faults(phantom.autoscale.url, rules=[{"kind": "delay", "seconds": 1.5, "phase": "after",
                                              "action": "TerminateInstanceInAutoScalingGroup"}])
    retrying = client(phantom.autoscale.url, attempts=3, read_timeout=0.3)
    with pytest.raises(bce.ReadTimeoutError):
        retrying.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=True)
    group = phantom.model.groups[(PHANTOM_ID, "hotelasg")]
    assert group.minimum == 0  # three calls, three decrements: 3 -> 0, all VMs killed
    assert sum(vm.alive for vm in phantom.model.members(PHANTOM_ID, "hotelasg")) == 0


def start_process(argv: list[str]) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-m", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"{argv} printed nothing: {proc.stderr.read() if proc.stderr else ''}")
    return proc, json.loads(line)


def stop_process(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=10)


def test_phantom_server_runs_as_its_own_process() -> None:
    proc, ports = start_process(["tests.servers.phantom", "--port", "0", "--access-id", PHANTOM_ID,
                                 "--secret-key", PHANTOM_SECRET, "--requested-secs", "0.1",
                                 "--pending-secs", "0.1"])
    try:
        server = type("S", (), {"autoscale": type("A", (), {"url": ports["autoscale_url"]}),
                                "ec2": type("E", (), {"url": ports["ec2_url"]})})
        provider = make_provider(phantom_settings(server))
        provider.ensure_setup()
        provider.set_desired(1)
        time.sleep(0.5)
        assert provider.describe().instances[0].lifecycle == "600-RUNNING"
        assert ports["control"] == ports["autoscale_url"] + "/_faults"
    finally:
        assert stop_process(proc) == 0


def test_fault_proxy_runs_as_its_own_process(moto: str) -> None:
    from tests.cloud.cloudkit import aws_settings, fault_counts

    proc, info = start_process(["tests.servers.faults", "--upstream", moto, "--port", "0"])
    try:
        provider = make_provider(aws_settings(info["url"], max_attempts=1))
        provider.ensure_setup()
        set_faults(info["url"], rules=[{"kind": "throttle", "times": 1}], reset_counts=True)
        with pytest.raises(CloudError) as err:
            provider.describe()
        assert err.value.throttled
        assert provider.describe().desired == 0
        assert fault_counts(info["url"])["DescribeAutoScalingGroups"] == 2
    finally:
        assert stop_process(proc) == 0
