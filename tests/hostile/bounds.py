"""Running one parser call under a clock and a memory meter."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Peak Python memory per example: a fixed allowance plus a modest multiple of the input.
BASE_BYTES = 16 << 20
PER_INPUT_BYTE = 64


@dataclass
class Outcome:
    value: Any
    error: BaseException | None
    seconds: float
    peak: int


def measured(call: Callable[[], Any], expected: tuple[type[BaseException], ...]) -> Outcome:
    """Run ``call``; an exception of the ``expected`` types is returned, any other raised."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        value, error = call(), None
    except expected as exc:
        value, error = None, exc
    finally:
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return Outcome(value, error, seconds, peak)


def assert_bounded(outcome: Outcome, size: int, what: str) -> None:
    """Memory of one example stays within the bounds above. Its time is a figure of
    `bench fuzz` (slowest example; the linear target): a time bound here fails on a busy
    machine, not on a slow parser."""
    limit = BASE_BYTES + PER_INPUT_BYTE * size
    assert outcome.peak < limit, f"{what}: peak {outcome.peak} bytes for {size} bytes of input"
