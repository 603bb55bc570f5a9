"""The simulated Torque scheduling, on a 4-core node and five jobs whose waits are worked out by
hand for each discipline."""

from __future__ import annotations

import pytest

from phorque.replay import ReplaySettings, replay
from phorque.replay.sim import Simulation
from phorque.replay.swf import read_swf
from tests.replay.swfdata import write_swf

#  (submit, run, cores, requested time) on one node of 4 cores:
#  j1 holds the node 0..100. At 100, j2 (2 cores, asks 60) starts; j3 needs the whole node.
#  fifo (skip what does not fit): j4 starts at 100 beside j2 (ends 180), j5 at 150 when j2 ends,
#        j3 only at 180 -> waits 0, 90, 160, 70, 110
#  easy: j3 is reserved for 160 (j2's walltime end). j4 would end after that (100+100) and there
#        are no spare cores, so it waits; j5 ends by 120 <= 160, so it is backfilled at 100. j3 starts
#        at 150 when j2 really ends, j4 at 180 -> waits 0, 90, 130, 150, 60
#  strict: j3 holds everyone behind it: j3 at 150, j4 and j5 at 180 -> waits 0, 90, 130, 150, 140
JOBS = [(0, 100, 4, 100), (10, 50, 2, 60), (20, 30, 4, 30), (30, 80, 2, 100), (40, 10, 2, 20)]
EXPECTED = {
    "fifo": [0, 90, 160, 70, 110],
    "easy": [0, 90, 130, 150, 60],
    "strict": [0, 90, 130, 150, 140],
}


@pytest.mark.parametrize("discipline", sorted(EXPECTED))
def test_waits_by_discipline(tmp_path, discipline):
    trace = read_swf(write_swf(tmp_path / "t.swf", JOBS))
    settings = ReplaySettings(local_nodes=1, local_np=4, scheduler=discipline)
    sim = Simulation(trace, settings.make_policy("LocalOnly"), settings, keep_jobs=True)
    result = sim.run()
    waits = EXPECTED[discipline]
    assert [job.start - job.submit for job in sim.jobs.values()] == waits
    assert result.mean_wait_secs == pytest.approx(sum(waits) / 5)
    assert result.p95_wait_secs == max(waits)  # nearest rank: the 5th of 5
    runs = [j[1] for j in JOBS]
    bsld = sum(max(1.0, (w + r) / max(r, 10)) for w, r in zip(waits, runs, strict=True)) / 5
    assert result.mean_bounded_slowdown == pytest.approx(bsld)


def test_easy_backfilling_differs_from_fifo_and_strict(tmp_path):
    trace = read_swf(write_swf(tmp_path / "t.swf", JOBS))
    means = {d: replay(trace, "LocalOnly", ReplaySettings(local_nodes=1, local_np=4, scheduler=d)).as_dict()
             for d in EXPECTED}
    assert means["strict"]["mean_wait_secs"] == pytest.approx(102.0)
    assert means["easy"]["mean_wait_secs"] == pytest.approx(86.0)
    assert means["easy"]["max_wait_secs"] == 150.0 and means["fifo"]["max_wait_secs"] == 160.0


def test_job_longer_than_its_walltime_is_killed_at_it(tmp_path):
    # j1 asks 300 s but would run 500: Torque kills it at 300, so j2 (whole node) starts at 300.
    trace = read_swf(write_swf(tmp_path / "t.swf", [(0, 500, 4, 300), (0, 10, 4, 100)]))
    sim = Simulation(trace, ReplaySettings(local_nodes=1, local_np=4).make_policy("LocalOnly"),
                     ReplaySettings(local_nodes=1, local_np=4))
    result = sim.run()
    assert result.killed_at_walltime == 1
    assert sorted(sim.tally.waits) == [0.0, 300.0]
    assert result.end - result.start == 310.0


def test_nodes_ppn_parts_need_distinct_nodes():
    from phorque.core.model import Chunk
    from phorque.replay.cluster import Cluster

    cluster = Cluster()
    for name in ("a", "b"):
        cluster.add(name, 4)
    # 3 cores taken on a: a 2:ppn=2 job no longer fits (only b has 2 free), 4 procs still do.
    cluster.take("x", cluster.place(3, ()))
    assert cluster.free_total == 5
    assert cluster.place(4, (Chunk(2, 2),)) is None
    alloc = cluster.place(4, ())
    assert [(n.name, c) for n, c, _mem, _gpus in alloc] == [("a", 1), ("b", 3)]
    fits = cluster.place(4, (Chunk(1, 2), Chunk(2, 1, spread=True)))
    assert sorted((n.name, c) for n, c, _mem, _gpus in fits) == [("a", 1), ("b", 3)]


def test_a_job_too_big_for_the_current_cluster_does_not_hold_a_strict_queue(tmp_path):
    # 8 cores cannot fit the 4-core cluster as it is (only cloud nodes could take it): the
    # 1-core job behind it still starts at once under strict FIFO.
    trace = read_swf(write_swf(tmp_path / "t.swf", [(0, 100, 8, 200), (5, 10, 1, 20)]))
    settings = ReplaySettings(local_nodes=1, local_np=4, scheduler="strict")
    sim = Simulation(trace, settings.make_policy("LocalOnly"), settings)
    result = sim.run()
    assert sim.tally.waits == [0.0]
    assert result.unstarted == 1 and result.started == 1
