"""The clocks the daemon runs on, as one value that tests can replace."""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """``time``: the wall clock (what Torque, the clouds and the state record; billing periods
    and policy wake-ups are in it). ``monotonic``: for intervals (the reconciliation period, the
    rate limit, gathering triggers), which a change of the wall clock must not stretch."""

    time: Callable[[], float] = _time.time
    monotonic: Callable[[], float] = _time.monotonic


SYSTEM = Clock()
