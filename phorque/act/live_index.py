"""The live view's jobs kept sorted as the policies read them, job by job
(:class:`phorque.core.model.QueueIndex`).

A refresh that changed a few jobs puts those jobs; a full read builds it all again. Each
snapshot is handed an immutable :class:`QueueIndex` taken from it: copying the sorted queue is
a copy of pointers, sorting it again would be a pass of Python over every job.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping

from phorque.core.model import EXITING, QUEUED, RUNNING, Job, KindKey, QueueIndex
from phorque.core.queue_index import fifo_key, is_refused, kind_of

_RUNNING = (RUNNING, EXITING)
_Key = tuple[float, tuple[int, int, str]]
#: Where a job is kept: in the FIFO queue, among the refused or the running, or nowhere.
_FIFO, _REFUSED, _RUN = 1, 2, 3


class LiveIndex:
    """The sorted queue, the refused and the running jobs of the live view's jobs, and the
    kinds of the queued ones. ``put`` must be told of every job that changed, in the order the
    view's job dict took in new ids (the refused and running jobs keep the view's order)."""

    def __init__(self) -> None:
        #: Each job's place in the view's dict: the refused and running jobs are served in it.
        self._seq: dict[str, int] = {}
        self._next = 0
        self._where: dict[str, int] = {}
        #: The FIFO key each queued job was filed under (a changed job is put again, and put
        #: takes it out first: its place is found by the key it had).
        self._key_of: dict[str, _Key] = {}
        self._refused: dict[str, Job] = {}
        self._running: dict[str, Job] = {}
        #: Per kind of queued job, its jobs' FIFO keys in order and one of them: how many there
        #: are, and where the kind first comes in the queue (the kinds are handed on in that
        #: order, the order a pass over the queue meets them).
        self._kinds: dict[KindKey, tuple[list[_Key], Job]] = {}
        self._keys: list[_Key] = []
        #: Per queue, the jobs in state Q and their cores.
        self._tally: dict[str, list[int]] = {}
        self._fifo: list[Job] = []

    def rebuild(self, jobs: Mapping[str, Job], before: Mapping[str, Job] | None = None) -> None:
        """Everything again from ``jobs`` (a full read). With ``before``, the jobs this index
        was told of last, only the jobs that are not the very same values are put again (a
        whole-queue read hands back the job it read last time for an element that did not
        change): sorting 100,000 jobs again would cost more than the read saved."""
        if before is not None and self._seq:
            changed = [i for i, job in jobs.items() if before.get(i) is not job]
            gone = [i for i in before if i not in jobs] if len(before) + len(changed) > len(jobs) else []
            if len(changed) + len(gone) <= len(jobs) // 8:
                for job_id in gone:
                    self.put(job_id, None)
                for job_id in changed:
                    self.put(job_id, jobs[job_id])
                # The refused and running jobs are served in the order of the read.
                self._seq = dict(zip(jobs, range(len(jobs)), strict=True))
                self._next = len(jobs)
                return
        self._clear(jobs)

    def _clear(self, jobs: Mapping[str, Job]) -> None:
        self._seq, self._next = {}, 0
        self._where, self._key_of, self._refused, self._running, self._kinds = {}, {}, {}, {}, {}
        self._tally = {}
        waiting = []
        for job_id, job in jobs.items():
            self._seq[job_id] = self._next
            self._next += 1
            if self._file(job_id, job, count=False):
                waiting.append((self._key_of[job_id], job))
        waiting.sort(key=lambda pair: pair[0])  # keys are unique (they end with the id)
        self._keys = [k for k, _ in waiting]
        self._fifo = [j for _, j in waiting]
        kinds = self._kinds
        for key, job in waiting:  # in order: each kind's keys come sorted
            found = kinds.get(kind_of(job))
            if found is None:
                kinds[kind_of(job)] = ([key], job)
            else:
                found[0].append(key)

    def put(self, job_id: str, job: Job | None) -> None:
        """``job_id`` is now ``job`` (None: the view no longer has it)."""
        where = self._where.pop(job_id, None)
        if where == _FIFO:
            key = self._key_of.pop(job_id)
            at = bisect_left(self._keys, key)
            old = self._fifo[at]
            del self._keys[at], self._fifo[at]
            self._uncount(old, key)
            self._add(old, -1)
        elif where == _REFUSED:
            self._add(self._refused.pop(job_id), -1)
        elif where == _RUN:
            del self._running[job_id]
        if job is None:
            self._seq.pop(job_id, None)
            return
        if job_id not in self._seq:
            self._seq[job_id] = self._next
            self._next += 1
        if self._file(job_id, job):
            key = self._key_of[job_id]
            at = bisect_left(self._keys, key)
            self._keys.insert(at, key)
            self._fifo.insert(at, job)

    def _file(self, job_id: str, job: Job, count: bool = True) -> bool:
        """Note where ``job`` belongs; True for the FIFO queue (the caller places it there; its
        kind is counted here with ``count``, else by the caller)."""
        if job.state == QUEUED:
            self._add(job, 1)
            if is_refused(job):
                self._where[job_id] = _REFUSED
                self._refused[job_id] = job
                return False
            self._where[job_id] = _FIFO
            key = self._key_of[job_id] = fifo_key(job)
            if count:
                self._count(job, key)
            return True
        if job.state in _RUNNING:
            self._where[job_id] = _RUN
            self._running[job_id] = job
        return False

    def _add(self, job: Job, step: int) -> None:
        found = self._tally.get(job.queue)
        if found is None:
            found = self._tally[job.queue] = [0, 0]
        found[0] += step
        found[1] += step * job.cores
        if not found[0]:
            del self._tally[job.queue]

    def _count(self, job: Job, key: _Key) -> None:
        kind = kind_of(job)
        found = self._kinds.get(kind)
        if found is None:
            self._kinds[kind] = ([key], job)
        else:
            insort(found[0], key)

    def _uncount(self, job: Job, key: _Key) -> None:
        kind = kind_of(job)
        keys = self._kinds[kind][0]
        del keys[bisect_left(keys, key)]
        if not keys:
            del self._kinds[kind]

    def index(self, replaced: Mapping[str, Job], listed: Iterable[str]) -> QueueIndex:
        """The snapshot's index: ``replaced`` are the jobs served in another value than the one
        put (a running job's remaining walltime counted down), ``listed`` the job ids the nodes
        list (queued in ``qstat``, started by the time of ``pbsnodes``: not queued)."""
        where = self._where
        started = [i for i in set(listed) if where.get(i) == _FIFO]
        swapped = [i for i in replaced if where.get(i) == _FIFO]
        if started or swapped:
            skip = set(started)
            queued = tuple(replaced.get(j.id, j) for j in self._fifo if j.id not in skip)
        else:
            queued = tuple(self._fifo)
        seq = self._seq
        running = tuple(replaced.get(i, j) for i, j in sorted(self._running.items(), key=lambda p: seq[p[0]]))
        refused = tuple(replaced.get(i, j) for i, j in sorted(self._refused.items(), key=lambda p: seq[p[0]]))
        tally = {queue: (n, cores) for queue, (n, cores) in self._tally.items()}
        return QueueIndex(queued, refused, running, self._kinds_of(started), tally)

    def _kinds_of(self, started: list[str]) -> dict[KindKey, tuple[int, Job]]:
        """The kinds of the queued jobs but ``started``, in the order the queue first has them."""
        gone: dict[KindKey, set[_Key]] = {}
        for job_id in started:  # (a few jobs at most: those that started between the reads)
            key = self._key_of[job_id]
            gone.setdefault(kind_of(self._fifo[bisect_left(self._keys, key)]), set()).add(key)
        firsts = []
        for kind, (keys, one) in self._kinds.items():
            skip = gone.get(kind)
            if skip is None:
                firsts.append((keys[0], kind, len(keys), one))
            elif len(skip) < len(keys):
                first = next(k for k in keys if k not in skip)
                firsts.append((first, kind, len(keys) - len(skip), one))
        firsts.sort(key=lambda entry: entry[0])  # (keys are unique)
        return {kind: (count, one) for _first, kind, count, one in firsts}
