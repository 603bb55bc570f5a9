"""The state mapping, DNS choice and launch-time conversion (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from phorque.adapters.cloud.states import (
    aws_lifecycle_state,
    clean_dns,
    ec2_state,
    epoch,
    epu_code,
    phantom_lifecycle_state,
    pick_dns,
    worse,
)
from phorque.core.model import InstanceState as S


@pytest.mark.parametrize("lifecycle, health, expected", [
    ("Pending", "Healthy", S.PENDING),
    ("Pending:Wait", "Healthy", S.PENDING),
    ("Pending:Proceed", "Healthy", S.PENDING),
    ("InService", "Healthy", S.RUNNING),
    ("InService", "Unhealthy", S.FAILED),
    ("Terminating", "Healthy", S.GONE),
    ("Terminating:Wait", "Unhealthy", S.GONE),
    ("Terminating:Proceed", "Healthy", S.GONE),
    ("Terminated", "Healthy", S.GONE),
    ("Detaching", "Healthy", S.GONE),
    ("Detached", "Healthy", S.GONE),
    ("EnteringStandby", "Healthy", S.FAILED),
    ("Standby", "Healthy", S.FAILED),
    ("Quarantined", "Healthy", S.FAILED),
    ("Warmed:Pending", "Healthy", S.PENDING),
    ("Warmed:Running", "Healthy", S.PENDING),
    ("Warmed:Terminating:Proceed", "Healthy", S.GONE),
    ("Warmed:Terminated", "Healthy", S.GONE),
    ("SomethingNew", "Healthy", S.PENDING),
])
def test_aws_lifecycle(lifecycle: str, health: str, expected: S) -> None:
    assert aws_lifecycle_state(lifecycle, health) == expected


@pytest.mark.parametrize("lifecycle, instance_id, health, expected", [
    ("100-REQUESTING", "", "Healthy", S.REQUESTED),
    ("200-REQUESTED", "", "Healthy", S.REQUESTED),
    ("300-ERROR_RETRYING", "", "Healthy", S.REQUESTED),
    ("300-ERROR_RETRYING", "i-1", "Healthy", S.PENDING),
    ("400-PENDING", "i-1", "Healthy", S.PENDING),
    ("500-STARTED", "i-1", "Healthy", S.PENDING),
    ("600-RUNNING", "i-1", "Healthy", S.RUNNING),
    ("650-RUNNING_FAILED", "i-1", "Unhealthy contextualization failed", S.FAILED),
    ("700-TERMINATING", "i-1", "Unhealthy", S.GONE),
    ("800-TERMINATED", "i-1", "Unhealthy", S.GONE),
    ("900-FAILED", "i-1", "Unhealthy", S.FAILED),
    ("900-FAILED", "", "Unhealthy", S.FAILED),
    ("weird", "", "Healthy", S.REQUESTED),
])
def test_phantom_lifecycle(lifecycle: str, instance_id: str, health: str, expected: S) -> None:
    assert phantom_lifecycle_state(lifecycle, instance_id, health) == expected


def test_epu_code() -> None:
    assert epu_code("600-RUNNING") == 600
    assert epu_code("InService") is None


@pytest.mark.parametrize("name, expected", [
    ("pending", S.PENDING), ("running", S.RUNNING), ("shutting-down", S.GONE),
    ("terminated", S.GONE), ("stopping", S.FAILED), ("stopped", S.FAILED),
])
def test_ec2_state(name: str, expected: S) -> None:
    assert ec2_state(name) == expected


def test_worse_prefers_the_less_hopeful_state() -> None:
    assert worse(S.RUNNING, S.PENDING) == S.PENDING
    assert worse(S.PENDING, S.RUNNING) == S.PENDING
    assert worse(S.FAILED, S.GONE) == S.GONE
    assert worse(S.RUNNING, S.RUNNING) == S.RUNNING


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), ("  ", None), ("[unknown]", None), ("[UNKNOWN]", None),
    ("vm-1.example.org", "vm-1.example.org"), (" vm-2 ", "vm-2"),
])
def test_clean_dns(value: str | None, expected: str | None) -> None:
    assert clean_dns(value) == expected


def test_pick_dns_prefers_the_configured_name_and_falls_back() -> None:
    assert pick_dns("pub.example", "priv.internal") == "pub.example"
    assert pick_dns("pub.example", "priv.internal", "private") == "priv.internal"
    assert pick_dns("[unknown]", "priv.internal") == "priv.internal"
    assert pick_dns("pub.example", "", "private") == "pub.example"
    assert pick_dns("[unknown]", "[unknown]") is None


def test_epoch_of_aware_naive_and_text_times() -> None:
    aware = datetime(2013, 4, 5, 12, 34, 56, tzinfo=UTC)
    assert epoch(aware) == aware.timestamp()
    assert epoch(datetime(2013, 4, 5, 12, 34, 56)) == aware.timestamp()  # naive = UTC
    assert epoch(aware.astimezone(timezone(timedelta(hours=-5)))) == aware.timestamp()
    assert epoch("2013-04-05T12:34:56.000Z") == aware.timestamp()
    assert epoch(None) is None
    assert epoch("not a time") is None
