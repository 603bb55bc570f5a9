"""The shared lifecycle rules after a daemon restart: the boot timeout counts only the time
Phorque watched an instance, so a healthy instance launched just before a crash (and first seen
long after) joins instead of being terminated as one that never booted."""

from __future__ import annotations

from phorque.model import InstanceState, Owned, Stage
from phorque.plan import Kind
from phorque.policy.policies import CostAware
from tests.builders import NOW, cloud, inst, job, node, snapshot

DNS = "ec2-1-2-3-4.compute-1.amazonaws.com"


def record(seen_ago: float, launched_ago: float = 60.0, node_name: str | None = None) -> Owned:
    return Owned(instance_id="i-a", cloud="hotel", stage=Stage.BOOTING, node=node_name,
                 first_seen=NOW - seen_ago, launch_time=NOW - launched_ago)


def plan_for(seen_ago: float, nodes=(), state: InstanceState = InstanceState.RUNNING):
    instances = (inst("i-a", DNS, state=state, age=60),)  # launched 60 s ago; timeout 30 s
    snap = snapshot(jobs=[job("1.s", cores=4)], nodes=nodes,
                    clouds=[cloud(cores=4, boot_timeout=30, instances=instances)],
                    owned=[record(seen_ago, node_name=DNS if nodes else None)])
    return CostAware().plan(snap)


def test_an_instance_first_seen_after_a_restart_joins_though_launched_long_ago():
    plan = plan_for(seen_ago=0)
    assert [(a.kind, a.node) for a in plan.actions] == [(Kind.JOIN, DNS)]


def test_an_instance_watched_past_the_boot_timeout_is_given_up():
    plan = plan_for(seen_ago=45, state=InstanceState.PENDING)
    (terminate,) = [a for a in plan.actions if a.kind == Kind.TERMINATE]
    assert terminate.instance == "i-a" and terminate.fault


def test_a_node_joined_after_a_restart_gets_its_time_to_come_up():
    down = (node(DNS, 4, state="down"),)
    assert not [a for a in plan_for(seen_ago=5, nodes=down).actions if a.kind == Kind.TERMINATE]
    gave_up = [a for a in plan_for(seen_ago=45, nodes=down).actions if a.kind == Kind.TERMINATE]
    assert [a.instance for a in gave_up] == ["i-a"] and "never came up" in gave_up[0].reason
