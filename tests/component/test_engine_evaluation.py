"""The engine's evaluation on in-memory ports: what it reads, decides and does, and what it does
when a port fails. Each test is a few evaluations on a clock that moves only when told to."""

from __future__ import annotations

import pytest

from phorque.core.errors import CloudError, TransientError
from phorque.core.model import Stage
from phorque.core.plan import Kind
from tests.component.bed import Bed

HOUR = 3600


def bed_with(tmp_path, policy: str = "OnDemand", budget: str = "10", **hotel: object) -> Bed:
    bed = Bed(tmp_path)
    bed.configure({"hotel": {"price": 0.1, "max_instances": 2, **hotel},
                   "sierra": {"price": 0.2, "max_instances": 4}}, policy=policy, budget=budget)
    return bed


def done(ev, kind: Kind) -> list:
    return [o.action for o in ev.outcomes if o.action.kind == kind and o.status == "done"]


def test_queued_jobs_launch_on_the_cheapest_cloud_and_overflow_to_the_next(tmp_path):
    bed = bed_with(tmp_path)
    for n in range(3):
        bed.torque.submit(f"{n}.server", cores=4)
    ev = bed.engine().evaluate()

    assert [(a.cloud, a.count) for a in done(ev, Kind.LAUNCH)] == [("hotel", 2), ("sierra", 1)]
    assert (bed.clouds["hotel"].desired, bed.clouds["sierra"].desired) == (2, 1)
    assert bed.state.capacities() == {"hotel": 2, "sierra": 1}
    assert all(c.set_up for c in bed.clouds.values()), "each group is set up before its first use"


def test_a_booted_instance_joins_runs_its_job_and_is_released_just_before_its_next_period(tmp_path):
    bed = bed_with(tmp_path, policy="CostAware")
    engine = bed.engine()
    bed.torque.submit("1.server", cores=4)
    engine.evaluate()
    hotel = bed.clouds["hotel"]
    (iid,) = hotel.live()
    launched = bed.clock()

    bed.clock.advance(hotel.boot_secs)
    ev = engine.evaluate()
    (join,) = done(ev, Kind.JOIN)
    assert join.instance == iid and join.node == hotel.dns_of(iid)
    assert join.node in bed.torque.nodes_by_name and bed.torque.cycles >= 1

    bed.torque.start("1.server", join.node)
    bed.clock.advance(600)
    engine.evaluate()
    assert bed.state.get(iid).stage == Stage.BUSY
    bed.torque.finish("1.server")

    # Idle from now on: kept while its hour is paid, released within the margin before the
    # next period starts, never after.
    released_at = None
    while bed.clock() < launched + 2 * HOUR:
        bed.clock.advance(30)
        ev = engine.evaluate()
        if done(ev, Kind.TERMINATE):
            released_at = bed.clock()
            break
    assert released_at is not None, "the idle instance was never released"
    assert launched + HOUR - 130 <= released_at < launched + HOUR
    assert hotel.live() == [] and join.node not in bed.torque.nodes_by_name
    assert done(ev, Kind.REMOVE), "its node is removed in the same evaluation"


def test_a_cloud_that_fails_mid_plan_is_backed_off_and_its_share_goes_to_the_next_at_once(tmp_path):
    bed = bed_with(tmp_path)
    bed.torque.submit("1.server", cores=4)
    bed.clouds["hotel"].fail("set_desired", CloudError("hotel", "SetDesiredCapacity", "throttled"))
    ev = bed.engine().evaluate()

    launches = [(o.action.cloud, o.status) for o in ev.outcomes if o.action.kind == Kind.LAUNCH]
    assert launches == [("hotel", "failed"), ("sierra", "done")]
    assert bed.clouds["sierra"].desired == 1
    health = bed.state.health()["hotel"]
    assert health["failures"] == 1 and health["backoff_until"] > bed.clock()


def test_a_torque_read_that_fails_decides_nothing_and_asks_no_cloud(tmp_path):
    bed = bed_with(tmp_path)
    bed.torque.submit("1.server", cores=4)
    bed.torque.fail("jobs")
    with pytest.raises(TransientError, match="Torque could not be read, nothing decided"):
        bed.engine().evaluate()

    assert all(c.calls == [] for c in bed.clouds.values())
    assert bed.state.capacities() == {} and bed.state.decisions() == []


def test_a_dry_run_plans_and_changes_nothing(tmp_path):
    bed = bed_with(tmp_path)
    bed.torque.submit("1.server", cores=4)
    ev = bed.engine().evaluate(dry_run=True)

    assert not ev.executed
    assert [(a.kind, a.cloud) for a in ev.plan.ordered()] == [(Kind.LAUNCH, "hotel")]
    changing = {"set_desired", "terminate", "cancel_requests", "ensure_setup"}
    assert not [c for cloud in bed.clouds.values() for c, _ in cloud.calls if c in changing]
    assert bed.state.capacities() == {} and bed.state.owned() == []


def test_an_unreadable_clouds_known_instances_still_count_against_the_budget(tmp_path):
    # 0.1 per hour for each of hotel's two, 0.2 for one of sierra's: 0.4 > 0.3.
    bed = bed_with(tmp_path, budget="0.3")
    bed.torque.submit("1.server", cores=8)
    engine = bed.engine()
    engine.evaluate()
    assert bed.clouds["hotel"].desired == 2

    bed.torque.submit("2.server", cores=4)
    bed.clouds["hotel"].fail("describe", times=5)
    ev = engine.evaluate()
    assert done(ev, Kind.LAUNCH) == [], "the budget was spent twice"
    assert bed.clouds["sierra"].desired == 0
    (hotel,) = [c for c in ev.snapshot.clouds if c.name == "hotel"]
    assert hotel.capacity == 2 and not hotel.usable


def test_an_instance_the_cloud_took_back_has_its_jobs_requeued(tmp_path):
    bed = bed_with(tmp_path)
    engine = bed.engine()
    bed.torque.submit("1.server", cores=4, rerunnable=True)
    engine.evaluate()
    hotel = bed.clouds["hotel"]
    bed.clock.advance(hotel.boot_secs)
    (join,) = done(engine.evaluate(), Kind.JOIN)
    bed.torque.start("1.server", join.node)
    engine.evaluate()

    hotel.take_back(join.instance)
    ev = engine.evaluate()
    assert [o.status for o in ev.outcomes if o.action.kind == Kind.REQUEUE] == ["done"]
    assert bed.torque.jobs_by_id["1.server"].state == "Q"
    assert join.node not in bed.torque.nodes_by_name
    assert bed.state.get(join.instance).stage == Stage.GONE
