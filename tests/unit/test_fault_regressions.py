"""Regression tests, at the level of the pure parts, for what the fault tests found
(tests/integration/test_*_faults_e2e.py, test_concurrency_e2e.py)."""

from __future__ import annotations

from dataclasses import replace

from phorque.adapters.cloud.backoff import CloudHealthRecord, health_at, record_failure
from phorque.adapters.config import load_config
from phorque.core.model import Health, InstanceState, Stage
from phorque.core.observe import observe
from phorque.core.plan import Kind
from phorque.policy.lifecycle import BOOT_POLL_MAX, BOOT_POLL_MIN
from phorque.policy.policies import CostAware, OnDemandPlusPlus
from phorque.policy.view import View
from tests.builders import NOW, cloud, cloud_node, inst, job, node, owned, snapshot

STATIC = (node("static1", np=4),)


def kinds(plan, kind: Kind) -> list:
    return [a for a in plan.actions if a.kind == kind]


# -- backoff ----------------------------------------------------------------------------------

def test_failures_while_backed_off_are_one_failure() -> None:
    """A read timing out at every evaluation, or two instances of one launch given up together,
    must not push the cloud into a long backoff after a short outage."""
    rec = record_failure(CloudHealthRecord(), 1000.0, "timeout")
    again = record_failure(rec, 1010.0, "timeout again")
    assert (again.failures, again.backoff_until) == (1, 1060.0)
    assert (again.last_failure, again.last_error) == (1010.0, "timeout again")
    assert health_at(again, 1059.0) == Health.BACKOFF
    # The probe after the backoff failing again is a second failure: the wait doubles.
    probe = record_failure(again, 1060.0, "still failing")
    assert (probe.failures, probe.backoff_until) == (2, 1180.0)


# -- a node missing from one read ---------------------------------------------------------------

def test_a_joined_node_missing_from_one_read_is_left_alone() -> None:
    """pc#1763: one bad sinfo terminated a node. A partial pbsnodes list must not."""
    c = cloud("hotel", instances=(inst("i-1", dns="h1"), inst("i-2", dns="h2")))
    joined = (owned("i-1", node_name="h1"), owned("i-2", node_name="h2"))
    snap = snapshot(nodes=STATIC + (cloud_node("h1"),), clouds=[c], owned=joined)
    changed = {o.instance_id: o for o in observe(NOW, snap.clouds, snap.nodes, snap.owned)}
    assert changed["i-2"].down_since == NOW and changed["i-2"].stage == Stage.IDLE
    snap = replace(snap, owned=(joined[0], changed["i-2"]))
    plan = CostAware(scale_in_margin_secs=120).plan(snap)
    assert not [a for a in plan.actions if a.instance == "i-2" or a.node == "h2"]
    assert any("h2" in n and "missing from Torque's node list" in n for n in plan.notes)
    assert plan.wake_at is not None and plan.wake_at <= NOW + BOOT_POLL_MAX


def test_a_joined_node_missing_for_longer_than_boot_timeout_is_given_up() -> None:
    c = cloud("hotel", instances=(inst("i-2", dns="h2"),), boot_timeout=300)
    gone = replace(owned("i-2", node_name="h2"), down_since=NOW - 301)
    plan = CostAware().plan(snapshot(nodes=STATIC, clouds=[c], owned=(gone,)))
    (term,) = kinds(plan, Kind.TERMINATE)
    assert term.instance == "i-2" and term.node is None and not term.fault
    assert "missing for 301 s" in term.reason


# -- boot timeouts and Torque outages --------------------------------------------------------

def test_a_running_instance_never_joined_is_joined_whatever_its_age() -> None:
    """It booted while Torque (or Phorque) was down: joining it is right, blaming its cloud not."""
    c = cloud("hotel", instances=(inst("i-1", dns="h1", age=5000),), boot_timeout=900)
    plan = CostAware().plan(snapshot(nodes=STATIC, clouds=[c]))
    (join,) = kinds(plan, Kind.JOIN)
    assert join.instance == "i-1" and not kinds(plan, Kind.TERMINATE)


def test_a_join_that_keeps_failing_is_given_up_after_boot_timeout() -> None:
    c = cloud("hotel", instances=(inst("i-1", dns="h1", age=5000),), boot_timeout=900)
    tried = replace(owned("i-1", node_name="h1", stage=Stage.BOOTING, joined=False),
                    down_since=NOW - 901)
    plan = CostAware().plan(snapshot(nodes=STATIC, clouds=[c], owned=(tried,)))
    (term,) = kinds(plan, Kind.TERMINATE)
    assert term.fault and "did not join Torque" in term.reason and not kinds(plan, Kind.JOIN)
    recent = replace(tried, down_since=NOW - 100)
    assert kinds(CostAware().plan(snapshot(nodes=STATIC, clouds=[c], owned=(recent,))), Kind.JOIN)


def test_the_boot_clock_of_a_node_starts_at_its_join() -> None:
    c = cloud("hotel", instances=(inst("i-1", dns="h1", age=5000),), boot_timeout=900)
    booting = replace(owned("i-1", node_name="h1", stage=Stage.BOOTING, joined=False),
                      down_since=NOW - 100)
    nodes = STATIC + (cloud_node("h1", state="down"),)
    assert not kinds(CostAware().plan(snapshot(nodes=nodes, clouds=[c], owned=(booting,))), Kind.TERMINATE)
    late = replace(booting, down_since=NOW - 901)
    (term,) = kinds(CostAware().plan(snapshot(nodes=nodes, clouds=[c], owned=(late,))), Kind.TERMINATE)
    assert "never came up" in term.reason and term.fault


def test_pending_instances_still_time_out_from_their_launch() -> None:
    c = cloud("hotel", instances=(inst("i-1", state=InstanceState.PENDING, age=901),), boot_timeout=900)
    (term,) = kinds(CostAware().plan(snapshot(nodes=STATIC, clouds=[c])), Kind.TERMINATE)
    assert term.fault and "did not join Torque" in term.reason


# -- waking up -------------------------------------------------------------------------------

def test_a_plan_that_launches_looks_again_while_the_instances_boot() -> None:
    c = cloud("hotel", cores=4, boot=8)
    for policy in (CostAware(), OnDemandPlusPlus()):
        plan = policy.plan(snapshot(jobs=[job("1.s", cores=8)], nodes=STATIC, clouds=[c]))
        assert kinds(plan, Kind.LAUNCH)
        assert plan.wake_at == NOW + BOOT_POLL_MIN, type(policy).__name__


def test_a_backed_off_cloud_is_noted_and_the_plan_wakes_when_its_backoff_ends() -> None:
    cheap = replace(cloud("cheap", price=0.1), health=Health.BACKOFF, backoff_until=NOW + 45,
                    error="SetDesiredCapacity (InsufficientInstanceCapacity)")
    dear = cloud("dear", price=0.5, max_instances=0)
    plan = CostAware().plan(snapshot(jobs=[job("1.s", cores=4)], nodes=(), clouds=[cheap, dear]))
    assert not kinds(plan, Kind.LAUNCH)
    assert any("cloud cheap is backed off for 45 s" in n for n in plan.notes)
    assert plan.wake_at == NOW + 45


# -- a job that starts between the two reads ---------------------------------------------------

def test_a_job_queued_in_qstat_but_on_a_node_in_pbsnodes_needs_no_instance() -> None:
    nodes = (node("n1", np=4, state="job-exclusive", jobs=("7.s",)),)
    snap = snapshot(jobs=[job("7.s", cores=4)], nodes=nodes, clouds=[cloud("hotel")])
    assert View(snap).queued == ()
    assert not kinds(CostAware().plan(snap), Kind.LAUNCH)


# -- configuration -------------------------------------------------------------------------------

def test_an_empty_trigger_address_turns_nudges_off(tmp_path) -> None:
    conf = tmp_path / "phorque.conf"
    base = ("[Policy]\nname = CostAware\n[Cloud-a]\nimage_id = ami-1\nautoscale_group_name = g\n"
            "instance_type = t\ninstance_cores = 2\nmax_instances = 1\n")
    conf.write_text("[Phorque]\ntrigger_address =\n" + base)
    assert load_config(conf, environ={}).phorque.trigger is None
    conf.write_text(base)
    assert load_config(conf, environ={}).phorque.trigger == ("127.0.0.1", 15099)


# -- OnDemandPlusPlus: a failed cloud comes back ----------------------------------------------

def test_odpp_tries_a_failed_cloud_again_once_it_has_recovered() -> None:
    cheap, dear = cloud("cheap", price=0.1, cores=2), cloud("dear", price=1.0, cores=2)
    policy = OnDemandPlusPlus(loop_sleep_secs=120)  # stall_limit 3: judged failed in 360 s
    jobs = [job("1.s", cores=4)]

    def launches_after(secs: float, health: Health = Health.OK) -> dict:
        memory = {"odpp": {"cheap": {"stalls": 0, "failed": True, "valid": 0, "checked": NOW - 400,
                                     "failed_at": NOW - secs}}}
        clouds = [replace(cheap, health=health), dear]
        plan = policy.plan(snapshot(jobs=jobs, nodes=(), clouds=clouds, memory=memory))
        return {a.cloud: a.count for a in kinds(plan, Kind.LAUNCH)}

    assert launches_after(100) == {"dear": 2}                     # still marked failed
    assert launches_after(400, Health.BACKOFF) == {"dear": 2}     # still backed off
    assert launches_after(400) == {"cheap": 2}                    # recovered: cheapest again


def test_a_missing_node_that_qstat_shows_running_jobs_is_never_given_up() -> None:
    c = cloud("hotel", instances=(inst("i-2", dns="h2"),), boot_timeout=300)
    gone = replace(owned("i-2", node_name="h2", stage=Stage.BUSY), down_since=NOW - 3000)
    running = job("9.s", state="R", cores=4, hosts=("h2",))
    plan = CostAware().plan(snapshot(jobs=[running], nodes=STATIC, clouds=[c], owned=(gone,)))
    assert not kinds(plan, Kind.TERMINATE)
    assert any("h2 is missing from Torque's node list, but runs 9.s" in n for n in plan.notes)
