"""Watching Torque's own files: the accounting log and the jobs directory.

A new accounting record (a job queued, started, ended, deleted, aborted) or a job's files
appearing in or leaving ``server_priv/jobs`` fires the trigger at once. A real pbs_server writes
every queued job's ``.JB`` again at each scheduling cycle (it writes a ``.JC``, deletes the
``.JB`` and links the ``.JC`` in its place), so a write to the file of a job already known is no
news and fires nothing. The periodic reconciliation of the daemon covers what file events miss
(an NFS-mounted spool, an overflowing inotify queue), so a watcher error is logged and never
fatal.

Only writes, creations, deletions and renames are watched. Opening and closing a file are events
too (inotify's IN_OPEN and IN_CLOSE_NOWRITE, which watchdog reports), and reading the accounting
log opens it: reacting to those would read the log again for each of its own reads, without end.
"""

from __future__ import annotations

import logging
import os
import stat
import threading

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from phorque.act.clusterview import ClusterView
from phorque.adapters.torque.accounting import AccountingParser
from phorque.adapters.torque.tailer import AccountingTailer, PositionFile
from phorque.runtime.triggers import Trigger

log = logging.getLogger("phorque.watcher")

JOB_SUFFIXES = (".JB", ".SC", ".TA")
#: Records read per poll of the tailer, so a large backlog is read in bounded memory.
BATCH = 1_000
#: The events asked of the kernel (and handled): never a file's opening or closing.
WATCHED_EVENTS = [FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent,
                  DirCreatedEvent, DirDeletedEvent, DirMovedEvent]
HANDLED = frozenset({"created", "modified", "deleted", "moved"})
#: How the reasons the watcher fires begin.
REASON_PREFIXES = ("accounting ", "job file ")


def is_file_event(reason: str) -> bool:
    """Was this trigger reason fired by the watcher?"""
    return reason.startswith(REASON_PREFIXES)


def _regular(path: str) -> bool:
    """A regular file, or gone already (a job file may be purged at once)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True


class TorqueWatcher(FileSystemEventHandler):
    """Fires ``trigger`` for job submits, starts and ends seen in Torque's files."""

    def __init__(self, torque_home: str, trigger: Trigger, queues: frozenset[str] | None,
                 position_path: str | None = None, view: ClusterView | None = None):
        self.accounting_dir = os.path.join(torque_home, "server_priv", "accounting")
        self.jobs_dir = os.path.join(torque_home, "server_priv", "jobs")
        self.trigger = trigger
        self.queues = queues
        #: The daemon's live view of Torque, told of every record and job file seen.
        self.view = view
        self.positions = PositionFile(position_path) if position_path else None
        self.parser = AccountingParser()
        self._lock = threading.Lock()
        self._tailer: AccountingTailer | None = None
        self._observer: BaseObserver | None = None  # Observer is the platform's subclass
        self._watched: set[str] = set()
        self._job_files: dict[str, set[str]] = {}  # job file stem -> suffixes present
        self.records_seen = 0
        self.reads = 0  # looks at the accounting log, each on a file event (or a reconciliation)

    # -- set-up --------------------------------------------------------------------------
    def start(self) -> None:
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        self.ensure()

    def ensure(self) -> None:
        """(Re)attach to directories that exist now; called at start and at each reconciliation."""
        if self._observer is None:
            return
        for path, recursive in ((self.accounting_dir, False), (self.jobs_dir, True)):
            if path in self._watched:
                continue
            if not os.path.isdir(path):
                log.warning("cannot watch %s: no such directory (the periodic reconciliation covers it)", path)
                continue
            try:
                self._observer.schedule(self, path, recursive=recursive, event_filter=WATCHED_EVENTS)
                self._watched.add(path)
                log.info("watching %s", path)
                if path == self.jobs_dir:
                    self._scan_job_files()
            except OSError as exc:
                log.warning("cannot watch %s: %s (the periodic reconciliation covers it)", path, exc)
        if self.accounting_dir in self._watched and self._tailer is None:
            position = None
            if self.positions is not None:
                try:
                    position = self.positions.load()
                except Exception as exc:  # a damaged position file only costs the backlog
                    log.warning("ignoring the saved accounting position: %s", exc)
            self._tailer = AccountingTailer(self.accounting_dir, position=position, parser=self.parser)
            self.read_accounting()

    @property
    def watching_all(self) -> bool:
        """Are both the accounting log and the jobs directory followed?"""
        return self._tailer is not None and self.jobs_dir in self._watched

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        self._watched.clear()

    def _scan_job_files(self) -> None:
        with self._lock:
            self._job_files.clear()
            for folder, _dirs, files in os.walk(self.jobs_dir):
                for name in files:
                    if name.endswith(JOB_SUFFIXES):
                        stem, suffix = os.path.splitext(os.path.join(folder, name))
                        self._job_files.setdefault(stem, set()).add(suffix)

    def _job_file_appeared(self, path: str) -> bool:
        stem, suffix = os.path.splitext(path)
        with self._lock:
            present = self._job_files.setdefault(stem, set())
            new = not present
            present.add(suffix)
        return new

    def _job_file_gone(self, path: str) -> bool:
        stem, suffix = os.path.splitext(path)
        with self._lock:
            present = self._job_files.get(stem)
            if present is None:
                return False
            present.discard(suffix)
            if present:
                return False
            del self._job_files[stem]
        return True

    # -- events --------------------------------------------------------------------------
    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in HANDLED:
            return  # an opening or closing (see the module's note): never news
        try:
            path = os.fsdecode(event.src_path)
            if os.path.dirname(path) == self.accounting_dir:
                self.read_accounting()
                return
            kind = event.event_type
            if kind == "moved":
                # A .JC renamed to .JB: news only when the job had no file yet.
                dest = os.fsdecode(getattr(event, "dest_path", b"") or "")
                if path.endswith(JOB_SUFFIXES):
                    self._job_file_gone(path)
                if dest.endswith(JOB_SUFFIXES) and self._job_file_appeared(dest):
                    self._tell_view(dest, True)
                    self.trigger.fire("job file saved")
            elif kind == "created" and path.endswith(JOB_SUFFIXES) and not _regular(path):
                # A FIFO or a device is no job file pbs_server wrote; nothing ever opens it.
                log.error("%s is not a regular file; ignored", path)
            elif kind == "created" and path.endswith(JOB_SUFFIXES):
                if self._job_file_appeared(path):
                    self._tell_view(path, True)
                    self.trigger.fire("job file queued")
            elif kind == "deleted" and path.endswith(JOB_SUFFIXES):
                if self._job_file_gone(path):
                    self._tell_view(path, False)
                    self.trigger.fire("job file purged")
        except Exception:  # the observer thread must survive anything
            log.exception("error handling file event %s", event)

    def _tell_view(self, path: str, present: bool) -> None:
        if self.view is not None:
            self.view.job_file(path, present)

    def read_accounting(self) -> int:
        """Read new accounting records and fire for those that matter. Returns their number."""
        fired = 0
        with self._lock:
            if self._tailer is None:
                return 0
            self.reads += 1
            while True:
                records = self._tailer.poll(limit=BATCH)
                for record in records:
                    self.records_seen += 1
                    if self.view is not None:
                        # Every job is in the view, whatever its queue (a full read has them all).
                        if record.type == "S":
                            self.view.record("S", record.job_id, record.exec_host, record.start)
                        else:
                            self.view.record(record.type, record.job_id)
                    queue = record.queue
                    if self.queues is not None and queue is not None and queue not in self.queues:
                        continue
                    fired += 1
                    self.trigger.fire(f"accounting {record.type}")
                    log.debug("accounting %s %s", record.type, record.job_id)
                if len(records) < BATCH:
                    break
            if self.positions is not None:
                try:
                    self.positions.save(self._tailer.position)
                except OSError as exc:
                    log.warning("cannot save the accounting position: %s", exc)
        return fired
