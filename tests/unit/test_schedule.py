"""The schedule the daemon's loop and the replay share: when each kind of evaluation is due."""

from __future__ import annotations

import pytest

from phorque.core.schedule import (
    MIN_EVALUATION_INTERVAL_SECS,
    RATE_BURST,
    RETRY_FIRST_SECS,
    SETTLE_SECS,
    WAKE_GUARD_SECS,
    Due,
    Look,
    Schedule,
)

LOOP, DELAY = 60.0, 0.2


def due_now(s: Schedule, mono: float, wall: float, triggered: bool = False) -> Due:
    """The evaluation due now, which the test expects there to be."""
    due = s.due(mono, wall, triggered)
    assert due is not None
    return due


def started(at: float = 1000.0) -> Schedule:
    """A schedule whose start evaluation, at ``at``, is done (no wake-up asked for)."""
    s = Schedule.starting(at, LOOP, DELAY)
    due = due_now(s, at, at, False)
    s.evaluated(at, at, due, triggered=False, completed=True)
    return s


def test_the_first_evaluation_is_due_at_once_and_reads_everything():
    s = Schedule.starting(1000.0, LOOP, DELAY)
    due = s.due(1000.0, 1000.0, triggered=False)
    assert due is not None and due.look == Look.START and due.full and due.sweep
    s.evaluated(1000.5, 1000.5, due, triggered=False, completed=True)
    # The next reconciliation counts from the end of this one.
    assert s.next_sweep == 1060.5
    assert s.due(1060.4, 1060.4, triggered=False) is None
    due = s.due(1060.5, 1060.5, triggered=False)
    assert due is not None and due.look == Look.SWEEP and due.full


@pytest.mark.parametrize(("wake", "expected"), [
    (1030.0, 1030.0),                     # ahead: kept
    (1000.0, 1000.0 + WAKE_GUARD_SECS),   # at the evaluation: never spin on a past moment
    (900.0, 1000.0 + WAKE_GUARD_SECS),
    (None, None),
])
def test_a_plans_wake_up_replaces_the_previous_one_and_is_never_in_the_past(wake, expected):
    s = started()
    s.wake_at = 1010.0  # the previous plan's
    due = s.due(1000.0, 1000.0, triggered=True)
    assert due is not None and due.look == Look.TRIGGER and not due.full
    s.evaluated(1000.0, 1000.0, due, triggered=True, completed=True, wake_at=wake)
    assert s.wake_at == expected
    if expected is not None:
        due = s.due(expected, expected, triggered=False)
        assert due is not None and due.look == Look.WAKE and due.wake and not due.full


def test_the_first_trigger_after_a_quiet_moment_is_answered_at_once():
    s = started()
    assert s.look_at(1005.0, first_trigger=1005.0) == 1005.0


def test_triggers_just_after_a_triggered_evaluation_are_gathered():
    s = started()
    due = due_now(s, 1005.0, 1005.0, True)
    s.evaluated(1005.0, 1005.0, due, triggered=True, completed=True)
    assert s.look_at(1005.05, first_trigger=1005.05) == pytest.approx(1005.0 + DELAY)
    assert s.look_at(1005.3, first_trigger=1005.3) == 1005.3  # after the window: at once


def test_a_reconciliation_or_a_wake_up_ends_no_quiet_moment():
    s = started()
    for at in (1060.0, 1061.0):
        s.wake_at = 1061.0
        due = s.due(at, at, triggered=False)
        assert due is not None and due.look in (Look.SWEEP, Look.WAKE)
        s.evaluated(at, at, due, triggered=False, completed=True)
        assert s.look_at(at + 0.01, first_trigger=at + 0.01) == at + 0.01


def test_a_flood_of_triggers_is_rate_limited_after_a_burst():
    s = Schedule.starting(0.0, LOOP, 0.0)  # no gathering window: only the bucket holds a flood
    s.evaluated(0.0, 0.0, due_now(s, 0.0, 0.0), triggered=False, completed=True)
    at, looks = 1.0, []
    while at < 11.0:  # a trigger every 10 ms for ten seconds, each evaluation at once
        look = s.look_at(at, first_trigger=at)
        due = due_now(s, look, look, True)
        s.evaluated(look, look, due, triggered=True, completed=True)
        looks.append(look)
        at = look + 0.01
    assert looks[:RATE_BURST] == pytest.approx([1.0, 1.01, 1.02])  # the burst: back to back
    gaps = [b - a for a, b in zip(looks[RATE_BURST:], looks[RATE_BURST + 1:], strict=False)]
    assert min(gaps) == pytest.approx(MIN_EVALUATION_INTERVAL_SECS)
    assert len(looks) <= RATE_BURST + 10 / MIN_EVALUATION_INTERVAL_SECS + 1


def test_a_trigger_before_a_deadline_is_gathered_past_it_and_one_after_it_waits():
    s = started()
    due = due_now(s, 1059.9, 1059.9, True)
    s.evaluated(1059.9, 1059.9, due, triggered=True, completed=True)
    # The reconciliation is due at 1060; a trigger at 1059.95 holds the wait until 1060.1,
    # and that one evaluation answers both.
    assert s.look_at(1059.95, first_trigger=1059.95) == pytest.approx(1060.1)
    due = s.due(1060.1, 1060.1, triggered=True)
    assert due is not None and due.sweep and due.look == Look.SWEEP
    # A trigger after the deadline does not delay the reconciliation.
    s = started()
    assert s.look_at(1059.0, first_trigger=1061.0) == 1060.0
    assert s.look_at(1059.0, first_trigger=None) == 1060.0
    assert s.look_at(1059.0, first_trigger=None, sweeps=False) == float("inf")


def test_a_skipped_evaluation_is_retried_sooner_and_sooner_less_often():
    s = started()
    at, retries = 1001.0, []
    for _ in range(6):
        due = due_now(s, at, at, at == 1001.0)
        s.evaluated(at, at, due, triggered=False, completed=False)
        retries.append(s.retry_secs)
        assert s.wake_at == at + s.retry_secs
        at = s.wake_at
        due = s.due(at, at, triggered=False)
        assert due is not None and due.full
        assert due.look in (Look.RETRY, Look.SWEEP)
    assert retries == [RETRY_FIRST_SECS, 10.0, 20.0, 40.0, LOOP, LOOP]
    s.evaluated(at, at, due_now(s, at, at), triggered=False, completed=True)
    assert s.retry_secs == 0.0 and s.wake_at is None


def test_nodes_that_must_settle_bring_the_wake_up_forward():
    s = started()
    due = due_now(s, 1000.0, 1000.0, True)
    s.evaluated(1000.0, 1000.0, due, triggered=True, completed=True, wake_at=1500.0, unsettled=True)
    assert s.wake_at == 1000.0 + SETTLE_SECS


def test_an_evaluation_that_found_nothing_changed_keeps_the_wake_up_and_spends_no_token():
    s = started()
    s.wake_at = 1500.0
    tokens = s.bucket.tokens
    s.found_unchanged(1000.0, 1000.0, triggered=True, unsettled=False)
    assert s.wake_at == 1500.0 and s.bucket.tokens == tokens
    assert s.settled == 1000.0  # triggers that follow are gathered, as after any answer
    s.found_unchanged(1001.0, 1001.0, triggered=True, unsettled=True)
    assert s.wake_at == 1001.0 + SETTLE_SECS


def test_skipping_reconciliations_in_one_step_equals_making_them_one_by_one():
    one_by_one, at_once = started(), started()
    at = 1000.0
    while at < 5000.0:  # every reconciliation made at its time
        at = one_by_one.next_sweep
        due = one_by_one.due(at, at, triggered=False)
        assert due is not None and due.sweep
        one_by_one.evaluated(at, at, due, triggered=False, completed=True)
    assert at_once.sweep_at_or_after(4990.0) == 5020.0
    assert at_once.sweep_at_or_after(5020.0) == 5020.0
    at_once.skip_sweeps_until(at + 0.5)
    assert at_once.next_sweep == one_by_one.next_sweep
    at_once.skip_sweeps_until(10.0)  # never backwards
    assert at_once.next_sweep == one_by_one.next_sweep


def test_without_wake_ups_a_plans_wake_up_is_no_look_of_its_own():
    s = Schedule.starting(0.0, LOOP, DELAY, wake_ups=False)
    s.evaluated(0.0, 0.0, due_now(s, 0.0, 0.0), triggered=False, completed=True,
                wake_at=30.0)
    assert s.wake_at == 30.0
    assert s.due(30.0, 30.0, triggered=False) is None
    assert s.look_at(0.0, None) == LOOP
    assert s.timeout(0.0, 0.0) == LOOP


def test_the_wake_up_counts_on_the_wall_clock_and_the_reconciliation_on_the_monotonic_one():
    s = Schedule.starting(50.0, LOOP, DELAY)          # monotonic 50 = wall 1000
    s.evaluated(50.0, 1000.0, due_now(s, 50.0, 1000.0), triggered=False,
                completed=True, wake_at=1030.0)
    assert s.timeout(60.0, 1010.0) == 20.0            # the wake-up, on the wall clock
    assert s.timeout(60.0, 900.0) == 50.0             # wall clock stepped back: the sweep comes first
    assert due_now(s, 70.0, 1030.0).wake
