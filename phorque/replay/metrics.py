"""The figures of one replay.

* wait: start - submit, over the jobs that started. A job still queued when the replay ends (this
  policy never gave it room; the replay runs until every job that can start has ended) is left out
  of the waits and counted in ``unstarted``; jobs larger than the whole possible cluster are
  counted in ``never_run``.
* p95 wait: the nearest-rank 95th percentile.
* bounded slowdown: mean over started jobs of ``max(1, (wait + run) / max(run, 10))``.
* cost: every instance's paid time (started charge periods in full) x its cloud's price per hour;
  instance-hours billed are the paid seconds / 3600.
* paid utilization: core-seconds of jobs on cloud nodes / (paid instance-seconds x instance cores).
* local utilization: core-seconds of jobs on static nodes / (static cores x replay span).
* spot (with a spot cloud): instances the cloud took back; jobs requeued from their nodes (a job
  requeued twice counts twice) and jobs lost (not rerunnable); lost core-hours: cores x the time
  each interrupted job had run, summed. A requeued job's wait runs from its submit to its last
  start, and its slowdown is counted once, from that wait.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phorque.replay.scheduler import SimJob

BSLD_TAU = 10.0


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


class Tally:
    """Running sums the simulator feeds as jobs start and end and instances come and go."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.bsld_sum = 0.0
        self.killed = 0
        self.cloud_core_secs = 0.0
        self.local_core_secs = 0.0
        self.peak_instances = 0
        self.peak_rate = 0.0
        self.interruptions = 0
        self.requeued = 0
        self.lost_jobs = 0
        self.lost_core_secs = 0.0
        # Curves: the time-weighted mean queue length and instance count over bins of at
        # least ``_step`` seconds, each point at the start of its bin.
        self.times: list[float] = []
        self.queued: list[float] = []
        self.live: list[float] = []
        self._step = 3600.0
        self._bin = self._last = 0.0
        self._cur_queued = self._cur_live = 0
        self._area_queued = self._area_live = 0.0

    def curves(self, start: float, step: float) -> None:
        self._step = step
        self._bin = self._last = start

    def started(self, job: SimJob) -> None:
        assert job.start is not None  # set by the scheduler before it reports the start
        wait = job.start - job.submit
        bsld = max(1.0, (wait + job.run) / max(job.run, BSLD_TAU))
        if job.wait_slot is None:
            job.wait_slot = len(self.waits)
            self.waits.append(wait)
            if job.killed:
                self.killed += 1
        else:  # started again after a requeue: its wait is now longer
            self.waits[job.wait_slot] = wait
            self.bsld_sum -= job.bsld
        job.bsld = bsld
        self.bsld_sum += bsld

    def ended(self, job: SimJob, until: float | None = None) -> None:
        end = job.end if until is None else until
        assert job.start is not None and end is not None  # a job ends after it started
        run = end - job.start
        for node, cores, _mem, _gpus in job.alloc:
            if node.cloud:
                self.cloud_core_secs += cores * run
            else:
                self.local_core_secs += cores * run

    def instances(self, live: int, rate: float) -> None:
        if live > self.peak_instances:
            self.peak_instances = live
        if rate > self.peak_rate:
            self.peak_rate = rate

    def advance(self, at: float, queued: int, live: int, last: bool = False) -> None:
        """The queue and instances from ``at`` on (after the events of that instant)."""
        held = at - self._last
        self._area_queued += self._cur_queued * held
        self._area_live += self._cur_live * held
        self._last = at
        self._cur_queued, self._cur_live = queued, live
        span = at - self._bin
        if span >= self._step or (last and span > 0):
            self.times.append(self._bin)
            self.queued.append(self._area_queued / span)
            self.live.append(self._area_live / span)
            self._bin = at
            self._area_queued = self._area_live = 0.0
        if last:  # the closing point: what is left at the end
            self.times.append(at)
            self.queued.append(queued)
            self.live.append(live)


@dataclass
class ReplayResult:
    """What one policy did with one trace."""

    policy: str
    trace: str
    jobs: int
    started: int
    unstarted: int
    never_run: int
    killed_at_walltime: int
    mean_wait_secs: float
    p95_wait_secs: float
    max_wait_secs: float
    mean_bounded_slowdown: float
    cost: float
    instance_hours: float
    paid_utilization: float
    peak_instances: int
    peak_rate: float
    launched: int
    local_utilization: float
    evaluations: int
    events: int
    start: float
    end: float
    truncated: bool
    sim_secs: float
    cpu_secs: float
    clouds: dict[str, dict[str, float]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    series: tuple[Sequence[float], Sequence[float], Sequence[float]] = ((), (), ())
    #: A spot cloud was replayed: the figures below are reported.
    spot: bool = False
    interruptions: int = 0
    requeued: int = 0
    lost_jobs: int = 0
    lost_core_hours: float = 0.0

    def as_dict(self, timing: bool = False) -> dict[str, Any]:
        """The JSON form (without the simulator's own run time unless ``timing``, so the same
        input always gives the same JSON)."""
        out: dict[str, Any] = {
            "policy": self.policy,
            "mean_wait_secs": round(self.mean_wait_secs, 3),
            "p95_wait_secs": round(self.p95_wait_secs, 3),
            "mean_bounded_slowdown": round(self.mean_bounded_slowdown, 4),
            "cost": round(self.cost, 4),
            "instance_hours": round(self.instance_hours, 4),
            "paid_utilization": round(self.paid_utilization, 4),
            "peak_instances": self.peak_instances,
            "jobs": self.jobs,
            "started": self.started,
            "unstarted": self.unstarted,
            "never_run": self.never_run,
            "killed_at_walltime": self.killed_at_walltime,
            "max_wait_secs": round(self.max_wait_secs, 3),
            "peak_rate": round(self.peak_rate, 4),
            "launched": self.launched,
            "local_utilization": round(self.local_utilization, 4),
            "evaluations": self.evaluations,
            "events": self.events,
            "span_secs": round(self.end - self.start, 3),
            "truncated": self.truncated,
            "clouds": self.clouds,
            "actions": self.actions,
        }
        if self.spot:
            out["interruptions"] = self.interruptions
            out["requeued"] = self.requeued
            out["lost_jobs"] = self.lost_jobs
            out["lost_core_hours"] = round(self.lost_core_hours, 4)
        if self.counters:
            out["notes"] = self.counters
        if timing:
            out["sim_secs"] = round(self.sim_secs, 3)
            out["cpu_secs"] = round(self.cpu_secs, 3)
        return out
