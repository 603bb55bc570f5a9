"""The Phantom dialect against the Phantom double: set-up, EPU states, capacity, terminate."""

from __future__ import annotations

import time

import pytest

from phorque.adapters.cloud import make_provider
from phorque.adapters.cloud.phantom import PhantomProvider
from phorque.core.errors import CloudError, CloudUnreachable
from phorque.core.model import InstanceState as S
from tests.cloud.cloudkit import fault_counts, phantom_settings, set_faults, wait_for


def running(provider, n: int):
    """Wait until ``n`` members run; return the view."""
    return wait_for(lambda: (v := provider.describe()) and
                    sum(i.state == S.RUNNING for i in v.instances) == n and v)


def test_setup_is_idempotent_and_uses_the_phantom_names_and_tags(phantom, tmp_path) -> None:
    user_data = tmp_path / "user-data"
    user_data.write_text("#!/bin/sh\n")
    settings = phantom_settings(phantom, user_data_file=str(user_data), key_name="hpc",
                                security_groups=("default",))
    provider = make_provider(settings)
    assert isinstance(provider, PhantomProvider)
    provider.ensure_setup()
    provider.ensure_setup()
    make_provider(settings).ensure_setup()
    model = phantom.model
    assert list(model.launch_configs) == [("PHANTOMACCESSID77", "hotellc")]
    spec = model.launch_configs[("PHANTOMACCESSID77", "hotellc")]["hotel"]
    assert (spec["ImageId"], spec["InstanceType"], spec["KeyName"], spec["SecurityGroups"]) == \
        ("debian-6.0.5.gz", "m1.large", "hpc", ["default"])
    assert len(model.groups) == 1
    group = model.groups[("PHANTOMACCESSID77", "hotelasg")]
    assert group.tags == {"PHANTOM_DEFINITION": "error_overflow_n_preserving", "clouds": "hotel:-1",
                          "minimum_vms": "0", "maximum_vms": "0"}
    assert (group.minimum, group.maximum, group.zones) == (0, 0, ["us-east-1"])
    counts = fault_counts(phantom.autoscale.url)
    assert counts["CreateLaunchConfiguration"] == 1 and counts["CreateAutoScalingGroup"] == 1


def test_requests_become_pending_then_running_vms(phantom) -> None:
    provider = make_provider(phantom_settings(phantom))
    provider.ensure_setup()
    provider.set_desired(2)
    view = provider.describe()
    assert (view.desired, view.max_size) == (2, 2)  # SetDesiredCapacity also set the maximum
    assert [(i.id, i.state, i.lifecycle, i.dns) for i in view.instances] == \
        [("", S.REQUESTED, "200-REQUESTED", None)] * 2
    pending = wait_for(lambda: (v := provider.describe()) and all(i.id for i in v.instances) and v)
    for inst in pending.instances:
        if inst.state == S.PENDING:
            assert inst.lifecycle in ("400-PENDING", "500-STARTED")
            assert inst.dns is None and inst.private_dns is None  # "[unknown]" is not a name
            assert inst.launch_time is not None
    view = running(provider, 2)
    for inst in view.instances:
        assert inst.lifecycle == "600-RUNNING"
        assert inst.dns == f"vm-{int(inst.id[2:], 16)}.hotel.phantom.test"
        assert inst.private_dns and inst.private_dns.endswith(".internal.test")
        assert abs(inst.launch_time - time.time()) < 60


def test_public_dns_unknown_falls_back_to_private(phantom) -> None:
    set_faults(phantom.autoscale.url, extra={"public_dns": False})
    provider = make_provider(phantom_settings(phantom))
    provider.ensure_setup()
    provider.set_desired(1)
    inst = running(provider, 1).instances[0]
    assert inst.dns == inst.private_dns and inst.dns.endswith(".internal.test")


def test_set_desired_is_capped_and_never_lets_phantom_choose_victims(phantom) -> None:
    provider = make_provider(phantom_settings(phantom, max_instances=3))
    provider.ensure_setup()
    with pytest.raises(ValueError, match="above max_instances"):
        provider.set_desired(4)
    provider.set_desired(3)
    running(provider, 3)
    with pytest.raises(ValueError, match="below the 3 live"):
        provider.set_desired(1)
    assert len(provider.describe().live) == 3


def test_terminate_decrements_once_and_dead_vms_stay_listed(phantom) -> None:
    provider = make_provider(phantom_settings(phantom))
    provider.ensure_setup()
    provider.set_desired(3)
    victim = running(provider, 3).instances[0].id
    provider.terminate(victim)
    view = provider.describe()
    assert (view.desired, view.max_size) == (2, 2)
    states = {i.id: i.state for i in view.instances}
    assert states[victim] == S.GONE and len(view.live) == 2
    time.sleep(0.4)
    view = provider.describe()  # no replacement, the dead VM still listed as 800-TERMINATED
    assert [i.lifecycle for i in view.instances if i.id == victim] == ["800-TERMINATED"]
    assert len(view.live) == 2 and len(view.instances) == 3


def test_terminate_with_a_lost_reply_is_confirmed_never_repeated(phantom) -> None:
    """Phantom lowers capacity on *every* terminate call: a blind retry would lower it twice,
    and its engine would then kill a VM of its own choosing."""
    provider = make_provider(phantom_settings(phantom, read_timeout_secs=0.5, max_attempts=3))
    provider.ensure_setup()
    provider.set_desired(3)
    victim = running(provider, 3).instances[0].id
    set_faults(phantom.autoscale.url, reset_counts=True, rules=[
        {"kind": "delay", "seconds": 2, "phase": "after", "action": "TerminateInstanceInAutoScalingGroup"}])
    provider.terminate(victim)
    assert fault_counts(phantom.autoscale.url)["TerminateInstanceInAutoScalingGroup"] == 1
    view = provider.describe()
    assert view.desired == 2 and len(view.live) == 2
    assert victim not in {i.id for i in view.live}


def test_terminate_that_did_not_happen_is_reported(phantom) -> None:
    provider = make_provider(phantom_settings(phantom, read_timeout_secs=0.5))
    provider.ensure_setup()
    provider.set_desired(1)
    victim = running(provider, 1).instances[0].id
    set_faults(phantom.autoscale.url, rules=[{"kind": "drop", "action": "TerminateInstanceInAutoScalingGroup"}])
    with pytest.raises(CloudUnreachable):
        provider.terminate(victim)
    assert fault_counts(phantom.autoscale.url)["TerminateInstanceInAutoScalingGroup"] == 1
    assert provider.describe().live[0].id == victim


def test_terminate_of_an_unknown_instance_is_refused(phantom) -> None:
    provider = make_provider(phantom_settings(phantom))
    provider.ensure_setup()
    with pytest.raises(CloudError) as info:
        provider.terminate("i-0badc0de")
    assert info.value.code == "NotAMember"
    with pytest.raises(ValueError):
        provider.terminate("")


def test_cancel_requests_keeps_requests_that_phantom_lists_as_members(phantom) -> None:
    set_faults(phantom.autoscale.url, extra={"requests_fail": True})
    provider = make_provider(phantom_settings(phantom))
    provider.ensure_setup()
    provider.set_desired(3)
    wait_for(lambda: all(i.lifecycle == "300-ERROR_RETRYING" for i in provider.describe().instances))
    view = provider.describe()
    assert [i.state for i in view.instances] == [S.REQUESTED] * 3
    assert provider.cancel_requests(2) == 3  # lowering would let Phantom pick what to kill
    assert provider.describe().desired == 3


def test_stuck_pending_vms(phantom) -> None:
    set_faults(phantom.autoscale.url, stuck_pending={"new": True})
    provider = make_provider(phantom_settings(phantom))
    provider.ensure_setup()
    provider.set_desired(1)
    time.sleep(1.0)  # well past requested_secs + pending_secs
    inst = provider.describe().instances[0]
    assert (inst.state, inst.lifecycle, inst.dns) == (S.PENDING, "400-PENDING", None)


def test_unreachable_ec2_endpoint(phantom) -> None:
    provider = make_provider(phantom_settings(phantom, cloud_uri="http://127.0.0.1:9", max_attempts=1))
    provider.ensure_setup()
    provider.set_desired(1)
    time.sleep(0.4)  # the request has a VM id now, so EC2 must be asked
    with pytest.raises(CloudUnreachable):
        provider.describe()
