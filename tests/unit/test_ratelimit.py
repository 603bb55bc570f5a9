"""The evaluation bucket: no delay after a quiet moment, one per interval in a flood."""

from __future__ import annotations

import pytest

from phorque.core.ratelimit import EvaluationBucket


def test_a_quiet_bucket_lets_a_burst_through_at_once():
    bucket = EvaluationBucket(interval=1.0, burst=3)
    for now in (10.0, 10.1, 10.2):
        assert bucket.not_before(now) == now
        bucket.take(now)
    # The fourth in a row waits until one evaluation's worth has refilled.
    assert bucket.not_before(10.3) == pytest.approx(10.3 + 0.7)


def test_a_flood_gets_one_evaluation_per_interval():
    bucket = EvaluationBucket(interval=1.0, burst=3)
    now, evaluations = 0.0, 0
    while now < 60.0:  # an evaluation as soon as the bucket allows, for a minute
        now = bucket.not_before(now)
        bucket.take(now)
        evaluations += 1
        now += 0.01
    assert evaluations <= 3 + 60  # the burst, then one per second
    assert evaluations >= 60


def test_the_bucket_refills_to_its_burst_and_no_further():
    bucket = EvaluationBucket(interval=2.0, burst=2)
    bucket.take(0.0)
    bucket.take(0.0)
    assert bucket.not_before(1.0) == pytest.approx(2.0)
    assert bucket.not_before(100.0) == 100.0
    bucket.take(100.0)
    bucket.take(100.0)
    assert bucket.not_before(100.0) == pytest.approx(102.0)


def test_a_bad_bucket_is_refused():
    with pytest.raises(ValueError):
        EvaluationBucket(interval=0.0)
    with pytest.raises(ValueError):
        EvaluationBucket(burst=0)
