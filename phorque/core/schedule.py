"""When to evaluate: the one schedule the daemon's loop and the replay both follow.

An evaluation is due when

* the daemon starts (a full reconciliation);
* the periodic reconciliation comes: ``loop_secs`` after the previous one ended;
* the latest plan's wake-up time comes (each plan replaces the previous one; never less than
  ``WAKE_GUARD_SECS`` ahead, so that a plan asking for a past moment does not spin the loop);
* a skipped evaluation (Torque unreadable, the lock busy) is tried again: ``RETRY_FIRST_SECS``
  later, doubling up to ``loop_secs``;
* a trigger fires (a file event, a nudge, a spot interruption). The first after a quiet moment is
  answered at once; those that come while an evaluation runs, or within ``event_delay_secs``
  after an evaluation triggers asked for, are gathered into the next one; and a token bucket
  (:mod:`phorque.core.ratelimit`) bounds a flood. Gathering holds a trigger ``event_delay_secs``
  at most, counted from the end of the evaluation triggers asked for or from the trigger,
  whichever is earlier: one that came while an evaluation ran waits for that evaluation to end,
  and no longer than ``event_delay_secs`` after it came.

The schedule is plain data and arithmetic: the daemon gives it its clocks' readings, the replay
its virtual time. Two clocks, because the intervals (the reconciliation period, gathering, the
rate limit) must not stretch when the wall clock is stepped, while a policy's wake-up is a
wall-clock moment (billing periods are): ``mono`` is a monotonic reading, ``wall`` the wall
clock's. The replay has one clock and gives it as both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from phorque.core.ratelimit import EvaluationBucket

#: The first retry of a skipped evaluation; each further skip doubles it, up to loop_secs.
RETRY_FIRST_SECS = 5.0
#: The rate limit of evaluations that triggers ask for: one per this many seconds in a flood,
#: gathered into one evaluation (and its cloud calls) however fast the flood comes; up to
#: RATE_BURST back to back after a quiet moment, so that a job submitted just after another is
#: not delayed. Two a second: a site whose every job launches an instance and starts on it a
#: moment later asks for more than one a second, and at one the submits waited for the bucket
#: (a reaction's p99 of 1.1 s against 0.4 s).
MIN_EVALUATION_INTERVAL_SECS = 0.5
RATE_BURST = 3
#: A wake-up is at least this far ahead of the evaluation that asked for it.
WAKE_GUARD_SECS = 1.0
#: How soon nodes that still listed an ended job are read again (pbs_server frees a job's slots
#: a moment after it writes the job's end record).
SETTLE_SECS = 2.0


class Look(StrEnum):
    """Why an evaluation is due, when no trigger fired (a trigger names its own reasons)."""

    START = "start"
    SWEEP = "periodic reconciliation"
    RETRY = "retry"
    WAKE = "policy wake-up"
    TRIGGER = "trigger"


class Due(NamedTuple):
    """An evaluation that is due now (a tuple: the replay makes one per evaluation)."""

    look: Look
    #: The periodic reconciliation's time came (the next is counted from this evaluation's end).
    sweep: bool
    #: The policy's wake-up time came.
    wake: bool
    #: The whole queue is read (at start, at each reconciliation, when retrying), not only what
    #: the live view says changed.
    full: bool


def _bucket() -> EvaluationBucket:
    return EvaluationBucket(MIN_EVALUATION_INTERVAL_SECS, RATE_BURST)


@dataclass(slots=True)
class Schedule:
    """What the loop has to remember between evaluations to know when the next is due."""

    loop_secs: float
    event_delay_secs: float
    #: Monotonic time of the next periodic reconciliation.
    next_sweep: float
    #: Wall-clock time the policy (or a retry) asked to look again.
    wake_at: float | None = None
    #: Seconds before retrying a skipped evaluation (0: the last one completed).
    retry_secs: float = 0.0
    #: Monotonic time the last evaluation that triggers asked for ended.
    settled: float = -math.inf
    #: No evaluation has been made yet.
    first: bool = True
    #: False: a plan's wake-up is no look of its own (the replay's ``poll`` mode, the original
    #: loop that only slept between reconciliations); the caller reads ``wake_at`` itself.
    wake_ups: bool = True
    bucket: EvaluationBucket = field(default_factory=_bucket)

    @classmethod
    def starting(cls, mono: float, loop_secs: float, event_delay_secs: float,
                 wake_ups: bool = True) -> Schedule:
        """A loop that starts now: its first evaluation, a full reconciliation, is due at once."""
        return cls(float(loop_secs), float(event_delay_secs), next_sweep=mono, wake_ups=wake_ups)

    # -- what is due ---------------------------------------------------------------------------
    def due(self, mono: float, wall: float, triggered: bool) -> Due | None:
        """The evaluation due now, if any (``triggered``: triggers have fired and been gathered)."""
        sweep = mono >= self.next_sweep
        wake = self.wake_ups and self.wake_at is not None and wall >= self.wake_at
        if not (triggered or sweep or wake):
            return None
        look = (Look.START if self.first else Look.SWEEP if sweep else Look.RETRY if self.retry_secs
                else Look.WAKE if wake else Look.TRIGGER)
        return Due(look, sweep, wake, self.first or sweep or self.retry_secs > 0)

    def timeout(self, mono: float, wall: float) -> float:
        """Seconds until the reconciliation or the wake-up, whichever comes first (at least 0)."""
        left = self.next_sweep - mono
        if self.wake_ups and self.wake_at is not None:
            left = min(left, self.wake_at - wall)
        return max(0.0, left)

    def gather_until(self, mono: float, first: float | None = None) -> float:
        """Triggers that fire before this monotonic moment wait for it: the rate limit, and
        ``event_delay_secs`` after the last evaluation triggers asked for, or after ``first``
        (the first trigger waiting) when that came before the evaluation ended. A ``qsub``
        that comes while an evaluation runs is then answered at most ``event_delay_secs`` after
        it (or when that evaluation ends), not ``event_delay_secs`` after the evaluation."""
        since = self.settled if first is None or first > self.settled else first
        return max(self.bucket.not_before(mono), since + self.event_delay_secs)

    def look_at(self, now: float, first_trigger: float | None, sweeps: bool = True) -> float:
        """On one clock (the replay's): when the loop evaluates next, as the daemon's wait gives
        it. At the reconciliation or the wake-up; or, when a trigger fires before them (at
        ``first_trigger``), at that trigger, or as soon as gathering allows (a wait that has
        taken a trigger gathers until then, whatever else comes due meanwhile). ``sweeps=False``
        leaves the reconciliation out (a simulation that knows it would change nothing)."""
        deadline = self.next_sweep if sweeps else math.inf
        wake = self.wake_at
        if wake is not None and wake < deadline and self.wake_ups:
            deadline = wake
        if deadline < now:
            deadline = now
        if first_trigger is not None and first_trigger <= deadline:
            until = self.gather_until(first_trigger, first_trigger)
            return until if until > first_trigger else first_trigger
        return deadline

    def sweep_at_or_after(self, t: float) -> float:
        """The first reconciliation at or after ``t``, had every one before it been made at
        its time (each ending at once)."""
        if self.next_sweep >= t:
            return self.next_sweep
        return self.next_sweep + math.ceil((t - self.next_sweep) / self.loop_secs - 1e-9) * self.loop_secs

    def skip_sweeps_until(self, t: float) -> None:
        """Reconciliations due before ``t`` were left out, each as if made at its time and
        changing nothing (a simulation does not spend them on a world where nothing changed)."""
        self.next_sweep = self.sweep_at_or_after(t)

    # -- what an evaluation changes ------------------------------------------------------------
    def found_unchanged(self, mono: float, wall: float, triggered: bool, unsettled: bool) -> None:
        """An evaluation that only triggers asked for ended at once: nothing had changed. It
        spends no token and keeps the wake-up (brought forward when nodes must settle)."""
        if triggered:
            self.settled = mono
        self.wake_at = self._settling(self.wake_at, unsettled, wall)

    def evaluated(self, mono: float, wall: float, due: Due, triggered: bool, completed: bool,
                  wake_at: float | None = None, unsettled: bool = False) -> None:
        """An evaluation ended at ``mono``/``wall``: ``completed`` with the plan's ``wake_at``,
        or skipped (it is tried again soon, backing off to ``loop_secs``: the work that asked
        for it must not wait for the next reconciliation, and a long outage must not make a
        busy loop)."""
        if triggered:
            # Only what triggers ask for is rate-limited: a reconciliation or a policy's
            # wake-up (to join a booting instance) ends no quiet moment, and the next submit is
            # answered at once.
            self.settled = mono
            self.bucket.take(mono)
        self.first = False
        if due.sweep:
            self.next_sweep = mono + self.loop_secs
        if completed:
            self.retry_secs = 0.0
            wake = self._settling(wake_at, unsettled, wall)
        else:
            self.retry_secs = min(max(2 * self.retry_secs, RETRY_FIRST_SECS), self.loop_secs)
            wake = wall + self.retry_secs
        guard = wall + WAKE_GUARD_SECS
        self.wake_at = None if wake is None else wake if wake > guard else guard

    @staticmethod
    def _settling(wake_at: float | None, unsettled: bool, wall: float) -> float | None:
        """The wake-up, brought forward to SETTLE_SECS from now when nodes still listed an
        ended job (a real pbs_server frees the slots a moment after writing the E record)."""
        if not unsettled:
            return wake_at
        return min(wake_at if wake_at is not None else math.inf, wall + SETTLE_SECS)
