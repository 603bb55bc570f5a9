"""Shapes in the replay: SWF's requested memory, and a simulated cluster whose nodes have
memory, GPUs and properties that a job's parts must find (per node of a part, per core of a
spread part)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from phorque.adapters.config import load_config
from phorque.core.model import Chunk, CloudState
from phorque.replay import ReplaySettings
from phorque.replay.cli import main
from phorque.replay.cluster import HARD, MEMORY, PLAIN, Cluster, Possible, asks_of
from phorque.replay.settings import settings_from_config
from phorque.replay.sim import Simulation
from phorque.replay.swf import read_swf
from phorque.replay.trace import Trace, TraceJob
from tests.replay.swfdata import HEADER, swf_line

GIB = 1024


def names(alloc) -> list[tuple[str, int, int, int]]:
    return [(node.name, cores, mem, gpus) for node, cores, mem, gpus in alloc]


# -- SWF field 10 ------------------------------------------------------------------------------


def test_swf_requested_memory_is_per_core_memory_of_a_spread_part(tmp_path):
    path = tmp_path / "m.swf"
    path.write_text(HEADER.format(procs=8)
                    + swf_line(1, 0, 10, 4, 60, req_mem_kb=409600)    # 400 MiB per processor
                    + swf_line(2, 5, 10, 2, 60, req_mem_kb=1000)      # rounded up to 1 MiB
                    + swf_line(3, 9, 10, 2, 60, used_mem_kb=409600))  # used, not requested
    trace = read_swf(path)
    first, second, third = trace.jobs
    assert first.chunks == (Chunk(count=4, ppn=1, spread=True, mem_mb=400),)
    assert second.chunks == (Chunk(count=2, ppn=1, spread=True, mem_mb=1),)
    assert third.chunks == ()
    assert any("2 jobs ask for memory (field 10" in note for note in trace.notes)


def test_memory_asks_change_nothing_where_no_node_knows_its_memory(tmp_path):
    # The same workload with and without field 10, on nodes and clouds that declare no memory:
    # the same waits, cost and instances.
    lines = [(k, k * 40, 700, 4 + k % 5, 1200) for k in range(1, 13)]
    plain, asked = tmp_path / "p.swf", tmp_path / "a.swf"
    plain.write_text(HEADER.format(procs=8) + "".join(swf_line(*j) for j in lines))
    asked.write_text(HEADER.format(procs=8) + "".join(swf_line(*j, req_mem_kb=3 << 20) for j in lines))
    settings = ReplaySettings(local_nodes=1, local_np=8, scheduler="easy")
    results = [Simulation(read_swf(p), settings.make_policy("CostAware"), settings).run().as_dict()
               for p in (plain, asked)]
    assert results[0] == results[1]
    assert results[0]["launched"] > 0


# -- the cluster -------------------------------------------------------------------------------


def test_a_gpu_part_goes_only_to_a_node_with_free_gpus():
    cluster = Cluster()
    cluster.add("plain", 8)
    cluster.add("gpu", 8, gpus=2, properties=("gpu",))
    part = (Chunk(count=1, ppn=2, gpus=2),)
    alloc = cluster.place(2, part, asks_of(part))
    assert names(alloc) == [("gpu", 2, 0, 2)]
    cluster.take("g1", alloc)
    assert cluster.free_gpus == 0
    # Its GPUs are taken: a second GPU job does not fit though 14 cores are free ...
    assert cluster.place(2, part, asks_of(part)) is None
    # ... while a job asking cores only still uses the GPU node's free cores.
    assert names(cluster.place(14, ())) == [("plain", 8, 0, 0), ("gpu", 6, 0, 0)]
    cluster.release("g1", alloc)
    assert cluster.free_gpus == 2
    assert names(cluster.place(2, part, asks_of(part))) == [("gpu", 2, 0, 2)]


def test_memory_per_node_and_per_core_is_held_until_the_job_ends():
    cluster = Cluster()
    cluster.add("small", 8, mem=16 * GIB)
    cluster.add("unknown", 8)  # memory not known: never a limit
    node_part = (Chunk(count=1, ppn=1, mem_mb=20 * GIB),)
    assert names(cluster.place(1, node_part, MEMORY)) == [("unknown", 1, 20 * GIB, 0)]
    spread = (Chunk(count=4, ppn=1, spread=True, mem_mb=6 * GIB),)
    alloc = cluster.place(4, spread, MEMORY)
    # 16 GiB hold two cores of 6 GiB; the rest go on.
    assert names(alloc) == [("small", 2, 12 * GIB, 0), ("unknown", 2, 12 * GIB, 0)]
    cluster.take("s", alloc)
    assert cluster.place(1, (Chunk(count=1, ppn=1, mem_mb=5 * GIB),), MEMORY)[0][0].name == "unknown"
    cluster.release("s", alloc)
    assert cluster.place(1, (Chunk(count=1, ppn=1, mem_mb=5 * GIB),), MEMORY)[0][0].name == "small"


def test_properties_and_distinct_nodes_of_a_part():
    cluster = Cluster()
    cluster.add("a", 4)
    cluster.add("b", 4, properties=("ib",))
    cluster.add("c", 4, properties=("ib", "bigmem"))
    two_ib = (Chunk(count=2, ppn=4, properties=("ib",)),)
    assert asks_of(two_ib) == HARD
    assert [n for n, *_ in names(cluster.place(8, two_ib, HARD))] == ["b", "c"]
    # nodes=1:ppn=2:ib+1:ppn=1:bigmem: bigmem only on c, so ib takes b.
    mixed = (Chunk(count=1, ppn=2, properties=("ib",)), Chunk(count=1, ppn=1, properties=("bigmem",)))
    assert sorted(n for n, *_ in names(cluster.place(3, mixed, HARD))) == ["b", "c"]
    assert cluster.place(12, (Chunk(count=3, ppn=4, properties=("ib",)),), HARD) is None
    assert not cluster.fits_when_empty(12, (Chunk(count=3, ppn=4, properties=("ib",)),), HARD)
    assert cluster.fits_when_empty(8, two_ib, HARD)


def test_a_memory_ask_is_placed_by_cores_while_no_node_knows_its_memory():
    cluster = Cluster()
    cluster.add("a", 4)
    part = (Chunk(count=4, ppn=1, spread=True, mem_mb=999 * GIB),)
    assert asks_of(part) == MEMORY and asks_of(()) == PLAIN
    assert names(cluster.place(4, part, MEMORY, plain=())) == [("a", 4, 0, 0)]
    cluster.add("known", 4, mem=GIB)
    cluster.take("x", cluster.place(4, ()))
    assert cluster.place(4, part, MEMORY, plain=()) is None  # known has 1 GiB, not 999 per core


def test_the_possible_cluster_judges_each_part_by_the_shapes_that_can_hold_it():
    cluster = Cluster()
    cluster.add("n1", 8, mem=32 * GIB)
    gpu = CloudState(name="gpu", price=1.0, instance_cores=8, max_instances=2, instance_gpus=2,
                     instance_memory_mb=64 * GIB)
    possible = Possible(cluster.nodes.values(), [gpu])
    ok = (Chunk(count=2, ppn=4, gpus=2),)
    assert not possible.never(8, ok, HARD)
    assert possible.never(12, (Chunk(count=3, ppn=4, gpus=1),), HARD)   # only 2 GPU instances
    assert possible.never(1, (Chunk(count=1, ppn=1, mem_mb=65 * GIB),), MEMORY)
    assert possible.never(1, (Chunk(count=1, ppn=1, properties=("ib",)),), HARD)
    # Spread: 4 GPUs in all, one per core.
    assert not possible.never(4, (Chunk(count=4, ppn=1, spread=True, gpus=1),), HARD)
    assert possible.never(5, (Chunk(count=5, ppn=1, spread=True, gpus=1),), HARD)
    assert not possible.never(24, (), PLAIN) and possible.never(25, (), PLAIN)


# -- whole replays -----------------------------------------------------------------------------


def trace_of(*jobs: TraceJob) -> Trace:
    return Trace(name="shapes", jobs=list(jobs), start=0.0, end=max(j.submit for j in jobs))


GPU_PART = (Chunk(count=1, ppn=2, gpus=1, properties=("gpu",)),)


def two_clouds() -> tuple[CloudState, ...]:
    # The cheap cloud boots first, so its nodes come first in node order.
    cheap = CloudState(name="cheap", price=0.1, instance_cores=4, max_instances=2, boot_secs=10)
    gpu = CloudState(name="gpu", price=1.0, instance_cores=4, max_instances=1, boot_secs=60, instance_gpus=1,
                     node_properties=("gpu",), instance_memory_mb=32 * GIB, queues=frozenset({"gpu"}))
    return cheap, gpu


def test_a_gpu_job_in_the_trace_only_runs_on_a_gpu_node():
    trace = trace_of(TraceJob(id="g.1", submit=0.0, run_secs=500.0, cores=2, walltime_secs=900,
                              chunks=GPU_PART, queue="gpu"),
                     TraceJob(id="c.2", submit=1.0, run_secs=500.0, cores=3, walltime_secs=900))
    settings = ReplaySettings(clouds=two_clouds(), local_nodes=1, local_np=4, scheduler="strict")
    sim = Simulation(trace, settings.make_policy("LaunchMax"), settings, keep_jobs=True)
    result = sim.run()
    assert result.started == 2 and result.never_run == 0
    gpu_job, core_job = sim.jobs["g.1"], sim.jobs["c.2"]
    assert [(share[0].cloud, share[0].gpus, share[3]) for share in gpu_job.alloc] == [("gpu", 1, 1)]
    # It waited for the GPU instance's boot, although the static node and the cheap nodes had
    # room; the job behind it was not held (strict) and started at once on the static node.
    assert gpu_job.start >= 60 and core_job.start == 1.0
    assert [share[0].cloud for share in core_job.alloc] == [None]
    node = sim.cluster.nodes[gpu_job.alloc[0][0].name]
    assert (node.model().gpus, node.model().properties, node.model().mem_mb) == (1, ("gpu",), 32 * GIB)


def test_a_job_no_node_can_ever_hold_never_runs_and_holds_nothing():
    trace = trace_of(TraceJob(id="big.1", submit=0.0, run_secs=100.0, cores=1, walltime_secs=200,
                              chunks=(Chunk(count=1, ppn=1, mem_mb=64 * GIB),)),
                     TraceJob(id="g.2", submit=0.0, run_secs=100.0, cores=2, walltime_secs=200, chunks=GPU_PART),
                     TraceJob(id="c.3", submit=1.0, run_secs=100.0, cores=1, walltime_secs=200))
    # 64 GiB on one node: the static node has 16 and the cloud's instances 32; no GPU anywhere.
    cheap = replace(two_clouds()[0], instance_memory_mb=32 * GIB)
    settings = ReplaySettings(clouds=(cheap,), local_nodes=1, local_np=4, local_mem_mb=16 * GIB,
                              scheduler="strict")
    sim = Simulation(trace, settings.make_policy("LocalOnly"), settings, keep_jobs=True)
    result = sim.run()
    assert result.never_run == 2 and result.started == 1
    assert sim.jobs["c.3"].start == 1.0
    # A cloud that declares no memory could hold it (0: not declared, not checked).
    settings = replace(settings, clouds=two_clouds()[:1])
    assert Simulation(trace, settings.make_policy("LocalOnly"), settings).run().never_run == 1


def test_heterogeneous_clouds_from_the_configuration_replay(tmp_path):
    conf = tmp_path / "phorque.conf"
    common = "image_id = ami-1\ninstance_type = t\ninstance_cores = 4\ncharge_time_secs = 60\nboot_secs = 30\n"
    conf.write_text(
        "[Policy]\nname = LaunchMax\n\n"
        f"[Cloud-small]\nautoscale_group_name = s\n{common}max_instances = 1\nprice = 0.1\n"
        "instance_memory_mb = 8192\n\n"
        f"[Cloud-bigmem]\nautoscale_group_name = b\n{common}max_instances = 1\nprice = 0.4\n"
        "instance_memory_mb = 131072\n\n"
        f"[Cloud-gpu]\nautoscale_group_name = g\n{common}max_instances = 1\nprice = 1.0\n"
        "instance_memory_mb = 65536\ninstance_gpus = 2\nnode_properties = gpu\nqueues = gpu\n")
    settings = settings_from_config(load_config(str(conf)), local_nodes=1, local_np=2, local_mem_mb=4096)
    assert [(c.name, c.instance_memory_mb, c.instance_gpus, c.node_properties, c.queues)
            for c in settings.clouds] == [("small", 8192, 0, (), None), ("bigmem", 131072, 0, (), None),
                                          ("gpu", 65536, 2, ("gpu",), frozenset({"gpu"}))]
    trace = trace_of(
        TraceJob(id="m.1", submit=0.0, run_secs=300.0, cores=4, walltime_secs=600,
                 chunks=(Chunk(count=1, ppn=4, mem_mb=100 * GIB),)),
        TraceJob(id="g.2", submit=0.0, run_secs=300.0, cores=4, walltime_secs=600,
                 chunks=(Chunk(count=1, ppn=4, gpus=2, properties=("gpu",)),), queue="gpu"),
        TraceJob(id="s.3", submit=0.0, run_secs=300.0, cores=4, walltime_secs=600,
                 chunks=(Chunk(count=4, ppn=1, spread=True, mem_mb=2 * GIB),)))
    sim = Simulation(trace, settings.make_policy("LaunchMax"), settings, keep_jobs=True)
    result = sim.run()
    assert result.started == 3
    clouds = {job.id: {share[0].cloud for share in job.alloc} for job in sim.jobs.values()}
    assert clouds["m.1"] == {"bigmem"} and clouds["g.2"] == {"gpu"}
    # 4 cores of 2 GiB each: two fill the static node's 4 GiB, the other two go to the first
    # instance with room (bigmem and gpu are full).
    assert sorted(((share[0].cloud or ""), share[1], share[2]) for share in sim.jobs["s.3"].alloc) == [
        ("", 2, 4 * GIB), ("small", 2, 4 * GIB)]


@pytest.mark.parametrize("discipline", ["fifo", "strict", "easy"])
def test_a_job_waiting_for_a_gpu_does_not_take_cores_it_cannot_use(discipline):
    # One static node with one GPU: two GPU jobs take turns on it; core jobs fill the rest.
    trace = trace_of(*(TraceJob(id=f"g.{k}", submit=float(k), run_secs=100.0, cores=1, walltime_secs=150,
                                chunks=(Chunk(count=1, ppn=1, gpus=1),)) for k in range(2)),
                     TraceJob(id="c.9", submit=5.0, run_secs=50.0, cores=2, walltime_secs=60))
    settings = ReplaySettings(clouds=(), local_nodes=1, local_np=4, local_gpus=1, scheduler=discipline)
    sim = Simulation(trace, settings.make_policy("LocalOnly"), settings, keep_jobs=True)
    sim.run()
    starts = {job.id: job.start for job in sim.jobs.values()}
    # g.1 waits for the only GPU though cores are free; c.9 uses them, except under strict FIFO
    # where the waiting g.1 (which fits on the empty node) holds the queue.
    assert starts == {"g.0": 0.0, "g.1": 100.0, "c.9": 100.0 if discipline == "strict" else 5.0}


def test_the_command_line_gives_the_static_nodes_memory_and_gpus(tmp_path, capsys):
    path = tmp_path / "m.swf"
    path.write_text(HEADER.format(procs=4)
                    + swf_line(1, 0, 100, 2, 200, req_mem_kb=3 << 20)   # 3 GiB per core: 6 GiB
                    + swf_line(2, 0, 100, 2, 200, req_mem_kb=1 << 20))  # 2 GiB in all
    code = main([str(path), "--json", "--policy", "LocalOnly", "--local-nodes", "1", "--local-np", "4",
                 "--local-mem-mb", "4096", "--local-gpus", "1", "--local-properties", "ib, bigmem"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    setup = data["setup"]
    assert (setup["local_mem_mb"], setup["local_gpus"], setup["local_properties"]) == (4096, 1, ["ib", "bigmem"])
    local_only = data["results"][0]
    assert (local_only["policy"], local_only["started"], local_only["never_run"]) == ("LocalOnly", 1, 0)
    assert main([str(path), "--local-mem-mb", "-1", "--local-nodes", "1"]) != 0
    assert "--local-mem-mb must be >= 0" in capsys.readouterr().err
