"""The queue index: the live view's, kept job by job, equals the one derived from the jobs; and
CostAware's pass over the queue, which stops once no job still to come can change the plan,
plans what a pass over every queued job plans."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phorque.act.live_index import LiveIndex
from phorque.core.model import (
    COMPLETED,
    EXITING,
    HELD,
    QUEUED,
    RUNNING,
    Chunk,
    Job,
    Node,
    queue_tally,
    summarize,
    summarize_snapshot,
)
from phorque.core.queue_index import index_of
from phorque.policy import policies
from phorque.policy.policies import CostAware
from phorque.policy.view import View
from tests.builders import cloud, node, snapshot

REFUSED = "Not Running - PBS Error: Unknown node-attribute"
#: Requests shared by many jobs, as the Torque parser shares one tuple per request.
REQUESTS = ((), (Chunk(1, 4),), (Chunk(2, 8),), (Chunk(1, 16),), (Chunk(4, 2), Chunk(1, 8)))


def random_job(rng: random.Random, job_id: str) -> Job:
    chunks = rng.choice(REQUESTS)
    cores = sum(c.count * c.ppn for c in chunks) if chunks else rng.randint(1, 3)
    state = rng.choice([QUEUED, QUEUED, QUEUED, RUNNING, EXITING, HELD, COMPLETED])
    return Job(job_id, state, queue=rng.choice(["batch", "batch", "debug"]), cores=cores,
               chunks=chunks, queued_at=rng.choice([None, 10.0, 20.0, float(rng.randint(0, 30))]),
               rerunnable=rng.choice([None, True]), comment=rng.choice(["", "", REFUSED, "waiting"]),
               remaining_secs=rng.choice([None, 600]) if state in (RUNNING, EXITING) else None,
               exec_hosts=("n0",) if state in (RUNNING, EXITING) else ())


def listed_nodes(rng: random.Random, jobs: dict[str, Job]) -> tuple[Node, ...]:
    """Nodes that list the running jobs and, now and then, a job qstat still shows queued."""
    names = [i for i, j in jobs.items() if j.state in (RUNNING, EXITING) or rng.random() < 0.1]
    return (node("n0", np=64, state="job-exclusive" if names else "free", jobs=tuple(names)),)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 60))
def test_the_index_kept_job_by_job_equals_the_index_derived_from_the_jobs(seed, steps):
    rng = random.Random(seed)
    jobs: dict[str, Job] = {}
    live = LiveIndex()
    for _ in range(steps):
        roll = rng.random()
        if roll < 0.15:
            # A full read: some jobs the very same values, some read anew, some gone, some new,
            # in the read's own order.
            # (Mostly the same: then only what changed is put again, the order set anew.)
            same = rng.choice([0.5, 0.97, 1.0])
            read = {i: (j if rng.random() < same else random_job(rng, i)) for i, j in jobs.items()
                    if rng.random() < same}
            for _ in range(rng.randint(0, 1)):
                job_id = f"{rng.randint(100, 999)}.srv"
                read[job_id] = random_job(rng, job_id)
            order = list(read)
            rng.shuffle(order)
            before, jobs = jobs, {i: read[i] for i in order}
            live.rebuild(jobs, before if rng.random() < 0.8 else None)
        else:
            # Records: a few jobs change, end or arrive (a new id goes to the end of the dict).
            for _ in range(rng.randint(1, 12)):
                job_id = f"{rng.randint(1, 80)}.srv" if rng.random() < 0.8 else f"{rng.randint(1, 5)}[{rng.randint(0, 3)}].srv"
                if job_id in jobs and rng.random() < 0.3:
                    del jobs[job_id]
                    live.put(job_id, None)
                else:
                    job = random_job(rng, job_id)
                    if job.state == COMPLETED:
                        continue  # the view keeps no ended job
                    jobs[job_id] = job
                    live.put(job_id, job)
        nodes = listed_nodes(rng, jobs)
        # A running job's remaining walltime is served counted down: another value, same place.
        replaced = {i: dataclasses.replace(j, remaining_secs=1) for i, j in jobs.items()
                    if j.remaining_secs is not None and rng.random() < 0.5}
        served = {**jobs, **replaced}
        got = live.index(replaced, (j for n in nodes for j in n.jobs))
        want = index_of(served.values(), nodes)
        assert got.same_as(want), (got, want)
        # Every job is in the view's order (refused, running) or the scheduler's (queued).
        assert all(j.state == QUEUED and j.comment != REFUSED for j in got.queued)


def test_the_derived_index_sorts_by_queue_time_then_id_and_leaves_out_started_and_refused_jobs():
    jobs = [Job("10.srv", QUEUED, queued_at=5.0), Job("9.srv", QUEUED, queued_at=5.0),
            Job("2.srv", QUEUED), Job("3.srv", QUEUED, queued_at=1.0),
            Job("4.srv", QUEUED, queued_at=0.5, comment=REFUSED), Job("5.srv", QUEUED, queued_at=0.1),
            Job("6.srv", RUNNING, exec_hosts=("n0",)), Job("7.srv", HELD)]
    index = index_of(jobs, (node("n0", jobs=("5.srv", "6.srv")),))
    assert [j.id for j in index.queued] == ["3.srv", "9.srv", "10.srv", "2.srv"]
    assert [j.id for j in index.refused] == ["4.srv"]
    assert [j.id for j in index.running] == ["6.srv"]
    assert sum(n for n, _ in index.kinds.values()) == 4


# -- CostAware's pass over the queue ------------------------------------------------------------
class _NoStop:
    """Stands in for policies._Left: never says the rest of the queue is hopeless."""

    def __init__(self, kinds, serving):
        pass

    def take(self, alike, hopeless, version):
        pass

    def blocked(self, alike, version):
        pass

    def all_blocked(self, version):
        return False


@st.composite
def crowded(draw):
    """A cluster and a queue of many jobs of few requests, two clouds of few instances: the
    jobs that find room are followed by many that find none."""
    rng = random.Random(draw(st.integers(0, 2**31)))
    nodes = [node(f"s{k}", np=8, state=rng.choice(["free", "job-exclusive", "free"]),
                  jobs=(f"{900 + k}.srv",) if rng.random() < 0.2 else ()) for k in range(draw(st.integers(0, 4)))]
    jobs = []
    for k in range(draw(st.integers(0, 80))):
        job = random_job(rng, f"{k}.srv")
        if job.state in (RUNNING, EXITING) and nodes:
            job = dataclasses.replace(job, exec_hosts=(nodes[0].name,), remaining_secs=rng.choice([60, 7200]))
        jobs.append(job)
    for n in nodes:  # a job qstat shows queued, already on a node
        if n.jobs:
            jobs.append(Job(n.jobs[0], QUEUED, queue="batch", cores=1))
    clouds = [cloud("cheap", price=0.1, cores=8, max_instances=draw(st.integers(0, 4))),
              cloud("dear", price=0.4, cores=16, max_instances=draw(st.integers(0, 3)))]
    return snapshot(jobs=jobs, nodes=nodes, clouds=clouds)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crowded(), st.sampled_from([None, 0.05, 0.3, 0.7, 5.0]),
       st.sampled_from([None, frozenset({"batch"}), frozenset({"debug", "batch"})]), st.booleans())
def test_costaware_stopping_early_plans_what_a_pass_over_every_job_plans(snap, budget, queues, live):
    if live:  # the daemon's snapshot: the index comes with it
        snap = dataclasses.replace(snap, queue_index=index_of(snap.jobs, snap.nodes))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(policies, "_LONG_QUEUE", 0)  # every queue counted, however short
        plan = CostAware(price_per_hour=budget, queues=queues).plan(snap)
        mp.setattr(policies, "_Left", _NoStop)
        everything = CostAware(price_per_hour=budget, queues=queues).plan(snap)
    assert plan == everything


def test_behind_full_clouds_a_long_queue_is_planned_as_a_short_one():
    """10,000 queued jobs behind two clouds that take 3 instances: the plan is the plan for the
    jobs that fit, and the queue's length shows only in the kinds the pass counted."""
    chunks = (Chunk(1, 8),)
    jobs = [Job(f"{k}.srv", QUEUED, queue="batch", cores=8, chunks=chunks, queued_at=float(k))
            for k in range(10_000)]
    clouds = [cloud("cheap", price=0.1, cores=8, max_instances=2),
              cloud("dear", price=0.4, cores=16, max_instances=1)]
    snap = snapshot(jobs=jobs, clouds=clouds)
    plan = CostAware().plan(snap)
    launches = {a.cloud: a.count for a in plan.actions}
    assert launches == {"cheap": 2, "dear": 1}
    assert View(snap).queued_kinds == {(id(chunks), 8, "batch", None): (10_000, jobs[0])}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crowded(), st.sampled_from([None, frozenset({"batch"}), frozenset({"debug"})]))
def test_the_daemons_numbers_from_the_index_are_the_numbers_from_the_jobs(snap, queues):
    """What every evaluation logs, shows and exports (queued jobs and cores per queue, running
    jobs) is read from the index when the snapshot has one: the same numbers."""
    indexed = dataclasses.replace(snap, queue_index=index_of(snap.jobs, snap.nodes))
    assert summarize_snapshot(indexed, queues) == summarize_snapshot(snap, queues)
    assert queue_tally(indexed, queues) == queue_tally(snap, queues)
    jobs = [j for j in snap.jobs if queues is None or j.queue in queues]
    assert summarize_snapshot(snap, queues) == summarize(jobs, snap.nodes)
    assert sum(n for n, _ in queue_tally(snap, queues).values()) == sum(j.state == QUEUED for j in jobs)
