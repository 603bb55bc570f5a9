"""Cloud cost, billing, waits and instance counts of tiny replays, worked out by hand.

The set-up: one static node with 1 core and one cloud (1.0 per hour, 4-core instances, at most 2,
boot 100 s). One 4-core job arrives at t=0, when the replay starts, and runs 1000 s. The
evaluation at the start sees it and launches one instance, and looks again every 15 s while it
boots (a quarter of its boot time, at most 15 s: nothing tells the daemon that it booted). It
boots at 100; the look at 105 joins it and the job starts at once (1 core on the static node, 3
on the instance): wait 105 s. The job ends at 1105; the evaluation that its end triggers, at once
(the first trigger after a quiet moment), sees the node idle.
"""

from __future__ import annotations

import pytest

from phorque.core.model import CloudState
from phorque.replay import ReplaySettings, replay
from phorque.replay.swf import read_swf
from tests.replay.swfdata import one_cloud, write_swf

LAUNCH = 0.0
WAIT = 105.0
# When each policy gives the instance back under per-second billing:
#   OnDemandPlusPlus: as soon as it is idle (1105); OnDemand: after idle_secs=60 (1165);
#   CostAware: after idle_secs = the cloud's boot_secs = 100 (1205).
# LaunchMax keeps both instances; they are billed up to the end of the work (1105).
PER_SECOND = {"OnDemandPlusPlus": 1105.0, "OnDemand": 1165.0, "CostAware": 1205.0}


@pytest.fixture
def one_job(tmp_path):
    return read_swf(write_swf(tmp_path / "one.swf", [(0, 1000, 4, 2000)]))


def settings(charge: int = 3600, **kw) -> ReplaySettings:
    return ReplaySettings(local_nodes=1, local_np=1, clouds=(one_cloud(charge=charge),), **kw)


@pytest.mark.parametrize("policy", sorted(PER_SECOND))
def test_per_second_billing_pays_the_seconds_lived(one_job, policy):
    r = replay(one_job, policy, settings(charge=0))
    lived = PER_SECOND[policy] - LAUNCH
    assert r.mean_wait_secs == pytest.approx(WAIT)
    assert r.mean_bounded_slowdown == pytest.approx((WAIT + 1000) / 1000)
    assert r.instance_hours == pytest.approx(lived / 3600)
    assert r.cost == pytest.approx(lived / 3600 * 1.0)
    assert r.paid_utilization == pytest.approx(3 * 1000 / (lived * 4))
    assert r.peak_instances == 1 and r.launched == 1


@pytest.mark.parametrize("policy", sorted(PER_SECOND))
def test_hourly_billing_pays_a_started_hour_in_full(one_job, policy):
    r = replay(one_job, policy, settings(charge=3600))
    assert r.cost == pytest.approx(1.0)
    assert r.instance_hours == pytest.approx(1.0)
    assert r.paid_utilization == pytest.approx(3000 / (3600 * 4))


def test_longer_than_a_period_pays_two(tmp_path):
    # The job runs 4000 s on the instance: it lives past its first hour, so two are paid.
    trace = read_swf(write_swf(tmp_path / "t.swf", [(0, 4000, 4, 5000)]))
    r = replay(trace, "OnDemand", settings(charge=3600))
    assert r.instance_hours == pytest.approx(2.0)
    assert r.cost == pytest.approx(2.0)


@pytest.mark.parametrize("charge,cost", [(3600, 2.0), (0, 2 * (1105.0 - LAUNCH) / 3600)])
def test_launch_max_pays_every_instance_for_the_whole_replay(one_job, charge, cost):
    r = replay(one_job, "LaunchMax", settings(charge=charge))
    assert r.peak_instances == 2 and r.launched == 2
    assert r.cost == pytest.approx(cost)
    assert r.mean_wait_secs == pytest.approx(WAIT)


def test_local_only_launches_nothing_and_leaves_too_big_jobs_unstarted(one_job):
    r = replay(one_job, "LocalOnly", settings())
    assert r.cost == 0 and r.peak_instances == 0 and r.launched == 0
    assert r.started == 0 and r.unstarted == 1


def test_poll_mode_evaluates_only_every_loop(one_job):
    # The original: evaluations every 120 s only. Launch at 0, booted at 100, joined at 120
    # (the job starts: wait 120). It ends at 1120; the look at 1200 sees the node idle, OnDemand
    # wants 60 s more, the next look is 1320: released then, having lived 1320 s.
    r = replay(one_job, "OnDemand", settings(charge=0, mode="poll"))
    assert r.mean_wait_secs == pytest.approx(120.0)
    assert r.cost == pytest.approx(1320 / 3600)


def test_pbs_mom_delay_keeps_a_joined_node_down(one_job):
    r = replay(one_job, "OnDemand", settings(mom_delay_secs=30))
    assert r.mean_wait_secs == pytest.approx(WAIT + 30)


def test_jobs_larger_than_the_whole_possible_cluster_are_counted_and_do_not_block(tmp_path):
    # 1 static core + 2 instances x 4 cores = 9 cores at most: a 10-core job can never run; the
    # 1-core job behind it runs at once.
    trace = read_swf(write_swf(tmp_path / "t.swf", [(0, 100, 10, 200), (1, 50, 1, 100)]))
    r = replay(trace, "CostAware", settings())
    assert r.never_run == 1 and r.started == 1 and r.unstarted == 0
    assert r.mean_wait_secs == 0
    assert r.cost == 0  # nothing launched for a job that cannot fit


BUDGET_CLOUDS = (
    CloudState(name="cheap", price=0.05, instance_cores=8, max_instances=16, boot_secs=120),
    CloudState(name="dear", price=0.20, instance_cores=8, max_instances=64, boot_secs=120),
)


@pytest.mark.parametrize("policy", ["OnDemandPlusPlus", "OnDemand", "CostAware", "LaunchMax"])
def test_the_budget_is_never_exceeded(tmp_path, policy):
    # 40 jobs of 8 cores at once: unlimited, the policies would use both clouds. With 0.5 per
    # hour only 10 cheap instances fit, and the spending rate never goes above it.
    jobs = [(k * 10, 1800, 8, 3600) for k in range(40)]
    trace = read_swf(write_swf(tmp_path / "t.swf", jobs))
    budget = ReplaySettings(local_nodes=1, local_np=8, clouds=BUDGET_CLOUDS, price_per_hour=0.5)
    r = replay(trace, policy, budget)
    assert 0 < r.peak_rate <= 0.5 + 1e-9
    assert r.peak_instances <= 10
    assert r.clouds["dear"]["launched"] == 0
    assert r.started == 40
    free = replay(trace, policy, ReplaySettings(local_nodes=1, local_np=8, clouds=BUDGET_CLOUDS))
    assert free.peak_rate > 0.5  # the budget is what held it back


def test_curves_are_time_weighted_means(one_job):
    r = replay(one_job, "OnDemand", settings(charge=0))
    times, queued, live = r.series
    spans = [b - a for a, b in zip(times, times[1:], strict=False)]
    # The job is queued from 0 to 105 and the instance lives from 0 to 1165; the curves'
    # areas give those back (the last bin, after the instance is gone, is empty).
    assert sum(q * s for q, s in zip(queued, spans, strict=False)) == pytest.approx(WAIT)
    assert sum(n * s for n, s in zip(live, spans, strict=False)) == pytest.approx(PER_SECOND["OnDemand"], abs=2)
    assert max(live) <= 1 and queued[-1] == 0
