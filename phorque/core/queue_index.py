"""The jobs of a snapshot sorted the way the policies read them, as the daemon's live view keeps
them between evaluations.

A policy reads the queued jobs in the order Torque's FIFO would consider them, the running jobs,
and the jobs pbs_server refuses to start. Deriving them from a snapshot's jobs takes a pass over
every job and a sort: a fifth of a second with 100,000 queued jobs, at every evaluation. The
live view (``phorque.act.clusterview``) keeps them sorted as jobs come and go, and hands each
snapshot a :class:`phorque.core.model.QueueIndex`: the same values, taken, not derived. A snapshot without one
(the replay, a saved snapshot, ``phorque-evaluate``) derives them as before: ``index_of`` builds
the same index from the jobs, and a test holds the two to be equal.

Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache

from phorque.core.model import EXITING, QUEUED, RUNNING, Job, KindKey, Node, QueueIndex, tally_of

_RUNNING = (RUNNING, EXITING)


def kind_of(job: Job) -> KindKey:
    return (id(job.chunks), job.cores, job.queue, job.rerunnable)


@lru_cache(maxsize=1 << 17)
def job_order(job_id: str) -> tuple[int, int, str]:
    """Sort key for ids such as ``123.srv`` and ``123[4].srv``: numeric, then array index."""
    head = job_id.split(".", 1)[0]
    base, _, index = head.partition("[")
    index = index.rstrip("]")
    return (int(base) if base.isdigit() else 0, int(index) if index.isdigit() else -1, job_id)


def fifo_key(job: Job) -> tuple[float, tuple[int, int, str]]:
    """Where Torque's FIFO considers a queued job: by the time it was queued, then by id."""
    return (job.queued_at if job.queued_at is not None else math.inf, job_order(job.id))


def is_refused(job: Job) -> bool:
    """A queued job pbs_server refuses to start on any node (``Job.refused_by_server``)."""
    return bool(job.comment) and job.refused_by_server is not None  # only a comment can say so


def index_of(jobs: Iterable[Job], nodes: Iterable[Node]) -> QueueIndex:
    """The index of ``jobs``, as the live view would have kept it; ``nodes`` tell which jobs
    have started."""
    jobs = tuple(jobs)
    queued, refused, kinds = queue_of(jobs, nodes)
    return QueueIndex(queued, refused, tuple(j for j in jobs if j.state in _RUNNING), kinds, tally_of(jobs))


def queue_of(jobs: Sequence[Job], nodes: Iterable[Node]
             ) -> tuple[tuple[Job, ...], tuple[Job, ...], dict[KindKey, tuple[int, Job]]]:
    """The index's ``queued``, ``refused`` and ``kinds`` of ``jobs`` (a replay's evaluation
    needs no more, and most of them find no job queued)."""
    # (Comprehensions, not one loop: this is done at every evaluation of a replay.)
    waiting = [j for j in jobs if j.state == QUEUED]
    if not waiting:
        return (), (), {}
    refused: list[Job] = []
    if any(j.comment for j in waiting):
        refused = [j for j in waiting if is_refused(j)]
        if refused:
            waiting = [j for j in waiting if not is_refused(j)]
    started = {job for node in nodes for job in node.jobs}
    waiting = [j for j in waiting if j.id not in started]
    waiting.sort(key=fifo_key)
    kinds: dict[KindKey, tuple[int, Job]] = {}
    for job in waiting:
        key = (id(job.chunks), job.cores, job.queue, job.rerunnable)  # kind_of, inline
        found = kinds.get(key)
        kinds[key] = (1, job) if found is None else (found[0] + 1, found[1])
    return tuple(waiting), tuple(refused), kinds
