"""Coalescing triggers: many "something changed" signals become one evaluation.

Any thread may :meth:`Trigger.fire`; the daemon's loop :meth:`Trigger.wait`\\ s. Signals that
arrive while an evaluation runs, or within ``gather`` seconds of the first one, are merged: a burst
of a thousand ``qsub`` costs a handful of evaluations. Each evaluation logs the reasons it
answers.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Fired:
    """What woke the loop: counted reasons, and the nudges waiting for an answer."""

    reasons: Counter[str] = field(default_factory=Counter)
    waiters: list[tuple[str, tuple[str, int]]] = field(default_factory=list)
    first_at: float | None = None

    def __bool__(self) -> bool:
        return bool(self.reasons)

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def describe(self, limit: int = 4) -> str:
        parts = [f"{reason} x{n}" if n > 1 else reason for reason, n in self.reasons.most_common(limit)]
        more = len(self.reasons) - limit
        text = ", ".join(parts) + (f" and {more} more" if more > 0 else "")
        return f"{self.total} triggers: {text}" if self.total > 1 else text


class Trigger:
    """A size-one mailbox of reasons: firing never blocks, waiting takes everything."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self._pending = Fired()

    def fire(self, reason: str, waiter: tuple[str, tuple[str, int]] | None = None) -> None:
        with self._cond:
            if not self._pending:
                self._pending.first_at = self._clock()
            self._pending.reasons[reason] += 1
            if waiter is not None:
                self._pending.waiters.append(waiter)
            self._cond.notify_all()

    def pending_since(self) -> float | None:
        """When the first signal not yet taken fired (the clock's time), or None."""
        with self._cond:
            return self._pending.first_at if self._pending else None

    def wait(self, timeout: float | None, gather: float = 0.0, not_before: float = 0.0) -> Fired:
        """Block until fired or ``timeout``; then gather for ``gather`` seconds after the first
        signal, and at least until ``not_before`` (the clock's time: a rate limit). A ``stop``
        ends the gathering at once. Returns what fired (empty on timeout)."""
        deadline = None if timeout is None else self._clock() + max(0.0, timeout)
        with self._cond:
            while not self._pending:
                left = None if deadline is None else deadline - self._clock()
                if left is not None and left <= 0:
                    return Fired()
                self._cond.wait(left)
            first = self._pending.first_at or self._clock()
            while "stop" not in self._pending.reasons:
                left = max(first + gather, not_before) - self._clock()
                if left <= 0:
                    break
                self._cond.wait(left)
            fired, self._pending = self._pending, Fired()
            return fired
