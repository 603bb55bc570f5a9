"""Spot sections: the configuration, which jobs may go to spot capacity, what the policies
launch, and what the lifecycle plans when the cloud takes an instance back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from phorque.adapters.cloud.aws import _policy_matches, interruption, mixed_instances_policy
from phorque.adapters.config import load_config
from phorque.core.errors import ConfigError
from phorque.core.model import Chunk, Health, InstanceState, Job
from phorque.core.plan import Kind
from phorque.policy.policies import CostAware, OnDemand, OnDemandPlusPlus
from phorque.policy.why import explain
from tests.builders import NOW, cloud, inst, node, owned, snapshot

POLICIES = (CostAware, OnDemand, OnDemandPlusPlus)

BASE = """
[Policy]
name = CostAware

[Cloud-od]
image_id = ami-1
autoscale_group_name = g-od
instance_type = t3.medium
instance_cores = 4
max_instances = 4
price = 0.10
"""
SPOT = """
[Cloud-spot]
image_id = ami-1
autoscale_group_name = g-spot
instance_type = t3.medium
instance_cores = 4
max_instances = 4
price = 0.03
market = spot
"""


def conf(tmp_path: Path, extra: str = "", spot: str = SPOT):
    path = tmp_path / "phorque.conf"
    path.write_text(BASE + spot + extra)
    return load_config(path, environ={})


# -- configuration ---------------------------------------------------------------------------

def test_a_spot_section_is_cheapest_first_and_its_nodes_carry_the_spot_property(tmp_path):
    config = conf(tmp_path, spot=SPOT + "node_properties = fast\nmax_price = 0.05\n")
    spot = config.cloud("spot")
    assert [c.name for c in config.clouds] == ["spot", "od"]
    assert spot.spot and spot.max_price == 0.05
    assert spot.node_properties == ("fast", "spot")
    assert spot.state().spot and not config.cloud("od").state().spot
    assert config.cloud("od").node_properties == ()


@pytest.mark.parametrize(("lines", "option", "words"), [
    ("market = preemptible\n", "market", "on-demand"),
    ("market = spot\nlaunch_method = configuration\n", "market", "launch template"),
    ("max_price = 0.05\n", "max_price", "only for market = spot"),
    ("market = spot\nmax_price = 0\n", "max_price", "below the minimum"),
])
def test_spot_mistakes_name_the_section_and_option(tmp_path, lines, option, words):
    with pytest.raises(ConfigError) as err:
        conf(tmp_path, spot=SPOT.replace("market = spot\n", "") + lines)
    assert err.value.section == "Cloud-spot" and err.value.option == option
    assert words in str(err.value)


def test_spot_needs_the_aws_dialect(tmp_path):
    phantom = ("\n[Cloud-nimbus]\ncloud_type = nimbus\ncloud_uri = h\nautoscale_uri = h\n"
               "image_id = i\nautoscale_group_name = g\nlaunch_config_name = lc@site\n"
               "instance_type = m1.small\ninstance_cores = 1\nmax_instances = 1\nmarket = spot\n")
    with pytest.raises(ConfigError) as err:
        conf(tmp_path, phantom)
    assert (err.value.section, err.value.option) == ("Cloud-nimbus", "market")
    assert "cloud_type aws" in str(err.value)


# -- which jobs go where ---------------------------------------------------------------------

def spot_cloud(queues=None, **kw):
    c = replace(cloud("spot", price=0.03, **kw), spot=True, node_properties=("spot",))
    return replace(c, queues=frozenset(queues)) if queues else c


def od_cloud(**kw):
    return cloud("od", price=0.10, **kw)


def qjob(job_id: str, *, rerunnable: bool | None = True, spot: bool = False, queue: str = "batch",
         cores: int = 4) -> Job:
    props = ("spot",) if spot else ()
    return Job(id=job_id, state="Q", queue=queue, cores=cores, walltime_secs=3600,
               chunks=(Chunk(1, cores, properties=props),), rerunnable=rerunnable, queued_at=NOW - 10)


def launches(plan):
    return {a.cloud: a.count for a in plan.actions if a.kind == Kind.LAUNCH}


@pytest.mark.parametrize("policy", POLICIES)
def test_only_rerunnable_jobs_that_ask_for_spot_launch_spot_instances(policy):
    clouds = (spot_cloud(), od_cloud())
    assert launches(policy().plan(snapshot([qjob("1.s", spot=True)], clouds=clouds))) == {"spot": 1}
    # Rerunnable but not asking: a spot section serving every queue does not take it.
    assert launches(policy().plan(snapshot([qjob("2.s")], clouds=clouds))) == {"od": 1}
    # Not rerunnable, or Torque did not say: never spot.
    for flag in (False, None):
        assert launches(policy().plan(snapshot([qjob("3.s", rerunnable=flag)], clouds=clouds))) == {"od": 1}


@pytest.mark.parametrize("policy", POLICIES)
def test_a_queue_the_spot_section_names_sends_its_rerunnable_jobs_there(policy):
    clouds = (spot_cloud(queues={"spot"}), od_cloud())
    assert launches(policy().plan(snapshot([qjob("1.s", queue="spot")], clouds=clouds))) == {"spot": 1}
    assert launches(policy().plan(snapshot([qjob("2.s", queue="spot", rerunnable=False)],
                                           clouds=clouds))) == {"od": 1}
    assert launches(policy().plan(snapshot([qjob("3.s", queue="batch")], clouds=clouds))) == {"od": 1}


@pytest.mark.parametrize("policy", POLICIES)
def test_a_backed_off_or_full_spot_section_falls_back_to_on_demand(policy):
    job = qjob("1.s", queue="spot")
    backed = (replace(spot_cloud(queues={"spot"}), health=Health.BACKOFF, backoff_until=NOW + 60), od_cloud())
    assert launches(policy().plan(snapshot([job], clouds=backed))) == {"od": 1}
    full = (spot_cloud(queues={"spot"}, max_instances=0), od_cloud())
    assert launches(policy().plan(snapshot([job], clouds=full))) == {"od": 1}


def test_costaware_splits_a_mixed_queue_between_spot_and_on_demand():
    jobs = [qjob(f"{i}.s", spot=i % 2 == 0, rerunnable=i % 3 != 0) for i in range(1, 7)]
    # Asking for spot and rerunnable: 2 and 4; everything else on demand (1, 3, 5, and 6 which
    # asks for spot but is not rerunnable and can run nowhere).
    plan = CostAware().plan(snapshot(jobs, clouds=(spot_cloud(), od_cloud())))
    assert launches(plan) == {"spot": 2, "od": 3}
    assert any("6.s can never run" in n and "not rerunnable" in n for n in plan.notes), plan.notes


def test_why_says_a_job_waits_because_only_spot_could_run_it_and_it_is_not_rerunnable():
    snap = snapshot([qjob("1.s", queue="spot", rerunnable=False)],
                    clouds=(spot_cloud(queues={"spot"}),))
    why = explain(snap, CostAware().plan(snap), None)["1.s"]
    assert why.kind == "never" and "not rerunnable" in why.text, why


# -- an interruption -------------------------------------------------------------------------

def interrupted(iid: str = "i-1", dns: str = "n1.example"):
    return replace(inst(iid, dns=None, state=InstanceState.GONE),
                   interruption="Server.SpotInstanceTermination: Spot instance termination")


def taken_back(memory=None, desired: int = 2, live: int = 1):
    others = tuple(inst(f"i-live{k}", dns=f"l{k}.example") for k in range(live))
    spot = replace(spot_cloud(instances=(interrupted(),) + others, desired=desired))
    nodes = [node("n1.example", jobs=("7.s", "8.s"), state="job-exclusive")] + \
        [node(f"l{k}.example") for k in range(live)]
    snap = snapshot([qjob("9.s", queue="batch", rerunnable=True)], nodes, (spot, od_cloud()),
                    [owned(f"i-live{k}", "spot", f"l{k}.example") for k in range(live)], memory=memory)
    return replace(snap, gone_nodes={"i-1": "n1.example"})


def test_an_interruption_requeues_the_nodes_jobs_removes_it_backs_off_and_cancels_the_replacement():
    plan = CostAware().plan(taken_back())
    by_kind = {a.kind: a for a in plan.actions}
    requeue = by_kind[Kind.REQUEUE]
    assert (requeue.cloud, requeue.instance, requeue.node, requeue.fault) == ("spot", "i-1", "n1.example", True)
    assert by_kind[Kind.REMOVE].node == "n1.example"
    cancel = by_kind[Kind.CANCEL]
    assert (cancel.cloud, cancel.count, cancel.fault) == ("spot", 1, False)
    assert plan.ordered()[0].kind == Kind.REQUEUE  # before anything is launched
    assert plan.memory["interrupted"] == ["i-1"]


def test_an_interruption_is_counted_once_however_often_it_is_seen():
    first = CostAware().plan(taken_back())
    again = CostAware().plan(taken_back(memory=dict(first.memory), desired=1))
    kinds = [a.kind for a in again.actions]
    assert Kind.CANCEL not in kinds
    (requeue,) = [a for a in again.actions if a.kind == Kind.REQUEUE]
    assert requeue.fault is False  # the node is still listed: its jobs are requeued, no new back-off


def test_a_replacement_already_launched_is_not_cancelled():
    plan = CostAware().plan(taken_back(desired=2, live=2))
    assert Kind.CANCEL not in [a.kind for a in plan.actions]
    assert Kind.REQUEUE in [a.kind for a in plan.actions]


def test_an_interrupted_instance_is_not_capacity_nor_paid_for():
    spot = spot_cloud(instances=(interrupted(),), desired=0)
    assert spot.capacity == 0 and snapshot(clouds=(spot,)).spend_rate == 0


# -- the group -------------------------------------------------------------------------------

def test_the_spot_groups_mixed_instances_policy():
    policy = mixed_instances_policy("lt", ("c6i.large", "c6a.large"), spot=True, max_price=0.05)
    dist = policy["InstancesDistribution"]
    assert dist["OnDemandBaseCapacity"] == 0 and dist["OnDemandPercentageAboveBaseCapacity"] == 0
    assert dist["SpotAllocationStrategy"] == "price-capacity-optimized" and dist["SpotMaxPrice"] == "0.05"
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == ["c6i.large", "c6a.large"]
    group = {"MixedInstancesPolicy": policy}
    assert _policy_matches(group, "lt", ("c6i.large", "c6a.large"), spot=True, max_price=0.05)
    assert not _policy_matches(group, "lt", ("c6i.large", "c6a.large"), spot=True, max_price=0.07)
    assert not _policy_matches(group, "lt", ("c6i.large", "c6a.large"))  # it is not on demand
    on_demand = {"MixedInstancesPolicy": mixed_instances_policy("lt", ("c6i.large",))}
    assert not _policy_matches(on_demand, "lt", ("c6i.large",), spot=True)


def test_a_spot_policy_without_a_price_cap_does_not_match_a_capped_one():
    # The answer is a bool, not a falsy string left over from the price comparison.
    group = {"MixedInstancesPolicy": mixed_instances_policy("lt", ("c6i.large",), spot=True)}
    assert _policy_matches(group, "lt", ("c6i.large",), spot=True) is True
    assert _policy_matches(group, "lt", ("c6i.large",), spot=True, max_price=0.05) is False


@pytest.mark.parametrize(("reason", "expected"), [
    ({"Code": "Server.SpotInstanceTermination", "Message": "Server.SpotInstanceTermination: Spot instance termination"},
     "Server.SpotInstanceTermination: Spot instance termination"),
    ({"Code": "Server.SpotInstanceShutdown", "Message": "Spot instance shutdown"},
     "Server.SpotInstanceShutdown: Spot instance shutdown"),
    ({"Code": "Client.UserInitiatedShutdown", "Message": "User initiated shutdown"}, ""),
    ({}, ""),
])
def test_ec2s_state_reason_says_whether_the_spot_market_took_it(reason, expected):
    assert interruption({"StateReason": reason}) == expected


def test_a_spot_instance_that_left_its_group_unasked_is_taken_back_with_its_node():
    from phorque.act.snapshot import VANISHED, with_vanished_spot
    from phorque.core.model import Stage

    was = owned("i-9", "spot", "n9.example", stage=Stage.BUSY)
    clouds = (spot_cloud(), od_cloud())
    gone = replace(was, stage=Stage.GONE)
    (spot, od) = with_vanished_spot(clouds, [was], [gone])
    assert [(i.id, i.state, i.interruption) for i in spot.instances] == [("i-9", InstanceState.GONE, VANISHED)]
    assert od.instances == ()
    # Terminated by Phorque, or on an on-demand cloud: nothing is added.
    ending = replace(was, stage=Stage.TERMINATING)
    assert with_vanished_spot(clouds, [ending], [gone]) == clouds
    on_demand = replace(was, cloud="od")
    assert with_vanished_spot(clouds, [on_demand], [replace(on_demand, stage=Stage.GONE)]) == clouds
    snap = replace(snapshot([], [node("n9.example", jobs=("5.s",), state="job-exclusive")], (spot, od)),
                   gone_nodes={"i-9": "n9.example"})
    kinds = {a.kind: a for a in CostAware().plan(snap).actions}
    assert kinds[Kind.REQUEUE].node == "n9.example" and kinds[Kind.REMOVE].node == "n9.example"
