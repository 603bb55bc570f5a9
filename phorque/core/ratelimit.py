"""The rate limit of evaluations that file events and nudges ask for: a token bucket.

A flood of `qsub`s or datagrams must cost a bounded number of evaluations (and cloud calls) per
second, however fast it comes; a job submitted after a quiet moment, or a second one a moment
after the first, must not wait for it. A bucket of `burst` evaluations that refills at one per
`interval` seconds gives both: at most `burst + t / interval` evaluations in any `t` seconds,
and no delay while the bucket holds one.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class EvaluationBucket:
    interval: float = 1.0
    burst: int = 3
    tokens: float = field(init=False)
    updated: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.burst < 1:
            raise ValueError("an evaluation bucket needs interval > 0 and burst >= 1")
        self.tokens = float(self.burst)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) / self.interval)
            self.updated = now

    def take(self, now: float) -> None:
        """One evaluation ran at `now` (a periodic one too: it spends the same Torque and cloud
        calls)."""
        self._refill(now)
        self.tokens = max(0.0, self.tokens - 1.0)

    def not_before(self, now: float) -> float:
        """The earliest moment at or after ``now`` a triggered evaluation may start. It changes
        nothing: asked at any moment, it names the same one."""
        tokens = min(float(self.burst), self.tokens + max(0.0, now - self.updated) / self.interval)
        if tokens >= 1.0:
            return now
        return now + (1.0 - tokens) * self.interval
