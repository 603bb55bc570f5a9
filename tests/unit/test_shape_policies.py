"""Policies match shapes, not cores: memory, GPUs, node properties and queues decide where a job
can go, and a job no node or instance can ever hold launches nothing and is named."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phorque.core.model import Chunk, Job
from phorque.core.plan import Kind
from phorque.policy.common import Fit, cloud_key, runs_on
from phorque.policy.packing import BinPool, Opener
from phorque.policy.policies import CostAware, OnDemand, OnDemandPlusPlus
from phorque.policy.view import View
from tests.builders import cloud, job, node, snapshot

GB = 1024
SHAPED = (CostAware, OnDemand, OnDemandPlusPlus)


def launches(plan):
    return {a.cloud: a.count for a in plan.actions if a.kind == Kind.LAUNCH}


def shaped(job_id: str, *parts: Chunk, queue: str = "batch", mem: int = 0) -> Job:
    return Job(id=job_id, state="Q", queue=queue, cores=sum(c.cores for c in parts), chunks=parts,
               walltime_secs=3600, mem_mb=mem)


def small(**kw):   # cheapest: 8 cores, 32 GB, no GPU
    return replace(cloud("small", price=0.1, cores=8, **kw), instance_memory_mb=32 * GB)


def bigmem(**kw):
    return replace(cloud("bigmem", price=0.5, cores=8, **kw), instance_memory_mb=256 * GB,
                   node_properties=("bigmem",))


def gpu(**kw):
    return replace(cloud("gpu", price=2.0, cores=8, **kw), instance_memory_mb=64 * GB, instance_gpus=2,
                   node_properties=("ib",))


CLOUDS = (small(), bigmem(), gpu())


@pytest.mark.parametrize("policy", SHAPED)
def test_a_gpu_job_launches_a_gpu_instance(policy):
    snap = snapshot(jobs=[shaped("1.s", Chunk(1, 4, gpus=2))], clouds=CLOUDS)
    assert launches(policy().plan(snap)) == {"gpu": 1}
    # Counted by cores alone, the cheapest cloud would have been chosen.
    cores_only = snapshot(jobs=[job("1.s", nodes=((1, 4),))], clouds=CLOUDS)
    assert launches(policy().plan(cores_only)) == {"small": 1}


@pytest.mark.parametrize("policy", SHAPED)
def test_a_big_memory_job_launches_a_big_memory_instance(policy):
    snap = snapshot(jobs=[shaped("1.s", Chunk(1, 2, mem_mb=200 * GB))], clouds=CLOUDS)
    assert launches(policy().plan(snap)) == {"bigmem": 1}


@pytest.mark.parametrize(("policy", "count"), [(CostAware, 2), (OnDemand, 2), (OnDemandPlusPlus, 1)])
def test_a_property_picks_the_cloud_whose_nodes_have_it(policy, count):
    # OnDemandPlusPlus keeps the original's arithmetic: 8 queued cores, one 8-core instance.
    snap = snapshot(jobs=[shaped("1.s", Chunk(2, 4, properties=("ib",)))], clouds=CLOUDS)
    assert launches(policy().plan(snap)) == {"gpu": count}


@pytest.mark.parametrize("policy", SHAPED)
def test_a_cloud_serves_only_its_queues(policy):
    clouds = (replace(small(), queues=frozenset({"short"})), bigmem())
    snap = snapshot(jobs=[job("1.s", nodes=((1, 4),), queue="batch")], clouds=clouds)
    assert launches(policy().plan(snap)) == {"bigmem": 1}
    snap = snapshot(jobs=[job("1.s", nodes=((1, 4),), queue="short")], clouds=clouds)
    assert launches(policy().plan(snap)) == {"small": 1}


@pytest.mark.parametrize("policy", SHAPED)
def test_a_job_no_instance_can_hold_is_named_not_launched_for(policy):
    snap = snapshot(jobs=[shaped("7.s", Chunk(1, 4, mem_mb=512 * GB))], clouds=CLOUDS)
    plan = policy().plan(snap)
    assert launches(plan) == {}
    assert any("job 7.s can never run: it asks for 512 GB per node; the largest instance has 256 GB" in n
               for n in plan.notes), plan.notes


@pytest.mark.parametrize(("parts", "why"), [
    ((Chunk(1, 1, gpus=4),), "it asks for 4 GPUs per node; the most any instance has is 2"),
    ((Chunk(1, 1, properties=("fpga",)),), "it asks for nodes with fpga; no instance has that property"),
    ((Chunk(1, 4, mem_mb=100 * GB, gpus=1),), "no instance has 4 cores, 100 GB, 1 GPUs together"),
])
def test_every_reason_is_named(parts, why):
    plan = CostAware().plan(snapshot(jobs=[shaped("3.s", *parts)], clouds=CLOUDS))
    assert launches(plan) == {} and any(why in n for n in plan.notes), plan.notes


def test_static_nodes_count_with_their_memory_gpus_and_properties():
    fat = replace(node("fat", np=8), mem_mb=512 * GB, gpus=4, properties=("bigmem", "ib"))
    thin = replace(node("thin", np=8), mem_mb=16 * GB)
    # A 300 GB job fits the free static node: no launch, and no "can never run" note.
    snap = snapshot(jobs=[shaped("1.s", Chunk(1, 4, mem_mb=300 * GB, gpus=4))], nodes=(fat, thin),
                    clouds=CLOUDS)
    for policy in SHAPED:
        plan = policy().plan(snap)
        assert launches(plan) == {} and not plan.notes, (policy, plan.notes)
    # With the fat node busy with a GPU job, a queued GPU job needs a GPU instance.
    busy = replace(fat, jobs=("9.s",), used_slots=4)
    running = Job(id="9.s", state="R", cores=4, chunks=(Chunk(1, 4, gpus=4),), exec_hosts=("fat",))
    snap = snapshot(jobs=[running, shaped("1.s", Chunk(1, 2, gpus=2))], nodes=(busy, thin), clouds=CLOUDS)
    assert launches(CostAware().plan(snap)) == {"gpu": 1}
    # Only the thin node and cheap instances: a 20 GB job does not go on the thin node.
    snap = snapshot(jobs=[shaped("2.s", Chunk(1, 1, mem_mb=20 * GB))], nodes=(thin,), clouds=CLOUDS)
    assert launches(CostAware().plan(snap)) == {"small": 1}


def test_the_job_memory_is_packed_with_the_cores():
    # 16 cores and 128 GB per instance: four 1-core 48 GB jobs take two instances, not one.
    big = (replace(cloud("m", cores=16), instance_memory_mb=128 * GB),)
    snap = snapshot(jobs=[shaped(f"{k}.s", Chunk(1, 1, mem_mb=48 * GB)) for k in range(4)], clouds=big)
    assert launches(CostAware().plan(snap)) == {"m": 2}
    assert launches(OnDemand().plan(snap)) == {"m": 2}


def test_on_demand_counts_gpus_as_well_as_cores():
    snap = snapshot(jobs=[shaped(f"{k}.s", Chunk(1, 1, gpus=2)) for k in range(3)], clouds=CLOUDS)
    assert launches(OnDemand().plan(snap)) == {"gpu": 3}
    assert launches(CostAware().plan(snap)) == {"gpu": 3}


def test_cores_only_jobs_on_cores_only_clouds_plan_as_before():
    # No memory, GPU, property or queue anywhere: every policy's plan is its core arithmetic.
    clouds = (cloud("a", price=0.1, cores=4, max_instances=2), cloud("b", price=0.2, cores=4))
    snap = snapshot(jobs=[job("1.s", cores=20)], nodes=(node("s1", 4),), clouds=clouds)
    assert launches(OnDemand().plan(snap)) == {"a": 2, "b": 2}
    assert launches(OnDemandPlusPlus().plan(snap)) == {"a": 2}
    assert launches(CostAware().plan(snap)) == {"a": 2, "b": 2}


def test_packing_keeps_gpu_bins_for_gpu_parts():
    pool = BinPool()
    pool.add(8)
    pool.add(8, gpus=2)
    assert pool.place((Chunk(1, 4),)) == {}
    assert pool.place((Chunk(1, 4, gpus=2),)) == {}   # the GPU node was kept free for it
    assert pool.place((Chunk(1, 4, gpus=1),)) is None
    opener = Opener("g", 1, 8, 1.0, gpus=2)
    assert pool.place((Chunk(1, 4, gpus=1),), (opener,)) == {"g": 1}
    assert opener.opened == 1
    before = (dict(pool.counts), pool.total)
    assert pool.place((Chunk(1, 1, gpus=3),), (Opener("h", 5, 8, gpus=2),)) is None
    assert (dict(pool.counts), pool.total) == before   # a failed placement changes nothing


def test_spread_cores_carry_their_memory():
    pool = BinPool()
    pool.add(8, mem=8 * GB)
    # procs=4 at 4 GB per core: two cores fit the free node, two need a new one.
    assert pool.place((Chunk(4, 1, spread=True, mem_mb=4 * GB),), (Opener("n", 3, 8, mem_mb=8 * GB),)) == {"n": 1}


PARTS = st.builds(
    Chunk, count=st.integers(1, 3), ppn=st.integers(1, 8),
    mem_mb=st.sampled_from([0, 0, 8 * GB, 48 * GB, 200 * GB, 400 * GB]),
    gpus=st.sampled_from([0, 0, 0, 1, 2, 3]),
    properties=st.sampled_from([(), (), ("ib",), ("bigmem",), ("fpga",)]))


@st.composite
def shaped_snapshots(draw):
    jobs = [shaped(f"{k}.s", *draw(st.lists(PARTS, min_size=1, max_size=2)),
                   queue=draw(st.sampled_from(["batch", "gpu"])))
            for k in range(draw(st.integers(1, 8)))]
    clouds = [small(max_instances=draw(st.integers(0, 6))), bigmem(max_instances=draw(st.integers(0, 6))),
              replace(gpu(max_instances=draw(st.integers(0, 6))),
                      queues=draw(st.sampled_from([None, frozenset({"gpu"})])))]
    statics = [replace(node(f"s{k}", np=draw(st.integers(1, 16))), mem_mb=draw(st.sampled_from([0, 16 * GB, 512 * GB])),
                       gpus=draw(st.sampled_from([0, 2])))
               for k in range(draw(st.integers(0, 2)))]
    return snapshot(jobs=jobs, nodes=statics, clouds=clouds)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shaped_snapshots(), st.sampled_from(SHAPED))
def test_no_plan_launches_on_a_cloud_that_cannot_run_a_job_it_launches_for(snap, policy):
    """Every launch is on a cloud that serves some queued job's queue and whose instance holds
    one of its parts (CostAware may spread one job over clouds; the others need it all), and
    no launch is for jobs that can never run."""
    plan = policy().plan(snap)
    fit = Fit(View(snap))
    clouds = {c.name: c for c in snap.clouds}
    queued = [j for j in snap.jobs if j.is_queued]
    never = {n.split()[1] for n in plan.notes if "can never run" in n}
    for action in plan.actions:
        if action.kind != Kind.LAUNCH:
            continue
        c = clouds[action.cloud]
        if policy is CostAware:
            assert any(c.serves(j.queue) and j.id not in never
                       and any(runs_on((part,), cloud_key(c)) for part in j.shape) for j in queued)
        else:
            assert any(fit.cloud_runs(c, j) and j.id not in never for j in queued), (action, queued)
