"""Injected failures (through the fault proxy in front of moto) become the right typed errors,
within the configured timeouts and attempts."""

from __future__ import annotations

import socket
import time

import pytest

from phorque.adapters.cloud import make_provider
from phorque.core.errors import CloudError, CloudUnreachable
from phorque.core.model import InstanceState
from tests.cloud.cloudkit import aws_settings, fault_counts, set_faults


def ready(proxy: str, **overrides):
    """A set-up group, and a provider for it with the given (short) timeouts and attempts."""
    make_provider(aws_settings(proxy)).ensure_setup()
    set_faults(proxy, reset_counts=True)
    return make_provider(aws_settings(proxy, **overrides))


def test_clients_get_the_configured_timeouts_and_retries(proxy: str) -> None:
    provider = make_provider(aws_settings(proxy, connect_timeout_secs=2.5, read_timeout_secs=7.0,
                                          max_attempts=4))
    config = provider.client("autoscaling").meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.5, 7.0)
    assert config.retries == {"mode": "standard", "total_max_attempts": 4}


def test_a_reply_slower_than_the_read_timeout_is_unreachable(proxy: str) -> None:
    provider = ready(proxy, read_timeout_secs=0.5, max_attempts=2)
    set_faults(proxy, rules=[{"kind": "delay", "action": "DescribeAutoScalingGroups", "seconds": 3}])
    start = time.monotonic()
    with pytest.raises(CloudUnreachable) as info:
        provider.describe()
    # The read timeout ended each attempt: the error is a read timeout, not the 3 s reply, and
    # two attempts of 0.5 s took at least 1 s (a lower bound: a busy machine only adds to it).
    assert info.value.code == "ReadTimeoutError"
    assert time.monotonic() - start >= 0.95
    assert fault_counts(proxy)["DescribeAutoScalingGroups"] == 2


def test_a_dropped_connection_is_unreachable(proxy: str) -> None:
    provider = ready(proxy, max_attempts=2)
    set_faults(proxy, rules=[{"kind": "drop", "action": "DescribeAutoScalingGroups"}])
    with pytest.raises(CloudUnreachable):
        provider.describe()
    assert fault_counts(proxy)["DescribeAutoScalingGroups"] == 2


def test_a_refused_connection_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = make_provider(aws_settings(f"http://127.0.0.1:{port}", max_attempts=1))
    with pytest.raises(CloudUnreachable) as info:
        provider.describe()
    assert info.value.code == "EndpointConnectionError"


def test_server_errors_are_retried_then_reported(proxy: str) -> None:
    provider = ready(proxy, max_attempts=3)
    set_faults(proxy, rules=[{"kind": "error", "status": 500, "action": "SetDesiredCapacity"}])
    with pytest.raises(CloudError) as info:
        provider.set_desired(1)
    assert not isinstance(info.value, CloudUnreachable)
    assert info.value.code == "InternalFailure" and not info.value.throttled
    assert fault_counts(proxy)["SetDesiredCapacity"] == 3
    assert provider.describe().desired == 0


def test_a_passing_503_is_absorbed_by_a_retry(proxy: str) -> None:
    provider = ready(proxy, max_attempts=3)
    set_faults(proxy, rules=[{"kind": "error", "status": 503, "action": "SetDesiredCapacity", "times": 1}])
    provider.set_desired(1)
    assert provider.describe().desired == 1
    assert fault_counts(proxy)["SetDesiredCapacity"] == 2


def test_throttling_is_marked_as_such(proxy: str) -> None:
    provider = ready(proxy, max_attempts=2)
    set_faults(proxy, rules=[{"kind": "throttle", "action": "DescribeAutoScalingGroups"}])
    with pytest.raises(CloudError) as info:
        provider.describe()
    assert info.value.code == "Throttling" and info.value.throttled
    assert not isinstance(info.value, CloudUnreachable)


def test_ec2_throttling_uses_the_ec2_error_format(proxy: str) -> None:
    provider = ready(proxy, max_attempts=1)
    provider.set_desired(1)
    set_faults(proxy, rules=[{"kind": "error", "status": 503, "code": "RequestLimitExceeded",
                              "action": "DescribeInstances"}])
    with pytest.raises(CloudError) as info:
        provider.describe()
    assert info.value.code == "RequestLimitExceeded" and info.value.throttled


def test_instances_stuck_pending(proxy: str) -> None:
    provider = ready(proxy)
    set_faults(proxy, stuck_pending={"new": True})
    provider.set_desired(2)
    view = provider.describe()
    assert [i.state for i in view.instances] == [InstanceState.PENDING] * 2
    assert all(i.lifecycle == "Pending" for i in view.instances)
    # Only the chosen ones: the first instance now starts, the other stays pending.
    stuck = view.instances[1].id
    set_faults(proxy, stuck_pending={"ids": [stuck]})
    states = {i.id: i.state for i in provider.describe().instances}
    assert states[stuck] == InstanceState.PENDING
    assert states[view.instances[0].id] == InstanceState.RUNNING


def test_terminate_whose_reply_is_lost_is_confirmed_not_repeated(proxy: str) -> None:
    provider = ready(proxy, read_timeout_secs=0.5, max_attempts=2)
    provider.set_desired(3)
    victim = provider.describe().instances[0].id
    set_faults(proxy, reset_counts=True, rules=[
        {"kind": "drop", "action": "TerminateInstanceInAutoScalingGroup", "phase": "after"}])
    provider.terminate(victim)  # the service acted; the group shows it: no error
    view = provider.describe()
    assert view.desired == 2 and victim not in {i.id for i in view.live}


def test_terminate_refused_by_throttling_is_reported(proxy: str) -> None:
    provider = ready(proxy, max_attempts=1)
    provider.set_desired(1)
    victim = provider.describe().instances[0].id
    set_faults(proxy, rules=[{"kind": "throttle", "action": "TerminateInstanceInAutoScalingGroup"}])
    with pytest.raises(CloudError) as info:
        provider.terminate(victim)
    assert info.value.throttled
    assert provider.describe().live[0].id == victim


def test_malformed_fault_controls_are_refused(proxy: str) -> None:
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as info:
        set_faults(proxy, rules=[{"kind": "explode"}])
    assert info.value.code == 400
