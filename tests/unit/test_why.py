"""Why a queued job waits: one sentence per job, from a snapshot and the plan made from it."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from phorque.core.model import Chunk, Health, InstanceState
from phorque.core.plan import Plan, launch
from phorque.policy.policies import CostAware
from phorque.policy.why import WhyKind, explain
from tests import builders as b


def plan_of(*actions) -> Plan:
    return Plan(actions=tuple(actions))


def test_the_first_jobs_take_the_free_cores():
    snap = b.snapshot(jobs=[b.job("1.s", cores=4, queued_at=1), b.job("2.s", cores=4, queued_at=2)],
                      nodes=[b.node("n1", np=4)], clouds=[b.cloud("hotel", max_instances=0)])
    why = explain(snap, None, None)
    assert why["1.s"].kind == WhyKind.FREE and "n1" in why["1.s"].text
    assert why["2.s"].kind == WhyKind.WAITING


def test_a_booting_instance_is_named_with_its_ready_time():
    inst = b.inst("i-abc", dns="vm-1", state=InstanceState.PENDING, age=30)
    snap = b.snapshot(jobs=[b.job("1.s", cores=4)],
                      clouds=[b.cloud("hotel", boot=120, instances=(inst,))],
                      owned=[b.owned("i-abc", joined=False, age=30)])
    why = explain(snap, None, 10.0)["1.s"]
    assert why.kind == WhyKind.BOOTING and why.instance == "i-abc" and why.cloud == "hotel"
    assert "i-abc" in why.text and "in 90 s" in why.text and why.ready_at == b.NOW - 30 + 120


def test_capacity_asked_but_not_started():
    snap = b.snapshot(jobs=[b.job("1.s", cores=4), b.job("2.s", cores=4)],
                      clouds=[b.cloud("hotel", desired=1)])
    why = explain(snap, None, None)
    assert why["1.s"].kind == WhyKind.REQUESTED and "hotel" in why["1.s"].text
    assert why["2.s"].kind == WhyKind.WAITING


def test_the_plans_launch_covers_the_jobs_it_was_for():
    snap = b.snapshot(jobs=[b.job("1.s", cores=4), b.job("2.s", cores=2), b.job("3.s", cores=4)],
                      clouds=[b.cloud("hotel", boot=60, max_instances=10)])
    why = explain(snap, plan_of(launch("hotel", 1, 0, "queued")), None)
    assert why["1.s"].kind == WhyKind.LAUNCHING and why["1.s"].ready_at == b.NOW + 60
    # One new instance of 4 cores: the second job does not fit beside the first.
    assert why["2.s"].kind == WhyKind.WAITING and why["3.s"].kind == WhyKind.WAITING


def test_held_back_by_max_instances_by_the_budget_and_by_back_off():
    job = b.job("1.s", cores=4)
    # Asked capacity covers two jobs; the third waits on max_instances.
    full = b.cloud("hotel", max_instances=2, desired=2)
    three = [b.job(f"{i}.s", cores=4, queued_at=float(i)) for i in range(3)]
    why = explain(b.snapshot(jobs=three, clouds=[full]), None, None)
    assert [why[j.id].kind for j in three] == [WhyKind.REQUESTED, WhyKind.REQUESTED, WhyKind.MAX_INSTANCES]
    assert "max_instances (2)" in why["2.s"].text
    pricey = b.cloud("hotel", price=1.0, desired=0)
    # The other cloud's one instance is a node busy with a job: it costs, and covers nothing.
    running = b.cloud("other", price=1.5, max_instances=1, instances=(b.inst("i-o", dns="vm-o"),))
    busy = b.cloud_node("vm-o", "other", jobs=("8.s",) * 4)
    why = explain(b.snapshot(jobs=[job], nodes=[busy], clouds=[pricey, running]), None, 2.0)["1.s"]
    assert why.kind == WhyKind.BUDGET and "price_per_hour 2" in why.text and "spending 1.5/h" in why.text
    down = dataclasses.replace(b.cloud("hotel", health=Health.BACKOFF), backoff_until=b.NOW + 300,
                               error="Throttling: rate exceeded")
    why = explain(b.snapshot(jobs=[job], clouds=[down]), None, None)["1.s"]
    assert why.kind == WhyKind.BACKED_OFF and "in 300 s" in why.text and "Throttling" in why.text
    gone = b.cloud("hotel", health=Health.UNREACHABLE)
    why = explain(b.snapshot(jobs=[job], clouds=[gone]), None, None)["1.s"]
    assert why.kind == WhyKind.BACKED_OFF and "cannot be read" in why.text


def test_every_blocked_cloud_is_named_cheapest_first():
    job = b.job("1.s", cores=4)
    cheap = b.cloud("cheap", price=0.1, max_instances=1, desired=1)
    dear = dataclasses.replace(b.cloud("dear", price=0.5, health=Health.FAILED), backoff_until=b.NOW + 60)
    # The asked instance of "cheap" goes to the first job; the second is held back by both.
    snap = b.snapshot(jobs=[b.job("0.s", cores=4, queued_at=0), dataclasses.replace(job, queued_at=1)],
                      clouds=[cheap, dear])
    why = explain(snap, None, None)["1.s"]
    assert why.kind == WhyKind.MAX_INSTANCES
    assert why.text.index("cloud cheap") < why.text.index("cloud dear")


def test_never_runnable_names_what_is_missing():
    big = dataclasses.replace(b.job("1.s", cores=2), chunks=(Chunk(1, 2, mem_mb=512 * 1024),))
    snap = b.snapshot(jobs=[big], clouds=[dataclasses.replace(b.cloud("hotel"), instance_memory_mb=65536)])
    why = explain(snap, None, None)["1.s"]
    assert why.kind == WhyKind.NEVER and "512 GB" in why.text and "64 GB" in why.text


def test_waiting_for_running_jobs_says_when_they_end():
    snap = b.snapshot(jobs=[b.job("1.s", cores=4),
                            b.job("9.s", state="R", cores=4, remaining=100, hosts=("n1",))],
                      nodes=[b.node("n1", np=4, jobs=("9.s",) * 4)], clouds=[b.cloud("hotel")])
    why = explain(snap, None, None)["1.s"]
    assert why.kind == WhyKind.WAITING and "in 100 s" in why.text and "hotel" in why.text


def test_a_queue_phorque_does_not_serve_and_a_queue_only_some_clouds_serve():
    snap = b.snapshot(jobs=[b.job("1.s", queue="other"), b.job("2.s", cores=4, queue="gpu")],
                      clouds=[dataclasses.replace(b.cloud("hotel", desired=1), queues=frozenset({"batch"})),
                              dataclasses.replace(b.cloud("g", desired=1), queues=frozenset({"gpu"}))])
    why = explain(snap, None, None, queues=frozenset({"batch", "gpu"}))
    assert why["1.s"].kind == WhyKind.NOT_COUNTED and "other" in why["1.s"].text
    assert why["2.s"].kind == WhyKind.REQUESTED and why["2.s"].cloud == "g"


@settings(max_examples=60, deadline=None)
@given(cores=st.lists(st.integers(1, 8), min_size=1, max_size=12), free=st.integers(0, 16),
       desired=st.integers(0, 3), max_instances=st.integers(0, 6))
def test_every_queued_job_gets_one_sentence_and_launches_cover_what_costaware_plans(
        cores, free, desired, max_instances):
    jobs = [b.job(f"{i}.s", cores=c, queued_at=float(i)) for i, c in enumerate(cores)]
    nodes = [b.node("n1", np=free)] if free else []
    cloud = b.cloud("hotel", cores=8, max_instances=max(max_instances, desired), desired=desired)
    snap = b.snapshot(jobs=jobs, nodes=nodes, clouds=[cloud])
    plan = CostAware(scale_in_margin_secs=60).plan(snap)
    why = explain(snap, plan, None)
    assert set(why) == {j.id for j in jobs}
    assert all(w.text and w.text[0].islower() for w in why.values())
    launched = sum(a.count or 0 for a in plan.ordered() if a.kind.value == "launch")
    # A launch is always for some job, and never more instances cover jobs than were launched.
    assert (launched > 0) == any(w.kind == WhyKind.LAUNCHING for w in why.values())


def test_launches_only_stops_once_the_new_instances_are_taken():
    jobs = [b.job(f"{i}.s", cores=4, queued_at=float(i)) for i in range(6)]
    snap = b.snapshot(jobs=jobs, clouds=[b.cloud("hotel", max_instances=10)])
    plan = plan_of(launch("hotel", 2, 0, "queued"))
    full = explain(snap, plan, None)
    short = explain(snap, plan, None, launches_only=True)
    assert [full[f"{i}.s"].kind for i in range(3)] == [WhyKind.LAUNCHING, WhyKind.LAUNCHING, WhyKind.WAITING]
    assert set(short) == {"0.s", "1.s"} and all(w.kind == WhyKind.LAUNCHING for w in short.values())
