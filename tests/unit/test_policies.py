"""Policies on hand-computed snapshots: the original's arithmetic, on-demand, cost-aware."""

from __future__ import annotations

from dataclasses import replace

import pytest

from phorque.core.model import Chunk, Health, InstanceState
from phorque.core.plan import Kind
from phorque.policy import policy_class
from phorque.policy.policies import (
    CostAware,
    LaunchMax,
    LocalOnly,
    OnDemand,
    OnDemandPlusPlus,
    cloud_looks,
    no_looks,
)
from tests.builders import NOW, cloud, cloud_node, inst, job, node, owned, snapshot


def kinds(plan, kind):
    return [a for a in plan.actions if a.kind == kind]


def launches(plan):
    return {a.cloud: a.count for a in kinds(plan, Kind.LAUNCH)}


STATIC = (node("s1", 4), node("s2", 4), node("s3", 2, state="down"))


# -- OnDemandPlusPlus: the original's arithmetic -----------------------------------------------
@pytest.mark.parametrize("queued,multiplier,expected", [
    # queued 20 - (free 8 + pending 0 + down 2) = 10 cores -> ceil(10/2) = 5 instances
    (20, 1, 5),
    (20, 2, 10),
    # 11 - 10 = 1 core -> 1 instance
    (11, 1, 1),
    # exactly covered: nothing to launch
    (10, 1, 0),
    # multiplier 3 on 5 instances is capped by max_instances 10
    (20, 3, 10),
], ids=["basic", "multiplier", "one-core", "covered", "capped-at-max"])
def test_odpp_original_arithmetic(queued, multiplier, expected):
    snap = snapshot(jobs=[job("1.s", cores=queued)], nodes=STATIC,
                    clouds=[cloud("hotel", price=0, cores=2, max_instances=10)])
    plan = OnDemandPlusPlus(multiplier=multiplier).plan(snap)
    assert launches(plan) == ({"hotel": expected} if expected else {})


def test_odpp_partly_used_free_node_counts_whole_as_the_original_did():
    nodes = (node("s1", 4, jobs=("9.s",), used=1), node("s2", 4, state="job-exclusive", jobs=("8.s",)))
    snap = snapshot(jobs=[job("1.s", cores=8)], nodes=nodes, clouds=[cloud(cores=2)])
    # free = 4 (s1 state is exactly "free"), down = 0: 8 - 4 = 4 cores -> 2 instances
    assert launches(OnDemandPlusPlus().plan(snap)) == {"hotel": 2}


def test_odpp_pending_cores_with_static_nodes_do_not_relaunch():
    # Three instances booting (not yet nodes) already cover 6 cores. The original computed
    # pending = max(0, 6 - 10) = 0 here and launched 5 again.
    booting = tuple(inst(f"i-{k}", dns=None, state=InstanceState.PENDING, age=30) for k in range(3))
    snap = snapshot(jobs=[job("1.s", cores=20)], nodes=STATIC,
                    clouds=[cloud("hotel", cores=2, instances=booting)])
    assert launches(OnDemandPlusPlus().plan(snap)) == {"hotel": 2}  # (20 - 8 - 6 - 2) / 2


def test_odpp_counts_only_its_queue():
    jobs = [job("1.s", cores=20, queue="batch"), job("2.s", cores=50, queue="other")]
    snap = snapshot(jobs=jobs, nodes=STATIC, clouds=[cloud(cores=2)])
    assert launches(OnDemandPlusPlus(queues=frozenset({"batch"})).plan(snap)) == {"hotel": 5}


def test_odpp_picks_cheapest_valid_cloud_and_skips_maxed():
    full = tuple(inst(f"i-{k}", dns=f"h{k}") for k in range(2))
    clouds = [cloud("cheap", price=0.0, cores=2, max_instances=2, instances=full),
              cloud("dear", price=1.0, cores=4, max_instances=10)]
    nodes = STATIC + tuple(cloud_node(f"h{k}", "cheap", np=2, state="job-exclusive", jobs=(f"{k + 10}.s",))
                           for k in range(2))
    snap = snapshot(jobs=[job("1.s", cores=18)], nodes=nodes, clouds=clouds)
    # 18 - (8 + 0 + 2) = 8 cores on "dear" (4 cores each) -> 2
    assert launches(OnDemandPlusPlus().plan(snap)) == {"dear": 2}


def test_odpp_stalls_then_fails_over_to_next_cloud():
    stuck = cloud("cheap", price=0, cores=2, desired=3, instances=())
    clouds = [stuck, cloud("dear", price=1, cores=2)]
    memory = {"odpp": {"cheap": {"stalls": 2, "failed": False, "valid": 0, "checked": NOW - 200}}}
    plan = OnDemandPlusPlus().plan(snapshot(jobs=[job("1.s", cores=20)], nodes=STATIC, clouds=clouds,
                                            memory=memory))
    (cancel,) = kinds(plan, Kind.CANCEL)
    assert cancel.cloud == "cheap" and cancel.count == 3 and cancel.fault
    assert plan.memory["odpp"]["cheap"]["failed"] is True
    # pending counts the stuck requests this time (3 x 2 cores): 20 - 8 - 6 - 2 = 4 -> 2 on dear
    assert launches(plan) == {"dear": 2}


def test_odpp_stall_counted_once_per_loop():
    stuck = cloud("cheap", price=0, cores=2, desired=3, instances=())
    memory = {"odpp": {"cheap": {"stalls": 2, "failed": False, "valid": 0, "checked": NOW - 5}}}
    plan = OnDemandPlusPlus().plan(snapshot(jobs=[job("1.s", cores=20)], nodes=STATIC, clouds=[stuck],
                                            memory=memory))
    assert kinds(plan, Kind.CANCEL) == []
    assert plan.memory["odpp"]["cheap"]["stalls"] == 2


def test_odpp_scale_in_only_near_the_charge_boundary_and_only_idle_nodes():
    insts = (inst("i-a", "a", age=3500), inst("i-b", "b", age=1000), inst("i-c", "c", age=3500))
    nodes = STATIC + (cloud_node("a"), cloud_node("b"), cloud_node("c", state="free", jobs=("7.s",)))
    snap = snapshot(nodes=nodes, clouds=[cloud(instances=insts)])
    plan = OnDemandPlusPlus(loop_sleep_secs=120).plan(snap)
    assert [a.node for a in kinds(plan, Kind.DRAIN)] == ["a"]
    assert [a.instance for a in kinds(plan, Kind.TERMINATE)] == ["i-a"]
    assert [a.node for a in kinds(plan, Kind.REMOVE)] == ["a"]
    assert plan.wake_at == pytest.approx(NOW + (3600 - 1000) - 360)


def test_odpp_keeps_idle_nodes_while_more_boot_for_the_queued_job():
    # A 16-core job waits: the two joined (idle) instances and the two still booting cover it
    # together. Releasing the idle pair (per-second billing) would only launch it again: replays
    # showed that cycle repeating for ever while the job never started.
    insts = (inst("i-a", "a"), inst("i-b", "b"), inst("i-c", None, InstanceState.PENDING, age=30),
             inst("i-d", None, InstanceState.PENDING, age=30))
    nodes = (cloud_node("a"), cloud_node("b"))
    snap = snapshot(jobs=[job("1.s", cores=16)], nodes=nodes, clouds=[cloud(charge=0, instances=insts)])
    plan = OnDemandPlusPlus().plan(snap)
    assert not plan.actions
    # Once nothing boots any more, idle nodes are released again.
    snap = snapshot(nodes=nodes, clouds=[cloud(charge=0, instances=insts[:2])])
    assert len(kinds(OnDemandPlusPlus().plan(snap), Kind.TERMINATE)) == 2


def test_odpp_respects_budget():
    snap = snapshot(jobs=[job("1.s", cores=40)], nodes=STATIC, clouds=[cloud(price=0.5, cores=2, max_instances=30)])
    plan = OnDemandPlusPlus(price_per_hour=2.0).plan(snap)
    assert launches(plan) == {"hotel": 4}


# -- OnDemand --------------------------------------------------------------------------------
def test_ondemand_launches_with_overflow_to_the_next_cloud():
    clouds = [cloud("cheap", price=0.1, cores=4, max_instances=2), cloud("dear", price=0.5, cores=4)]
    snap = snapshot(jobs=[job("1.s", cores=30)], nodes=(node("s1", 2),), clouds=clouds)
    # 30 - 2 free = 28 cores -> 7 instances: 2 on cheap (its max), 5 on dear
    plan = OnDemand().plan(snap)
    assert launches(plan) == {"cheap": 2, "dear": 5}
    # Each launch says what was still uncovered when its cloud was asked.
    assert [a.reason for a in plan.actions if a.kind == Kind.LAUNCH] == [
        "28 queued cores not covered by free or pending cores",
        "20 queued cores not covered by free or pending cores"]


def test_ondemand_releases_idle_instances_after_idle_secs():
    insts = (inst("i-a", "a"), inst("i-b", "b"))
    snap = snapshot(nodes=(cloud_node("a"), cloud_node("b")), clouds=[cloud(instances=insts)],
                    owned=[owned("i-a", node_name="a", idle_for=90), owned("i-b", node_name="b", idle_for=10)])
    plan = OnDemand(idle_secs=60).plan(snap)
    assert [a.node for a in kinds(plan, Kind.DRAIN)] == ["a"]
    assert plan.wake_at == pytest.approx(NOW + 50)


def test_ondemand_keeps_idle_instance_the_queue_needs():
    insts = (inst("i-a", "a"),)
    snap = snapshot(jobs=[job("1.s", cores=4)], nodes=(cloud_node("a"),), clouds=[cloud(instances=insts)],
                    owned=[owned("i-a", node_name="a", idle_for=500)])
    plan = OnDemand(idle_secs=60).plan(snap)
    assert kinds(plan, Kind.DRAIN) == [] and launches(plan) == {}


def test_ondemand_a_memory_ask_no_node_can_be_checked_against_is_no_shortfall():
    # Neither the nodes nor the cloud say their memory (a node whose pbs_mom reports none, a
    # replay without local memory): the ask limits nothing, as packing counts it, so idle
    # instances keep counting their idle time and are released when the queue does not need
    # them, and no note says a limit was reached.
    asks_memory = replace(job("1.s", cores=2), chunks=(Chunk(1, 2, mem_mb=4000),))
    insts = (inst("i-a", "a"), inst("i-b", "b"))
    snap = snapshot(jobs=[asks_memory], nodes=(cloud_node("a"), cloud_node("b")),
                    clouds=[cloud(instances=insts)],
                    owned=[owned("i-a", node_name="a", idle_for=90), owned("i-b", node_name="b", idle_for=30)])
    plan = OnDemand(idle_secs=60).plan(snap)
    assert [a.node for a in kinds(plan, Kind.DRAIN)] == ["a"] and launches(plan) == {}
    assert plan.wake_at == pytest.approx(NOW + 30)
    assert not [n for n in plan.notes if "reached" in n], plan.notes


# -- CostAware -------------------------------------------------------------------------------
def test_costaware_packs_shapes_not_core_totals():
    # Two jobs of nodes=2:ppn=3 on 4-core instances: 12 cores would be 3 instances by core
    # count, but each node can hold only one 3-core part: 4 instances are needed.
    snap = snapshot(jobs=[job("1.s", nodes=((2, 3),)), job("2.s", nodes=((2, 3),))],
                    clouds=[cloud(cores=4)])
    assert launches(CostAware().plan(snap)) == {"hotel": 4}


def test_costaware_packs_small_jobs_together():
    snap = snapshot(jobs=[job(f"{k}.s", cores=1) for k in range(8)], clouds=[cloud(cores=4)])
    assert launches(CostAware().plan(snap)) == {"hotel": 2}


def test_costaware_fills_cheapest_within_max_then_next():
    clouds = [cloud("cheap", price=0.05, cores=4, max_instances=2), cloud("dear", price=0.4, cores=8)]
    snap = snapshot(jobs=[job(f"{k}.s", nodes=((1, 4),)) for k in range(6)], clouds=clouds)
    assert launches(CostAware().plan(snap)) == {"cheap": 2, "dear": 2}


def test_costaware_waits_for_cores_freed_before_a_boot():
    busy = node("s1", 4, state="job-exclusive", jobs=("9.s",), used=4)
    running = job("9.s", state="R", cores=4, remaining=60, hosts=("s1",))
    queued = job("1.s", cores=4)
    snap = snapshot(jobs=[running, queued], nodes=(busy,), clouds=[cloud(cores=4, boot=120)])
    assert launches(CostAware().plan(snap)) == {}
    later = job("9.s", state="R", cores=4, remaining=600, hosts=("s1",))
    snap = snapshot(jobs=[later, queued], nodes=(busy,), clouds=[cloud(cores=4, boot=120)])
    assert launches(CostAware().plan(snap)) == {"hotel": 1}


def test_costaware_says_when_the_budget_holds_the_queue():
    # Two busy 0.1-an-hour instances of a 0.25 budget: a third would spend 0.3.
    busy = tuple(inst(f"i-{k}", f"h{k}") for k in range(2))
    jobs = [job("1.s", nodes=((1, 4),))] + [job(f"{k + 2}.s", "R", cores=4, hosts=(f"h{k}",)) for k in range(2)]
    nodes = [cloud_node(f"h{k}", state="job-exclusive", jobs=(f"{k + 2}.s",)) for k in range(2)]
    snap = snapshot(jobs=jobs, nodes=nodes, clouds=[cloud(price=0.1, instances=busy)])
    plan = CostAware(price_per_hour=0.25).plan(snap)
    assert launches(plan) == {}
    assert "queued jobs wait: price_per_hour 0.25 reached (0.2 an hour spent or asked for)" in plan.notes
    # With room in the budget it launches, and no such note is given.
    plan = CostAware(price_per_hour=0.35).plan(snap)
    assert launches(plan) == {"hotel": 1} and not any("price_per_hour" in n for n in plan.notes)
    # Held by max_instances, not by the budget: no budget note either.
    full = snapshot(jobs=jobs, nodes=nodes, clouds=[cloud(price=0.1, max_instances=2, instances=busy)])
    plan = CostAware(price_per_hour=0.25).plan(full)
    assert launches(plan) == {} and not any("price_per_hour" in n for n in plan.notes)


def test_costaware_names_jobs_that_never_fit_and_does_not_launch_for_them():
    snap = snapshot(jobs=[job("1.s", nodes=((1, 16),))], nodes=(node("s1", 8),), clouds=[cloud(cores=4)])
    plan = CostAware().plan(snap)
    assert launches(plan) == {}
    assert any("1.s" in n and "16 cores on one node" in n for n in plan.notes)


def test_costaware_keeps_paid_idle_instance_until_its_boundary():
    snap = snapshot(nodes=(cloud_node("a"),), clouds=[cloud(instances=(inst("i-a", "a", age=1000),))])
    plan = CostAware(scale_in_margin_secs=120).plan(snap)
    assert plan.actions == ()
    assert plan.wake_at == pytest.approx(NOW + 2600 - 120)
    snap = snapshot(nodes=(cloud_node("a"),), clouds=[cloud(instances=(inst("i-a", "a", age=3500),))])
    plan = CostAware(scale_in_margin_secs=120).plan(snap)
    assert [a.kind for a in plan.actions] == [Kind.DRAIN, Kind.TERMINATE, Kind.REMOVE]


def test_costaware_uses_idle_paid_node_instead_of_launching():
    snap = snapshot(jobs=[job("1.s", cores=4)], nodes=(cloud_node("a"),),
                    clouds=[cloud(instances=(inst("i-a", "a", age=3550),))])
    plan = CostAware().plan(snap)
    assert plan.actions == ()  # the job will start on "a": neither launch nor drain


def test_costaware_undrains_a_drained_node_when_work_arrives():
    snap = snapshot(jobs=[job("1.s", cores=4)], nodes=(cloud_node("a", draining=True),),
                    clouds=[cloud(instances=(inst("i-a", "a", age=3550),))],
                    owned=[owned("i-a", node_name="a")])
    plan = CostAware().plan(snap)
    assert [(a.kind, a.node) for a in plan.actions] == [(Kind.UNDRAIN, "a")]


def test_costaware_per_second_billing_releases_after_idle_grace():
    c = cloud(charge=0, boot=90, instances=(inst("i-a", "a"),))
    snap = snapshot(nodes=(cloud_node("a"),), clouds=[c], owned=[owned("i-a", node_name="a", idle_for=100)])
    assert [a.kind for a in CostAware().plan(snap).actions] == [Kind.DRAIN, Kind.TERMINATE, Kind.REMOVE]
    snap = snapshot(nodes=(cloud_node("a"),), clouds=[c], owned=[owned("i-a", node_name="a", idle_for=30)])
    plan = CostAware().plan(snap)
    assert plan.actions == () and plan.wake_at == pytest.approx(NOW + 60)


def test_costaware_counts_booting_instances():
    booting = (inst("i-a", None, state=InstanceState.PENDING, age=20),)
    snap = snapshot(jobs=[job("1.s", cores=4), job("2.s", cores=4)], clouds=[cloud(cores=4, instances=booting)])
    assert launches(CostAware().plan(snap)) == {"hotel": 1}


def test_costaware_budget():
    snap = snapshot(jobs=[job(f"{k}.s", nodes=((1, 4),)) for k in range(10)],
                    clouds=[cloud(price=1.0, cores=4)])
    assert launches(CostAware(price_per_hour=3.5).plan(snap)) == {"hotel": 3}


def test_backed_off_cloud_is_skipped_for_the_next():
    clouds = [cloud("cheap", price=0, cores=4, health=Health.BACKOFF), cloud("dear", price=1, cores=4)]
    snap = snapshot(jobs=[job("1.s", cores=4)], clouds=clouds)
    for cls in (CostAware, OnDemand, OnDemandPlusPlus):
        assert launches(cls().plan(snap)) == {"dear": 1}, cls.__name__


# -- baselines and registry --------------------------------------------------------------------
def test_baselines():
    snap = snapshot(jobs=[job("1.s", cores=4)], clouds=[cloud("a", max_instances=3), cloud("b", max_instances=2)])
    assert launches(LocalOnly().plan(snap)) == {}
    assert launches(LaunchMax().plan(snap)) == {"a": 3, "b": 2}


def test_registry_names():
    for name in ("OnDemandPlusPlus", "OnDemand", "CostAware", "LocalOnly", "LaunchMax"):
        assert policy_class(name).__name__ == name
    with pytest.raises(KeyError, match="available: CostAware"):
        policy_class("Nope")


def test_booting_instances_make_the_policy_look_again_soon():
    booting = (inst("i-a", None, state=InstanceState.PENDING, age=5),)
    snap = snapshot(jobs=[job("1.s", cores=4)], clouds=[cloud(cores=4, boot=40, instances=booting)])
    for cls in (CostAware, OnDemand, OnDemandPlusPlus):
        assert cls().plan(snap).wake_at == pytest.approx(NOW + 10), cls.__name__
    assert CostAware().plan(snapshot(clouds=[cloud()])).wake_at is None


def test_costaware_splits_a_wide_job_across_clouds_cheapest_first():
    # A job of 4 nodes x 8 cores; the cheap cloud has room for 2: 2 cheap + 2 dear, not 4 dear.
    clouds = [cloud("cheap", price=0.05, cores=8, max_instances=2), cloud("dear", price=0.2, cores=8)]
    snap = snapshot(jobs=[job("1.s", nodes=((4, 8),))], clouds=clouds)
    assert launches(CostAware().plan(snap)) == {"cheap": 2, "dear": 2}


def test_costaware_budget_holds_when_one_job_spans_clouds():
    clouds = [cloud("cheap", price=1.0, cores=8, max_instances=2), cloud("dear", price=2.0, cores=8)]
    snap = snapshot(jobs=[job("1.s", nodes=((3, 8),)), job("2.s", nodes=((1, 8),))], clouds=clouds)
    # 3 nodes would cost 1 + 1 + 2 = 4 > 3.5: the first job cannot start; the second fits for 1.
    assert launches(CostAware(price_per_hour=3.5).plan(snap)) == {"cheap": 1}


def test_odpp_memory_reads_what_the_state_kept_and_survives_a_damaged_entry():
    kept = {"stalls": 2, "failed": True, "failed_at": 100.0, "valid": 1, "checked": 90.0}
    looks = cloud_looks(kept)
    assert looks == kept and looks is not kept
    assert no_looks() == {"stalls": 0, "failed": False, "valid": None, "checked": None}
    # Hand-edited or damaged: unreadable fields take their defaults, nothing raises.
    assert cloud_looks({"stalls": "x", "failed": "yes", "valid": True}) == no_looks()
    assert cloud_looks({"stalls": 1, "checked": 5, "junk": []}) == {
        "stalls": 1, "failed": False, "valid": None, "checked": 5.0}


def test_odpp_memory_of_a_cloud_marked_failed_keeps_it_out_of_the_launch():
    snap = snapshot(jobs=[job("1", cores=8)], clouds=[cloud("hotel", price=0.0), cloud("sierra", price=0.1)],
                    memory={"odpp": {"hotel": {"stalls": 0, "failed": True, "failed_at": NOW - 10,
                                               "valid": 0, "checked": NOW - 10}}})
    plan = OnDemandPlusPlus(price_per_hour=10).plan(snap)
    assert [(a.kind, a.cloud) for a in plan.actions] == [(Kind.LAUNCH, "sierra")]
    assert plan.memory["odpp"]["hotel"]["failed"] is True


def test_odpp_memory_keys_are_the_typed_dicts():
    from phorque.policy.policies import _LOOKS_ALL_KEYS, CloudLooks

    assert _LOOKS_ALL_KEYS == set(CloudLooks.__annotations__)
