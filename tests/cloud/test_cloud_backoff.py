"""Backoff records: exponential, capped, failed after many failures, cleared by a success."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from phorque.adapters.cloud.backoff import (
    FAILED_AFTER,
    MAX_BACKOFF_SECS,
    CloudHealthRecord,
    backoff_secs,
    health_at,
    record_failure,
    record_success,
)
from phorque.core.model import Health


def test_first_failures_back_off_60_then_120_seconds() -> None:
    rec = record_failure(CloudHealthRecord(), 1000.0, "timeout")
    assert (rec.failures, rec.last_failure, rec.backoff_until, rec.last_error) == (1, 1000.0, 1060.0, "timeout")
    assert health_at(rec, 1059.9) == Health.BACKOFF
    assert health_at(rec, 1060.0) == Health.OK
    rec = record_failure(rec, 1060.0, "throttled")
    assert rec.backoff_until == 1180.0


def test_backoff_is_capped_at_30_minutes_and_reports_failed_after_many() -> None:
    rec = CloudHealthRecord()
    now = 0.0
    for _ in range(FAILED_AFTER - 1):
        rec = record_failure(rec, now, "error")
        assert health_at(rec, now) == Health.BACKOFF
        now = rec.backoff_until or now
    rec = record_failure(rec, now, "error")
    assert health_at(rec, now) == Health.FAILED
    # Once the (long) backoff is over, the cloud may be probed again.
    assert health_at(rec, now + MAX_BACKOFF_SECS) == Health.OK
    for _ in range(50):
        rec = record_failure(rec, now, "error")
    assert rec.backoff_until == now + MAX_BACKOFF_SECS


def test_success_clears_the_failures_but_keeps_the_last_error() -> None:
    rec = record_failure(record_failure(CloudHealthRecord(), 0.0, "e1"), 60.0, "e2")
    ok = record_success(rec)
    assert (ok.failures, ok.backoff_until, ok.last_error) == (0, None, "e2")
    assert health_at(ok, 61.0) == Health.OK
    assert record_success(CloudHealthRecord()) == CloudHealthRecord()


def test_a_success_while_the_cloud_rests_does_not_end_the_rest() -> None:
    rec = record_failure(CloudHealthRecord(), 100.0, "spot interruption")
    assert record_success(rec, 130.0) == rec          # an instance joining meanwhile
    assert health_at(record_success(rec, 130.0), 130.0) == Health.BACKOFF
    probe = record_success(rec, 160.0)                # the first success after the rest
    assert (probe.failures, probe.backoff_until) == (0, None)


def test_long_errors_are_truncated() -> None:
    assert len(record_failure(CloudHealthRecord(), 0.0, "x" * 10_000).last_error) == 500


@given(st.integers(min_value=1, max_value=10_000))
def test_backoff_grows_and_stays_within_bounds(failures: int) -> None:
    assert 60.0 <= backoff_secs(failures) <= MAX_BACKOFF_SECS
    assert backoff_secs(failures + 1) >= backoff_secs(failures)
