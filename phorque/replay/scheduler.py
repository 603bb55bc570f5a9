"""Torque-like batch scheduling of the simulated queue.

Three disciplines, all over the queue in submit order:

* ``fifo`` (pbs_sched's default, ``strict_fifo false``): start every job that fits on the free
  cores of usable nodes, skipping those that do not;
* ``strict``: start jobs in order until the first that does not fit; it holds the rest;
* ``easy``: EASY backfilling, as Maui and Moab do it. Jobs start in order until one does not fit;
  that job gets a reservation at the earliest time enough cores are free, judged from the running
  jobs' requested walltimes (the *shadow time*). A later job may start now if it fits and either
  ends (by its walltime) before the shadow time, or only uses cores the reserved job will not
  need then. The reservation counts cores only (not their layout on nodes, their memory or GPUs).

A job fits when every part finds nodes with the free cores, memory and GPUs and the properties
it asks for (:mod:`phorque.replay.cluster`).

A job that could not run on the cluster as it is now even if every node were free (it waits for
cloud nodes) never holds the queue in ``strict`` or ``easy``: the jobs behind it are considered.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort

from phorque.core.model import Chunk, JobId
from phorque.replay.cluster import Cluster, Share, asks_of, plain_chunks

DISCIPLINES = ("fifo", "strict", "easy")


class SimJob:
    """A job of one replay: the trace's numbers, and what happens to it here."""

    __slots__ = ("id", "submit", "cores", "chunks", "walltime", "run", "killed", "queue",
                 "start", "end", "alloc", "seq", "reserve_end", "asks", "plain", "rerunnable",
                 "end_at", "wait_slot", "bsld")

    def __init__(self, job_id: JobId, submit: float, cores: int, chunks: tuple[Chunk, ...],
                 walltime: int | None, run: float, queue: str, seq: int, rerunnable: bool = True):
        self.id = job_id
        self.submit = submit
        self.cores = cores
        self.chunks = chunks
        # Worked out once: the scheduler tries a queued job at every cycle.
        self.asks = asks_of(chunks)
        self.plain = plain_chunks(cores, chunks)
        self.walltime = walltime
        # Torque kills a job at its walltime.
        self.killed = walltime is not None and run > walltime
        self.run = float(walltime) if self.killed and walltime is not None else run
        self.queue = queue
        self.start: float | None = None
        self.end: float | None = None
        self.alloc: list[Share] = []
        self.seq = seq
        self.reserve_end = math.inf
        self.rerunnable = rerunnable
        #: When its END event is due (None while it does not run): an END of an earlier run, cut
        #: short by a spot interruption, is recognised and ignored by it.
        self.end_at: float | None = None
        #: Where its wait is in the tally, and the slowdown counted for it, once it started: a
        #: requeued job that starts again replaces them.
        self.wait_slot: int | None = None
        self.bsld = 0.0


class Scheduler:
    """The queue of runnable jobs and one scheduling discipline."""

    def __init__(self, cluster: Cluster, discipline: str = "fifo"):
        if discipline not in DISCIPLINES:
            raise ValueError(f"scheduler {discipline!r}: expected one of {', '.join(DISCIPLINES)}")
        self.cluster = cluster
        self.discipline = discipline
        self.queue: dict[str, SimJob] = {}
        self._sizes: dict[int, int] = {}
        self._min = math.inf
        # Running jobs by the end their walltime promises: (end, seq, cores), for EASY.
        self._ends: list[tuple[float, int, int]] = []

    # -- the queue -------------------------------------------------------------------------------
    def add(self, job: SimJob) -> None:
        self.queue[job.id] = job
        self._sizes[job.cores] = self._sizes.get(job.cores, 0) + 1
        if job.cores < self._min:
            self._min = job.cores

    def requeue(self, job: SimJob) -> None:
        """A job put back in the queue (``qrerun``): in its place by submit order."""
        self.add(job)
        jobs = list(self.queue.values())
        if len(jobs) > 1 and jobs[-2].seq > job.seq:
            jobs.sort(key=lambda j: j.seq)
            self.queue = {j.id: j for j in jobs}

    def _dequeue(self, job: SimJob) -> None:
        del self.queue[job.id]
        left = self._sizes[job.cores] - 1
        if left:
            self._sizes[job.cores] = left
        else:
            del self._sizes[job.cores]
            if job.cores == self._min:
                self._min = min(self._sizes, default=math.inf)

    def started(self, job: SimJob, now: float) -> None:
        if self.discipline == "easy":
            job.reserve_end = now + job.walltime if job.walltime is not None else math.inf
            insort(self._ends, (job.reserve_end, job.seq, job.cores))

    def ended(self, job: SimJob) -> None:
        if self.discipline == "easy":
            key = (job.reserve_end, job.seq, job.cores)
            at = bisect_left(self._ends, key)
            if at < len(self._ends) and self._ends[at] == key:
                del self._ends[at]

    # -- a scheduling cycle ------------------------------------------------------------------------
    def cycle(self, now: float) -> list[SimJob]:
        """Start what the discipline allows now; returns the started jobs (cores taken)."""
        cluster = self.cluster
        if not self.queue or cluster.free_total < self._min:
            return []
        if self.discipline == "fifo":
            out = self._fifo(cluster)
        else:
            out = self._ordered(cluster, now)
        for job in out:
            self._dequeue(job)
        return out

    def _start(self, cluster: Cluster, job: SimJob) -> bool:
        alloc = cluster.place(job.cores, job.chunks, job.asks, job.plain)
        if alloc is None:
            return False
        cluster.take(job.id, alloc)
        job.alloc = alloc
        return True

    def _fifo(self, cluster: Cluster) -> list[SimJob]:
        out = []
        smallest = self._min
        for job in self.queue.values():
            free = cluster.free_total
            if free < smallest:
                break
            if job.cores <= free and self._start(cluster, job):
                out.append(job)
        return out

    def _ordered(self, cluster: Cluster, now: float) -> list[SimJob]:
        out: list[SimJob] = []
        jobs = iter(self.queue.values())
        head = None
        for job in jobs:
            if self._start(cluster, job):
                out.append(job)
            elif cluster.fits_when_empty(job.cores, job.chunks, job.asks):
                head = job
                break
        if head is None or self.discipline == "strict":
            return out
        shadow, extra = self._reservation(cluster, head, now, out)
        smallest = self._min
        for job in jobs:
            free = cluster.free_total
            if free < smallest:
                break
            if job.cores > free:
                continue
            ends_before = job.walltime is not None and now + job.walltime <= shadow
            if not ends_before and job.cores > extra:
                continue
            if self._start(cluster, job):
                out.append(job)
                if not ends_before:
                    extra -= job.cores
        return out

    def _reservation(self, cluster: Cluster, head: SimJob, now: float,
                     just_started: list[SimJob]) -> tuple[float, float]:
        """The head job's shadow time, and the cores it leaves spare then."""
        free = cluster.free_total
        if free >= head.cores:
            return now, free - head.cores  # it fits by cores but not by layout: no promise
        ends = self._ends
        if just_started:  # jobs of this cycle are not in _ends yet
            ends = sorted(ends + [(now + j.walltime if j.walltime is not None else math.inf,
                                   j.seq, j.cores) for j in just_started])
        for end, _seq, cores in ends:
            free += cores
            if free >= head.cores:
                return end, free - head.cores
        return math.inf, math.inf
