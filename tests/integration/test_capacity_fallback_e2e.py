"""A cloud with no capacity backs off and the next fitting cloud gets the launch: the engine with
the Torque sandbox and two moto groups, each behind a fault proxy of its own.

The cheap cloud launches several instance types (a mixed-instances policy); when none of them
can be had, AWS either refuses the call (``InsufficientInstanceCapacity``) or, the usual case for
an Auto Scaling group, accepts the new desired capacity and records a failed launch activity.
Both are injected by the proxy (moto itself always launches).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import boto3

from phorque.act.engine import Engine
from phorque.adapters.config import load_config
from phorque.core import plan as p
from phorque.core.model import LaunchFailure
from phorque.core.plan import Kind
from phorque.policy.policies import CostAware
from tests import builders as b
from tests.integration.faultkit import Cloud, conf_text, set_faults
from tests.integration.kit import exit_statuses, wait_until

TYPES = "c6i.4xlarge, c6a.4xlarge, m6i.4xlarge"
EC2_WORDS = ("We currently do not have sufficient c6i.4xlarge capacity in the Availability Zone "
             "you requested (us-east-1a).")


def two_clouds(tmp_path: Path, sandbox, cheap_url: str, dear_url: str) -> Path:
    cheap = Cloud("cheap", "moto", cheap_url, "g-cheap", price=0.10, max_instances=2).section()
    cheap = cheap.replace("instance_type = t3.medium\n", f"instance_types = {TYPES}\n")
    dear = Cloud("dear", "moto", dear_url, "g-dear", price=0.30, max_instances=2).section()
    path = tmp_path / "phorque.conf"
    path.write_text(conf_text(tmp_path, sandbox, []) + cheap + dear)
    return path


def desired(moto: str, group: str) -> int:
    client = boto3.client("autoscaling", endpoint_url=moto, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    (found,) = client.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return int(found["DesiredCapacity"])


def outcomes(ev, kind: Kind) -> list[tuple[str | None, int | None, str]]:
    return [(o.action.cloud, o.action.count, o.status) for o in ev.outcomes if o.action.kind == kind]


def run_to_the_end(engine: Engine, sandbox, jobs: list[str]) -> None:
    def ended() -> bool:
        engine.evaluate()
        return len(sandbox.records("E")) == len(jobs)

    wait_until(ended, 60, "the job to run on the next cloud's node", interval=0.3)
    assert exit_statuses(sandbox) == {job: 0 for job in jobs}


def test_a_failed_launch_activity_backs_the_cloud_off_and_the_next_cloud_launches(
        make_sandbox, moto, proxies, tmp_path, caplog) -> None:
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=1)
    cheap, dear = proxies(), proxies()
    config = load_config(two_clouds(tmp_path, sandbox, cheap, dear), environ={})
    assert config.cloud("cheap").instance_types == tuple(TYPES.split(", "))
    engine = Engine(config)
    set_faults(cheap, extra={"no_capacity": {"groups": ["g-cheap"]}})
    jobs = [sandbox.qsub("-l", "nodes=1:ppn=4", runtime=2)]

    # The cheapest cloud is asked; the group accepts the capacity, and launches nothing.
    first = engine.evaluate()
    assert outcomes(first, Kind.LAUNCH) == [("cheap", 1, "done")]
    assert desired(moto, "g-dear") == 0

    # Its failed launch is read: the request is cancelled as a fault of the cloud, which is backed
    # off, and the same evaluation plans again and launches on the next cloud.
    with caplog.at_level(logging.INFO):
        second = engine.evaluate()
    (cancel,) = [o for o in second.outcomes if o.action.kind == Kind.CANCEL]
    assert (cancel.action.cloud, cancel.status, cancel.action.fault) == ("cheap", "done", True)
    assert "cloud cheap has no capacity (InsufficientInstanceCapacity" in cancel.action.reason
    assert outcomes(second, Kind.LAUNCH) == [("dear", 1, "done")]
    assert desired(moto, "g-cheap") == 0 and desired(moto, "g-dear") == 1
    record = engine.state.health()["cheap"]
    assert record["failures"] == 1 and "InsufficientInstanceCapacity" in record["last_error"]
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("cloud cheap: failure 1 recorded") and "InsufficientInstanceCapacity" in m
               for m in logged), logged
    assert any("cloud(s) cheap backed off" in m for m in logged)

    # The failure is acted on once: later reads of the same activity cancel nothing more.
    run_to_the_end(engine, sandbox, jobs)
    assert engine.state.health()["cheap"]["failures"] == 1
    assert desired(moto, "g-cheap") == 0


def test_an_insufficient_capacity_answer_backs_the_cloud_off_and_the_next_cloud_launches(
        make_sandbox, moto, proxies, tmp_path, caplog) -> None:
    sandbox = make_sandbox(nodes=0, np=4, boot_delay=1)
    cheap, dear = proxies(), proxies()
    engine = Engine(load_config(two_clouds(tmp_path, sandbox, cheap, dear), environ={}))
    set_faults(cheap, rules=[{"kind": "error", "status": 500, "code": "InsufficientInstanceCapacity",
                              "message": EC2_WORDS, "action": "SetDesiredCapacity"}])
    jobs = [sandbox.qsub("-l", "nodes=1:ppn=4", runtime=2)]

    with caplog.at_level(logging.INFO):
        first = engine.evaluate()
    # Refused, backed off, planned again at once: the next cloud launches in the same evaluation.
    assert outcomes(first, Kind.LAUNCH) == [("cheap", 1, "failed"), ("dear", 1, "done")]
    assert desired(moto, "g-cheap") == 0 and desired(moto, "g-dear") == 1
    record = engine.state.health()["cheap"]
    assert record["failures"] == 1 and "(InsufficientInstanceCapacity)" in record["last_error"]
    assert any(r.getMessage().startswith("cloud cheap: failure 1 recorded")
               and "SetDesiredCapacity (InsufficientInstanceCapacity)" in r.getMessage()
               for r in caplog.records)
    run_to_the_end(engine, sandbox, jobs)


def test_a_launch_failure_already_acted_on_does_not_cancel_the_next_launch() -> None:
    """After the backoff the cloud is tried again; until the service lists the new launch, the
    old failed one is still its latest activity: it must not cancel the new request."""
    failure = LaunchFailure(id="act-1", code="InsufficientInstanceCapacity", message="no capacity")
    short = replace(b.cloud("cheap", price=0.1, desired=1), launch_failure=failure)
    dear = b.cloud("dear", price=0.3)
    queued = [b.job("1.srv", cores=4)]
    policy = CostAware()

    fresh = policy.plan(b.snapshot(jobs=queued, clouds=[short, dear]))
    cancels = [a for a in fresh.actions if a.kind == p.Kind.CANCEL]
    assert [(a.cloud, a.count, a.fault) for a in cancels] == [("cheap", 1, True)]
    assert fresh.memory["launch_failures"] == {"cheap": "act-1"}

    again = policy.plan(b.snapshot(jobs=queued, clouds=[short, dear], memory=dict(fresh.memory)))
    assert not [a for a in again.actions if a.kind == p.Kind.CANCEL]
    assert again.memory["launch_failures"] == {"cheap": "act-1"}

    # A new failure (another activity) is acted on again.
    other = replace(short, launch_failure=replace(failure, id="act-2"))
    later = policy.plan(b.snapshot(jobs=queued, clouds=[other, dear], memory=dict(again.memory)))
    assert [a.cloud for a in later.actions if a.kind == p.Kind.CANCEL] == ["cheap"]
