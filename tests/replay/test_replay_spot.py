"""Spot sections in the replay: a cheaper cloud whose instances the cloud takes back at seeded
times, the jobs of a taken-back node requeued (or lost when not rerunnable), the section backed
off meanwhile, and billing that stops at the interruption.

The set-up: one static node of 1 core; ``od`` (1.0 per hour) and ``spot`` (0.3 per hour, serving
queue 1) with 4-core instances, at most 6 each, booting in 100 s. Twelve 4-core jobs of queue 1,
one every 5 minutes, each running an hour: none fits on the static node.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from phorque.core.model import CloudState
from phorque.replay import ReplaySettings
from phorque.replay.sim import Simulation
from phorque.replay.spot import rerunnable
from phorque.replay.swf import read_swf
from tests.replay.swfdata import HEADER, swf_line

OD = CloudState(name="od", price=1.0, instance_cores=4, max_instances=6, charge_time_secs=3600, boot_secs=100)
SPOT = CloudState(name="spot", price=0.3, instance_cores=4, max_instances=6, charge_time_secs=3600,
                  boot_secs=100, spot=True, queues=frozenset({"1"}), node_properties=("spot",))
HIGH = 3.0  # interruptions per instance-hour: most hour-long runs are cut short


def write(path, jobs: list[tuple[int, int, int, int]], procs: int = 1):
    """``jobs`` are ``(number, submit, run, cores)``, all in queue 1."""
    text = HEADER.format(procs=procs) + "".join(
        swf_line(n, submit, run, cores, req_time=2 * run, queue=1) for n, submit, run, cores in jobs)
    path.write_text(text)
    return read_swf(path)


@pytest.fixture
def trace(tmp_path):
    return write(tmp_path / "spot.swf", [(k + 1, k * 300, 3600, 4) for k in range(12)])


def run(trace, clouds=(OD, SPOT), policy: str = "CostAware", **kw) -> Simulation:
    settings = ReplaySettings(clouds=clouds, local_nodes=1, local_np=1, **kw)
    sim = Simulation(trace, settings.make_policy(policy), settings, keep_jobs=True)
    sim.result = sim.run()
    return sim


def test_at_rate_zero_a_spot_section_is_a_cheaper_cloud(trace):
    on_demand = run(trace, clouds=(replace(OD, max_instances=12),)).result
    sim = run(trace, clouds=(OD, replace(SPOT, max_instances=12)))
    r = sim.result
    assert r.started == r.jobs == 12 and on_demand.started == 12
    assert r.clouds["spot"]["launched"] > 0 and r.clouds["od"]["launched"] == 0
    assert r.cost < on_demand.cost
    assert r.cost == pytest.approx(0.3 * r.instance_hours)
    assert (r.interruptions, r.requeued, r.lost_jobs, r.lost_core_hours) == (0, 0, 0, 0.0)
    assert r.mean_wait_secs == pytest.approx(on_demand.mean_wait_secs)


def test_interrupted_jobs_are_requeued_and_finish_while_the_spot_section_backs_off(trace):
    sim = run(trace, spot_interruptions_per_hour=HIGH)
    r = sim.result
    spot, od = sim.clouds["spot"], sim.clouds["od"]
    assert r.interruptions == len(spot.interruptions) == r.clouds["spot"]["interruptions"] > 0
    assert r.requeued > 0 and r.lost_jobs == 0 and r.lost_core_hours > 0
    # Every job ran to its end, the requeued ones too, and their waits count from their submit.
    assert r.started == r.jobs == 12 and r.unstarted == 0
    assert all(job.end is not None and job.end - job.start == pytest.approx(3600) for job in sim.jobs.values())
    assert r.max_wait_secs > 3600 * 0.1
    # Each interruption was handled: its node offlined, requeued and removed; the instance is no
    # longer listed, nor live, nor billed.
    assert all(i.handled_at is not None and i.handled_at - i.at < 1 for i in spot.interruptions)
    assert not spot.gone and not sim.world.gone_nodes and not sim.stalled
    assert any(i.requeued for i in spot.interruptions if i.node)
    assert r.actions.get("requeue done", 0) >= r.interruptions
    # The faults backed the spot section off (an instance of it joining meanwhile does not end
    # the back-off early); it launched nothing while backed off, and the on-demand section took
    # the work meanwhile.
    windows = sim.world.backoffs["spot"]
    assert windows
    assert sim.world.health["spot"].last_error.startswith("the cloud took instance")
    assert not any(start <= at < until for at in spot.launch_times for start, until in windows)
    assert od.launched > 0
    assert any(start <= at < until for at in od.launch_times for start, until in windows)


def test_an_interrupted_instance_is_billed_to_its_interruption_and_no_further(trace):
    sim = run(trace, spot_interruptions_per_hour=HIGH)
    spot = sim.clouds["spot"]
    cut = 0.0
    for rec in spot.interruptions:
        assert rec.paid_secs == pytest.approx(rec.at - rec.launch)
        assert rec.instance not in spot.live
        cut += rec.paid_secs
    # Instances Phorque let go pay whole hours; what is left over is exactly the interrupted
    # instances' seconds.
    others = spot.paid_secs - cut
    assert others == pytest.approx(round(others / 3600) * 3600)
    assert any(rec.paid_secs % 3600 > 1 for rec in spot.interruptions)
    # The interrupted lifetimes are not rounded up (hourly billing would pay more).
    assert sim.result.cost == pytest.approx((spot.paid_secs * 0.3 + sim.clouds["od"].paid_secs * 1.0) / 3600)


def test_the_same_seed_gives_the_same_replay_and_another_seed_another(trace):
    first = run(trace, spot_interruptions_per_hour=HIGH, seed=7).result.as_dict()
    again = run(trace, spot_interruptions_per_hour=HIGH, seed=7).result.as_dict()
    other = run(trace, spot_interruptions_per_hour=HIGH, seed=8).result.as_dict()
    assert first == again
    assert first != other
    assert first["interruptions"] > 0 and other["interruptions"] > 0


def test_jobs_that_are_not_rerunnable_never_launch_spot_instances(trace):
    sim = run(trace, spot_interruptions_per_hour=HIGH, rerunnable_fraction=0.0)
    r = sim.result
    assert r.clouds["spot"]["launched"] == 0 and r.clouds["od"]["launched"] > 0
    assert (r.interruptions, r.requeued, r.lost_jobs) == (0, 0, 0)
    assert r.started == 12
    assert all(job.rerunnable is False for job in sim.jobs.values())


def test_a_job_that_is_not_rerunnable_is_lost_with_its_spot_node(tmp_path):
    # Job 1 is rerunnable, job 4 is not (by number, seed 0, half of the jobs): job 1 launches a
    # spot instance; job 4, submitted once it runs, takes the instance's two free cores, and no
    # instance is launched for it. When the cloud takes the instance back, job 1 is requeued and
    # finishes elsewhere; job 4 is lost.
    assert rerunnable(0, "1.swf", 0.5) and not rerunnable(0, "4.swf", 0.5)
    trace = write(tmp_path / "two.swf", [(1, 0, 7200, 2), (4, 400, 7200, 2)])
    sim = run(trace, clouds=(replace(OD, max_instances=1), replace(SPOT, max_instances=1)),
              spot_interruptions_per_hour=2.0, rerunnable_fraction=0.5)
    r = sim.result
    first = sim.clouds["spot"].interruptions[0]
    assert first.lost == ("4.swf",) and first.requeued == ("1.swf",)
    assert r.lost_jobs == 1 and r.requeued >= 1
    assert [j.id for j in sim.lost] == ["4.swf"]
    assert sim.jobs["1.swf"].end is not None and sim.jobs["1.swf"].end - sim.jobs["1.swf"].start == 7200
    # Both jobs' work until the interruption is lost: 2 cores each.
    assert r.lost_core_hours * 3600 >= 2 * (first.at - (trace.start + 400)) * 2 - 1e-6
    assert sim.clouds["spot"].launched >= 1


def test_the_command_line_reports_the_spot_figures(tmp_path):
    path = tmp_path / "t.swf"
    write(path, [(k + 1, k * 300, 3600, 4) for k in range(6)], procs=4)
    conf = tmp_path / "phorque.conf"
    conf.write_text("[Policy]\nname = CostAware\n\n"
                    "[Cloud-od]\nimage_id = ami-1\nautoscale_group_name = od\ninstance_type = m5.xlarge\n"
                    "instance_cores = 4\nmax_instances = 4\nprice = 1.0\n\n"
                    "[Cloud-spot]\nimage_id = ami-1\nautoscale_group_name = spot\ninstance_type = m5.xlarge\n"
                    "instance_cores = 4\nmax_instances = 4\nprice = 0.3\nmarket = spot\nqueues = 1\n")
    base = [sys.executable, "-m", "phorque.replay.cli", str(path), "-c", str(conf), "--local-nodes", "1",
            "--local-np", "1", "-q"]
    done = subprocess.run([*base, "--json", "--spot-interruptions-per-hour", "3", "--seed", "2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["setup"]["spot"] == {"interruptions_per_hour": 3.0, "seed": 2, "rerunnable_fraction": 1.0}
    assert [c.get("market") for c in data["setup"]["clouds"]] == ["spot", None]
    cost_aware = data["results"][1]
    assert cost_aware["policy"] == "CostAware" and cost_aware["interruptions"] > 0
    assert {"requeued", "lost_jobs", "lost_core_hours"} <= set(cost_aware)
    text = subprocess.run(base, capture_output=True, text=True, timeout=120).stdout
    assert "interrupted" in text and "lost core-h" in text and "0 interruptions per instance-hour" in text
    for bad, why in ((["--rerunnable-fraction", "2"], "--rerunnable-fraction"),
                     (["--spot-interruptions-per-hour", "-1"], "--spot-interruptions-per-hour")):
        refused = subprocess.run([*base, *bad], capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2 and why in refused.stderr


def test_a_replay_without_spot_reports_no_spot_figures(tmp_path):
    path = tmp_path / "t.swf"
    write(path, [(1, 0, 600, 4)], procs=4)
    base = [sys.executable, "-m", "phorque.replay.cli", str(path), "--local-nodes", "1", "--local-np", "1",
            "-q"]
    data = json.loads(subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=120).stdout)
    assert "spot" not in data["setup"] and all("interruptions" not in r for r in data["results"])
    refused = subprocess.run([*base, "--spot-interruptions-per-hour", "1"], capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "no cloud is a spot section" in refused.stderr


def test_default_queue_sends_a_trace_without_queue_numbers_to_a_spot_section(tmp_path):
    path = tmp_path / "t.swf"
    path.write_text(HEADER.format(procs=1) + swf_line(1, 0, 3600, 4, req_time=7200, queue=-1))
    from phorque.replay.cli import load_trace
    from phorque.replay.trace import Window

    plain = load_trace([str(path)], "auto", Window(), 2.0)
    named = load_trace([str(path)], "auto", Window(), 2.0, default_queue="1")
    assert plain.jobs[0].queue == "" and named.jobs[0].queue == "1"
    assert run(plain).result.clouds["spot"]["launched"] == 0
    assert run(named).result.clouds["spot"]["launched"] == 1


def test_the_spot_section_falling_during_a_plan_makes_the_policy_plan_again_at_once(trace):
    # Handling an interruption backs the spot section off while the plan is applied; as the
    # engine does, the policy plans again in the same evaluation, and the requeued work is
    # launched on the on-demand cloud at that very moment, not at the next evaluation.
    sim = run(trace, spot_interruptions_per_hour=HIGH)
    spot, od = sim.clouds["spot"], sim.clouds["od"]
    handled = {i.handled_at for i in spot.interruptions if i.requeued}
    assert handled
    assert handled & set(od.launch_times)
