"""The daemon's live view of Torque: jobs and nodes kept in memory between evaluations.

A full read (``qstat -f -x -t`` and ``pbsnodes -x``) costs time in proportion to the queue: two
seconds with 100,000 jobs. Between full reads the view follows what Torque writes:

- an accounting ``S`` record marks a known job running on its ``exec_host`` (the record carries
  both), ``E`` and ``A`` end it;
- a ``Q`` record, any other record, a job file that appears and an ``S`` for a job the view does
  not know make the job be read again, with one ``qstat -f -x -t ID...`` for all the ids of a
  burst (a ``Q`` record does not carry the request); an id qstat no longer knows has ended;
- a job file that is purged makes the job be read again too (an ``E`` may have been lost; but a
  real server also deletes a ``.JB`` each time it rewrites it);
- a node is read again (``pbsnodes -x NAME...``, or every node when more changed than
  :data:`NAMED_NODES`) when a job starts or ends on it, when Phorque changes it and when the
  caller says so (a cloud instance changed, or has not joined yet: a mom's first report is
  written nowhere Phorque watches).

The full read comes back every reconciliation and replaces the view. What it finds different
from what the view believed is returned as :class:`Drift` for the caller to log and count: the
view's errors are visible, never silent. Only what the view claims to follow is compared (a
job's presence, state, queue, hosts and request; a node's state, jobs and attributes); what
Torque changes without writing it anywhere Phorque watches (the scheduler's comment, the
remaining walltime) is simply refreshed. Jobs Torque keeps after they end (state ``C``) are not
in the view.

Records arrive on the watcher's thread; :meth:`ClusterView.refresh` runs on the daemon's. What
arrives while a refresh reads is kept for the next one.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from phorque.act.live_index import LiveIndex
from phorque.adapters.torque.xmlparse import exec_hosts
from phorque.core.model import COMPLETED, RUNNING, Job, Node, QueueIndex
from phorque.core.ports import TorqueReader

#: Nodes read by name in one refresh, above which every node is read (one ``pbsnodes -x`` of a
#: large cluster costs less than many named reads).
NAMED_NODES = 200
#: Jobs read by id in one refresh, above which the whole queue is read.
NAMED_JOBS = 2_000
#: Differences kept, per full read, for the log.
DRIFT_KEPT = 20

_ENDED = frozenset("EA")
#: The pending word on a job that only says "read it again".
REREAD = "read"
_ARRAY_FILE = re.compile(r"(\d+)-(\d+)(\..*)?")
#: Files of an array job itself, not of a sub-job (a real server writes ``4.vm.TA``; every job,
#: an array too, has its script in ``.SC``).
_ARRAY_PARENT_SUFFIXES = (".TA", ".AR")


@dataclass(frozen=True)
class Drift:
    """One thing a full read found different from the view."""

    kind: str          # "job" or "node"
    name: str
    believed: str      # what the view had ("absent" when it did not know it)
    found: str         # what the full read says ("absent" when Torque no longer lists it)

    def describe(self) -> str:
        return f"{self.kind} {self.name}: the view had {self.believed}, Torque has {self.found}"


@dataclass
class Refreshed:
    """What a refresh returns."""

    jobs: tuple[Job, ...]
    nodes: tuple[Node, ...]
    full: bool
    changed: bool                  # does anything differ from the previous refresh (a full read: drift)?
    drift: list[Drift] = field(default_factory=list)
    drift_total: int = 0           # differences found, also beyond those kept in ``drift``
    jobs_read: int = 0             # jobs read by id (0 for a full read)
    nodes_read: int = 0            # nodes read by name (0 when none, or all were read)
    #: Nodes that still list a job that has ended: pbs_server writes the end record a moment
    #: before it frees the job's slots. They are read again at the next refresh, which the
    #: caller should make soon.
    unsettled: tuple[str, ...] = ()
    #: ``jobs`` sorted as the policies read them (for the snapshot).
    queue_index: QueueIndex | None = None


@dataclass
class _Pending:
    """What the watcher said since the last refresh: per job id the last word on it, and the
    nodes to read again."""

    jobs: dict[str, tuple[str, str | None, float | None]] = field(default_factory=dict)
    nodes: set[str] = field(default_factory=set)
    all_nodes: bool = False


def job_id_of_file(path: str) -> str | None:
    """The job id a file of ``server_priv/jobs`` belongs to: ``12.srv.JB`` is ``12.srv``, a real
    server's array sub-job ``4-1.srv.JB`` is ``4[1].srv`` (the sandbox writes ``4[1].srv.JB``),
    and an array's own ``4.srv.TA`` is ``4[].srv``."""
    name = path.rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        return None
    match = _ARRAY_FILE.fullmatch(stem)
    if match is not None:
        return f"{match.group(1)}[{match.group(2)}]{match.group(3) or ''}"
    if f".{suffix}" in _ARRAY_PARENT_SUFFIXES and "[" not in stem:
        number, _, server = stem.partition(".")
        return f"{number}[]" + (f".{server}" if server else "")
    return stem


def _differ(old: Job, new: Job) -> bool:
    """Does the view's job differ from Torque's in what the view follows? (Not in the
    remaining walltime or the scheduler's comment, which no file tells of.)"""
    return (old.state != new.state or old.exec_hosts != new.exec_hosts or old.queue != new.queue
            or old.cores != new.cores or old.walltime_secs != new.walltime_secs
            or old.rerunnable != new.rerunnable or old.gpus != new.gpus or old.mem_mb != new.mem_mb
            or (old.chunks is not new.chunks and old.chunks != new.chunks))


def _job_text(job: Job | None) -> str:
    if job is None:
        return "absent"
    hosts = f" on {'+'.join(job.exec_hosts)}" if job.exec_hosts else ""
    return f"{job.state} in {job.queue or '?'}, {job.cores} core(s){hosts}"


def _node_text(node: Node | None) -> str:
    if node is None:
        return "absent"
    jobs = f", jobs {','.join(node.jobs)}" if node.jobs else ""
    return f"{','.join(sorted(node.state))} np={node.np}{jobs}"


class _Touched(dict[str, Job]):
    """The view's jobs as a refresh changes them: a copy that notes every id set or removed
    (in the order first touched), so that what changed is known without comparing 100,000
    jobs."""

    def __init__(self, jobs: dict[str, Job]):
        super().__init__(jobs)
        self.touched: dict[str, None] = {}

    def __setitem__(self, key: str, value: Job) -> None:
        self.touched[key] = None
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.touched[key] = None
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        self.touched[key] = None
        return super().pop(key, *default)


def _array_of(job_id: str) -> str | None:
    """``4[]`` for a sub-job ``4[1]`` (server part kept), else None."""
    head, bracket, rest = job_id.partition("[")
    if not bracket:
        return None
    _, close, server = rest.partition("]")
    return f"{head}[]{server}" if close else None


class ClusterView:
    """Jobs and nodes as last read, brought up to date by what the watcher reports."""

    def __init__(self, named_nodes: int = NAMED_NODES, named_jobs: int = NAMED_JOBS):
        self.named_nodes = named_nodes
        self.named_jobs = named_jobs
        self._lock = threading.Lock()
        self._pending = _Pending()
        # Keyed by the ids the accounting log and the job files give (plain text).
        self._jobs: dict[str, Job] = {}
        self._nodes: dict[str, Node] = {}
        #: When each running job's remaining walltime was read, to serve it as of ``now``.
        self._read_at: dict[str, float] = {}
        #: The jobs sorted as the policies read them, kept as they change.
        self._index = LiveIndex()
        self._valid = False

    @property
    def valid(self) -> bool:
        """Has a full read been made (and not been invalidated since)?"""
        return self._valid

    # -- what the watcher reports (any thread) ----------------------------------------------
    def record(self, kind: str, job_id: str, exec_host: str | None = None,
               start: float | None = None) -> None:
        """An accounting record of type ``kind`` for ``job_id``. An end is final (pbs_server
        never reuses an id, and a rerun job is requeued without one), so a record that arrives
        after it, out of order, does not bring the job back."""
        with self._lock:
            last = self._pending.jobs.get(job_id)
            if last is None or last[0] not in _ENDED:
                self._pending.jobs[job_id] = (kind, exec_host, start)

    def job_file(self, path: str, present: bool) -> None:
        """A job file appeared in, or was purged from, ``server_priv/jobs``."""
        job_id = job_id_of_file(path)
        if job_id is None:
            return
        # A purge is no proof of an end: a real server rewrites a job's .JB by deleting it and
        # linking a new .JC in its place. Either way qstat says what became of the job.
        with self._lock:
            last = self._pending.jobs.get(job_id)
            if last is None or last[0] not in _ENDED:
                self._pending.jobs[job_id] = (REREAD, None, None)

    def nodes_changed(self, names: Iterable[str | None]) -> None:
        """These nodes may have changed (Phorque changed them, or their instance changed)."""
        with self._lock:
            self._pending.nodes.update(n for n in names if n)

    def invalidate(self) -> None:
        """The next refresh must be a full read (records were lost, the watcher restarted), and
        nothing pending is kept until then (the full read has it all)."""
        with self._lock:
            self._valid = False
            self._pending = _Pending()

    # -- reading (the daemon's thread) ---------------------------------------------------------
    def refresh(self, torque: TorqueReader, now: float, full: bool = False) -> Refreshed:
        """Bring the view up to date: a full read when ``full`` or when the view is not valid,
        else only what changed. Raises what the reader raises; the view is then unchanged and
        what was pending is kept for the next refresh."""
        if full or not self._valid:
            return self._full(torque, now)
        return self._incremental(torque, now)

    def _served(self, now: float) -> tuple[tuple[Job, ...], tuple[Node, ...], QueueIndex]:
        """What a refresh hands on: the jobs, a running job's remaining walltime counted down
        to ``now`` (only the jobs with a remaining walltime are looked at, not the whole
        queue), the nodes, and the index of the jobs."""
        jobs = self._jobs
        replaced: dict[str, Job] = {}
        for job_id, read_at in self._read_at.items():
            job = jobs.get(job_id)
            if job is not None and job.remaining_secs is not None and now > read_at:
                replaced[job_id] = dataclasses.replace(
                    job, remaining_secs=max(0, job.remaining_secs - int(now - read_at)))
        if replaced:
            jobs = {**jobs, **replaced}  # (the same order: the keys are there already)
        nodes = self._nodes
        index = self._index.index(replaced, (j for node in nodes.values() for j in node.jobs))
        return tuple(jobs.values()), tuple(nodes.values()), index

    def _stamp(self, jobs: Iterable[Job], at: float) -> None:
        for job in jobs:
            if job.remaining_secs is not None:
                self._read_at[job.id] = at
            else:
                self._read_at.pop(job.id, None)

    def _take(self) -> _Pending:
        with self._lock:
            pending, self._pending = self._pending, _Pending()
        return pending

    def _put_back(self, pending: _Pending) -> None:
        """A refresh failed: what it took is pending again, under what arrived meanwhile."""
        with self._lock:
            later = self._pending
            pending.jobs.update(later.jobs)
            pending.nodes |= later.nodes
            pending.all_nodes |= later.all_nodes
            self._pending = pending

    def _full(self, torque: TorqueReader, now: float) -> Refreshed:
        # What was pending is in this read; what arrives while it runs stays for the next refresh.
        taken = self._take()
        try:
            jobs: dict[str, Job] = {j.id: j for j in torque.jobs() if j.state != COMPLETED}
            nodes: dict[str, Node] = {n.name: n for n in torque.nodes()}
        except Exception:
            self._put_back(taken)
            raise
        drift, total = (self._compare(jobs, nodes) if self._valid else ([], 0))
        # A full read is never skipped: "changed" is what it found wrong in the view.
        changed = total > 0 or not self._valid
        self._index.rebuild(jobs, self._jobs if self._valid else None)
        self._jobs, self._nodes, self._valid = jobs, nodes, True
        self._read_at = {}
        self._stamp(jobs.values(), now)
        served, listed, index = self._served(now)
        return Refreshed(served, listed, full=True, changed=changed, drift=drift, drift_total=total,
                         queue_index=index)

    def _compare(self, jobs: dict[str, Job], nodes: dict[str, Node]) -> tuple[list[Drift], int]:
        """The differences, the first DRIFT_KEPT of them by name, and their number. One pass
        over the jobs: a reconciliation of 100,000 mostly differs in nothing."""
        before = self._jobs
        jobs_off = [i for i, new in jobs.items() if (old := before.get(i)) is None or _differ(old, new)]
        jobs_off += [i for i in before if i not in jobs]
        nodes_off = [n for n in self._nodes.keys() | nodes.keys() if self._nodes.get(n) != nodes.get(n)]
        found = [Drift("job", i, _job_text(before.get(i)), _job_text(jobs.get(i)))
                 for i in sorted(jobs_off)[:DRIFT_KEPT]]
        found += [Drift("node", n, _node_text(self._nodes.get(n)), _node_text(nodes.get(n)))
                  for n in sorted(nodes_off)[:DRIFT_KEPT - len(found)]]
        return found, len(jobs_off) + len(nodes_off)

    def _incremental(self, torque: TorqueReader, now: float) -> Refreshed:
        taken = self._take()
        before = self._jobs
        jobs: dict[str, Job] = _Touched(before)
        touched_nodes = set(taken.nodes)
        reread: list[str] = []
        stamps: list[tuple[Job, float]] = []
        found: list[Job] | None = None  # None: the whole queue was read
        for job_id, (kind, exec_host, start) in taken.jobs.items():
            old = jobs.get(job_id)
            if kind in _ENDED:
                if old is not None:
                    del jobs[job_id]
                    touched_nodes.update(old.exec_hosts)
            elif kind == "S" and old is not None and exec_host:
                hosts = exec_hosts(exec_host)
                started = start if start else now
                jobs[job_id] = dataclasses.replace(
                    old, state=RUNNING, exec_hosts=hosts, started_at=started,
                    remaining_secs=old.walltime_secs, comment="")
                stamps.append((jobs[job_id], started))
                touched_nodes.update(hosts + old.exec_hosts)
            else:
                reread.append(job_id)
        try:
            if len(reread) > self.named_jobs:
                fresh: dict[str, Job] = {j.id: j for j in torque.jobs() if j.state != COMPLETED}
                for job in jobs.values():
                    touched_nodes.update(job.exec_hosts)
                for job in fresh.values():
                    touched_nodes.update(job.exec_hosts)
                jobs = fresh
                jobs_read = len(fresh)
                stamps += [(j, now) for j in fresh.values()]
            else:
                found = self._reread(torque, reread, jobs, touched_nodes)
                jobs_read = len(found)
                stamps += [(j, now) for j in found if j.id in jobs]
            nodes, nodes_read = self._read_nodes(torque, touched_nodes, taken.all_nodes)
        except Exception:
            self._put_back(taken)
            raise
        # What changed: the ids the refresh touched, or (the whole queue read) every id.
        touched = jobs.touched if isinstance(jobs, _Touched) else before.keys() | jobs.keys()
        ended = {i for i, (kind, _h, _s) in taken.jobs.items() if kind in _ENDED} | {
            i for i in touched if i in before and i not in jobs}
        unsettled = tuple(sorted(name for name in touched_nodes if name in nodes
                                 and any(j in ended for j in nodes[name].jobs)))
        if unsettled:
            # Read them again next time, and the ended jobs they list: if the node still has
            # one then, the view was wrong about its end.
            with self._lock:
                self._pending.nodes.update(unsettled)
                for name in unsettled:
                    for job_id in nodes[name].jobs:
                        if job_id in ended:
                            self._pending.jobs.setdefault(job_id, (REREAD, None, None))
        changed = any(jobs.get(i) != before.get(i) for i in touched) or nodes != self._nodes
        self._index_changes(jobs, touched, found is None)
        if isinstance(jobs, _Touched):
            jobs.touched = {}  # (kept as it is: copying 100,000 jobs again would cost more)
        self._jobs, self._nodes = jobs, nodes
        for job, at in stamps:
            self._stamp((job,), at)
        for gone in [i for i in self._read_at if i not in jobs]:
            del self._read_at[gone]
        served, listed, index = self._served(now)
        return Refreshed(served, listed, full=False, changed=changed, jobs_read=jobs_read,
                         nodes_read=nodes_read, unsettled=unsettled, queue_index=index)

    def _index_changes(self, jobs: dict[str, Job], touched: Iterable[str], whole: bool) -> None:
        """Tell the index what changed from ``self._jobs`` to ``jobs``: the ids ``touched``, in
        the order first touched (a new id's first touch is where the dict took it in); a
        whole-queue read builds it again."""
        if whole:
            self._index.rebuild(jobs)
            return
        before = self._jobs
        for job_id in touched:
            job = jobs.get(job_id)
            if job is not before.get(job_id):
                self._index.put(job_id, job)

    def _reread(self, torque: TorqueReader, ids: list[str], jobs: dict[str, Job],
                touched_nodes: set[str]) -> list[Job]:
        """Read these jobs again into ``jobs``; an id Torque no longer knows has ended."""
        if not ids:
            return []
        found = torque.jobs_named(ids)
        answered: set[str] = set()
        for job in found:
            answered.add(job.id)
            parent = _array_of(job.id)
            if parent is not None:
                answered.add(parent)
            old = jobs.get(job.id)
            if old is not None:
                touched_nodes.update(old.exec_hosts)
            touched_nodes.update(job.exec_hosts)
            if job.state == COMPLETED:
                jobs.pop(job.id, None)
            else:
                jobs[job.id] = job
        for job_id in ids:
            if job_id in answered:
                continue
            if "[]" in job_id:
                # An array none of whose sub-jobs is left: every sub-job of it has ended.
                prefix = job_id.split("[", 1)[0] + "["
                server = job_id.partition("]")[2]
                for sub in [j for j in jobs if j.startswith(prefix) and j.endswith(server)]:
                    touched_nodes.update(jobs.pop(sub).exec_hosts)
            old = jobs.pop(job_id, None)
            if old is not None:
                touched_nodes.update(old.exec_hosts)
        return found

    def _read_nodes(self, torque: TorqueReader, names: set[str],
                    everything: bool) -> tuple[dict[str, Node], int]:
        if not everything and not names:
            return self._nodes, 0
        if not everything and len(names) <= self.named_nodes:
            found = torque.nodes_named(sorted(names))
            if found is not None:
                nodes = dict(self._nodes)
                nodes.update((n.name, n) for n in found)
                return nodes, len(found)
        return {n.name: n for n in torque.nodes()}, 0

