"""Per-cloud backoff after failures: pure record logic, time passed in, no I/O.

A cloud that fails (API errors, timeouts, throttling, or instances the engine judges never
started) is backed off for 60 s, then 120 s, 240 s, ... up to 30 minutes; while backed off the
policy uses the next cloud by price. After :data:`FAILED_AFTER` consecutive failures the cloud
is reported as ``failed`` instead of ``backoff``. When the backoff ends the cloud is usable again
for one probe: a success clears the record, another failure doubles the wait. Failures while the
cloud rests (a read that times out at every evaluation, several instances of one launch given up
together) are one failure, not many: only the last error is kept, and the wait is not extended,
so a short outage cannot push a cloud into a half-hour backoff.

The state store persists :class:`CloudHealthRecord` values; this module only computes them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from phorque.core.model import CloudState, Health

BASE_BACKOFF_SECS = 60.0
MAX_BACKOFF_SECS = 1800.0
FAILED_AFTER = 6
_ERROR_LIMIT = 500


@dataclass(frozen=True)
class CloudHealthRecord:
    """What is remembered about a cloud's recent failures."""

    failures: int = 0
    last_failure: float | None = None
    backoff_until: float | None = None
    last_error: str = ""


def backoff_secs(failures: int) -> float:
    """How long a cloud rests after its ``failures``-th consecutive failure."""
    if failures <= 0:
        return 0.0
    # Capped before exponentiation so a long outage cannot overflow the float.
    return min(MAX_BACKOFF_SECS, BASE_BACKOFF_SECS * 2.0 ** min(failures - 1, 32))


def record_failure(rec: CloudHealthRecord, now: float, error: str) -> CloudHealthRecord:
    """The record after one more failure at ``now`` (the same wait while still backed off)."""
    if rec.backoff_until is not None and now < rec.backoff_until:
        return replace(rec, last_failure=now, last_error=error[:_ERROR_LIMIT])
    failures = rec.failures + 1
    return CloudHealthRecord(failures=failures, last_failure=now,
                             backoff_until=now + backoff_secs(failures),
                             last_error=error[:_ERROR_LIMIT])


def record_success(rec: CloudHealthRecord, now: float | None = None) -> CloudHealthRecord:
    """The record after a success: failures forgotten, the last error kept for display. A
    success while the cloud still rests (an instance launched before the failure joining, a spot
    replacement coming up) does not end the rest early: only one after it (the probe) does."""
    if rec.failures == 0 and rec.backoff_until is None:
        return rec
    if now is not None and rec.backoff_until is not None and now < rec.backoff_until:
        return rec
    return replace(rec, failures=0, backoff_until=None)


def health_at(rec: CloudHealthRecord, now: float) -> Health:
    """OK, BACKOFF (until ``backoff_until``) or FAILED (backed off after many failures)."""
    if rec.backoff_until is None or now >= rec.backoff_until:
        return Health.OK
    return Health.FAILED if rec.failures >= FAILED_AFTER else Health.BACKOFF


def with_health(cloud: CloudState, rec: CloudHealthRecord, now: float) -> CloudState:
    """The cloud as its health record shows it at ``now``: its health, the end of its back-off,
    and its last error while failures count (as the engine reads a cloud, and the replay)."""
    return replace(cloud, health=health_at(rec, now), backoff_until=rec.backoff_until,
                   error=rec.last_error if rec.failures else "")
