"""The replay's spot market: when the cloud takes a spot instance back, and which jobs of a trace
are rerunnable.

Both are drawn from the replay's seed and a name (an instance id, a job number), not from one
stream of random numbers: the same instance of the same cloud meets the same fate under every
policy and in every run with that seed, whatever else the policy launches, and a job is
rerunnable or not whatever the window around it.
"""

from __future__ import annotations

import hashlib
import math

#: The state reason a replayed interruption carries (EC2's words, with the replay's own).
INTERRUPTION = "Server.SpotInstanceTermination: replay"

_SCALE = float(1 << 64)


def uniform(seed: int, kind: str, name: str) -> float:
    """A number in (0, 1), the same for the same seed, kind and name."""
    digest = hashlib.blake2b(f"{seed}\0{kind}\0{name}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


def interruption_delay(seed: int, instance_id: str, per_hour: float) -> float:
    """Seconds an instance runs before the cloud takes it back: exponential, ``per_hour``
    interruptions per instance-hour (``inf`` when the rate is 0)."""
    if per_hour <= 0:
        return math.inf
    return -math.log(uniform(seed, "interruption", instance_id)) * 3600.0 / per_hour


def rerunnable(seed: int, job_id: str, fraction: float) -> bool:
    """Is this job of the trace rerunnable? ``fraction`` of the jobs are, by job number."""
    if fraction >= 1:
        return True
    if fraction <= 0:
        return False
    return uniform(seed, "rerunnable", job_id) < fraction
