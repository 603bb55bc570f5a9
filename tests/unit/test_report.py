"""The arithmetic of ``phorque-report``: paid time, shares by cores and time, idle, windows."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import pytest

from phorque.adapters.state import StateStore
from phorque.cli.costs import (
    Paid,
    ReportError,
    Run,
    Tariff,
    apportion,
    attribute,
    check,
    days,
    lines,
    slots_by_host,
)
from phorque.core.model import Owned, Stage

T0 = 1_800_000_000.0
HOURLY = {"hotel": Tariff(price=3.6, charge_time_secs=100)}  # 0.001 per second, 100 s periods


def one_day(at):
    return "2027-01-15", Fraction(10 ** 12)


def att(instances, runs, tariffs=HOURLY, now=T0 + 10_000, since=None, until=None):
    return attribute(instances, runs, tariffs, now, since, until, day=one_day)


def by_key(result, by="job"):
    return {(ln.kind, ln.key, ln.cloud): ln.cost for ln in lines(result, by)}


def test_paid_time_is_whole_billing_periods_from_the_launch():
    result = att([Paid("i-1", "hotel", "n1", T0, T0 + 101)], [])
    assert result.total == Fraction(200, 1000)  # 101 s lived: two periods of 100 s
    assert by_key(result) == {("idle", None, "hotel"): Fraction(1, 5)}
    per_second = {"hotel": Tariff(price=3.6, charge_time_secs=0)}
    assert att([Paid("i-1", "hotel", "n1", T0, T0 + 101)], [], per_second).total == Fraction(101, 1000)


def test_jobs_share_by_cores_and_time_and_the_rest_is_idle():
    a = Run("1.s", T0 + 0, T0 + 100, {"n1": 2}, user="ann")
    b = Run("2.s", T0 + 50, T0 + 100, {"n1": 6}, user="bob")
    result = att([Paid("i-1", "hotel", "n1", T0, T0 + 150)], [a, b])
    costs = by_key(result)
    # 0-50 s: job 1 alone; 50-100 s: 2 and 6 cores, a quarter and three quarters; 100-200 s idle.
    assert costs[("jobs", "1.s", None)] == Fraction(50, 1000) + Fraction(50, 1000) / 4
    assert costs[("jobs", "2.s", None)] == Fraction(50, 1000) * 3 / 4
    assert costs[("idle", None, "hotel")] == Fraction(100, 1000)
    assert sum(costs.values()) == result.total == Fraction(200, 1000)
    users = by_key(result, "user")
    assert users[("jobs", "ann", None)] == costs[("jobs", "1.s", None)]
    shown = [ln.shown for ln in lines(result, "job")]
    assert check(result, shown, [ln.cost for ln in lines(result, "job")]) == sum(shown) == 200_000


def test_a_window_clips_the_paid_time_and_still_adds_up():
    run = Run("1.s", T0, T0 + 300, {"n1": 4})
    paid = Paid("i-1", "hotel", "n1", T0, T0 + 300)
    result = att([paid], [run], since=T0 + 100, until=T0 + 150)
    assert result.total == Fraction(50, 1000)
    assert by_key(result) == {("jobs", "1.s", None): Fraction(50, 1000)}
    assert att([paid], [run], since=T0 + 1000).total == 0
    with pytest.raises(ReportError):
        att([paid], [run], since=T0 + 100, until=T0 + 100)


def test_a_node_name_reused_by_a_later_instance_charges_each_its_own_jobs():
    first = Paid("i-1", "hotel", "vm-1", T0, T0 + 100)
    second = Paid("i-2", "hotel", "vm-1", T0 + 500, T0 + 600)
    early = Run("1.s", T0, T0 + 100, {"vm-1": 4})
    late = Run("2.s", T0 + 500, T0 + 600, {"vm-1": 4})
    result = att([first, second], [early, late])
    per_instance = {}
    for s in result.slices:
        if s.run is not None:
            per_instance.setdefault(s.instance_id, set()).add(s.run.job_id)
    assert per_instance == {"i-1": {"1.s"}, "i-2": {"2.s"}}
    assert by_key(result) == {("jobs", "1.s", None): Fraction(1, 10), ("jobs", "2.s", None): Fraction(1, 10)}


def test_a_live_instance_counts_its_current_period_and_a_running_job_to_now():
    run = Run("1.s", T0, None, {"n1": 4})
    result = att([Paid("i-1", "hotel", "n1", T0, None)], [run], now=T0 + 30)
    assert result.total == Fraction(100, 1000)
    costs = by_key(result)
    assert costs[("jobs", "1.s", None)] == Fraction(30, 1000)
    assert costs[("idle", None, "hotel")] == Fraction(70, 1000)


def test_spend_per_day_against_the_budget_and_unpriced_clouds():
    result = att([Paid("i-1", "hotel", "n1", T0, T0 + 50), Paid("i-9", "gone", "x", T0, T0 + 50)], [])
    [day] = days(result, 2.0)
    assert day.cost == Fraction(1, 10) and day.budget == 48
    assert [p.instance_id for p in result.unpriced] == ["i-9"]
    assert days(result, None)[0].budget is None


def test_shown_parts_add_up_to_the_shown_total():
    values = [Fraction(1, 3), Fraction(1, 3), Fraction(1, 3)]
    assert sum(apportion(values, 100)) == 100
    assert apportion([Fraction(1, 200), Fraction(1, 200)], 100) == [1, 0]


def test_exec_host_slots():
    assert slots_by_host("n1/0-3+n2/0,2+n1/5") == {"n1": 5, "n2": 2}


def test_the_state_keeps_what_the_report_needs_after_the_node_is_released(tmp_path):
    store = StateStore(str(tmp_path / "phorque.db"))
    rec = Owned(instance_id="i-1", cloud="hotel", stage=Stage.IDLE, node="vm-1", first_seen=T0,
                launch_time=T0 - 5)
    store.save([rec], T0)
    store.save([replace(rec, stage=Stage.GONE)], T0 + 400)
    store.forget_nodes(["vm-1"])  # Torque no longer lists the node: the name is released
    assert store.get("i-1").node is None
    [row] = store.billing()
    assert row["node"] == "vm-1" and row["launched"] == T0 - 5 and row["ended"] == T0 + 400
    # Saved again as gone later (another reading): the end stays the first one.
    store.save([replace(rec, stage=Stage.GONE, node=None)], T0 + 900)
    assert store.billing()[0]["ended"] == T0 + 400 and store.billing()[0]["node"] == "vm-1"
