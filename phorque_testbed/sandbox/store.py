"""The sandbox's state: one sqlite database, changed only while holding one lock.

Every request the server answers, every tick and every ``phorque-sandbox`` action opens a
:class:`Session`: it takes an exclusive ``flock`` on ``sandbox/lock`` (the kernel queues
waiters, without polling), then runs one sqlite transaction. Files outside the database
(accounting log, job files) are written inside the same session, so they always agree with it.

The database runs in WAL mode with ``synchronous=OFF``: a commit is atomic and survives a crash
of the process, but not of the machine, which is fine for a sandbox and saves every command the
fsyncs (a command that closes the last connection would otherwise pay for a checkpoint).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable

from phorque_testbed.sandbox import acct
from phorque_testbed.sandbox.layout import Layout

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    name       TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    np         INTEGER NOT NULL,
    gpus       INTEGER NOT NULL DEFAULT 0,   -- qmgr's gpus= (virtual GPUs, numbered from 0)
    mem_kb     INTEGER NOT NULL DEFAULT 0,   -- physmem its pbs_mom reports; 0: 2 GiB per core
    properties TEXT NOT NULL DEFAULT '',
    note       TEXT NOT NULL DEFAULT '',
    offline    INTEGER NOT NULL DEFAULT 0,
    boot       TEXT NOT NULL,            -- static | fixed | cloud
    created_at REAL NOT NULL,
    ready_at   REAL,                     -- fixed: when its pbs_mom reports in
    up         INTEGER NOT NULL DEFAULT 0,
    up_since   REAL,
    listed_at  REAL                      -- when the new node list reaches the moms (qmgr-made)
);
CREATE TABLE IF NOT EXISTS queues (
    name       TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    queue_type TEXT NOT NULL DEFAULT '',  -- Execution | Route | '' (not set yet)
    enabled    INTEGER NOT NULL DEFAULT 0,
    started    INTEGER NOT NULL DEFAULT 0,
    is_transit INTEGER NOT NULL DEFAULT 0,
    defaults   TEXT NOT NULL DEFAULT ''   -- resources_default, encoded as Resource_List
);
CREATE TABLE IF NOT EXISTS cloud_names (
    name TEXT PRIMARY KEY                -- DNS names of live instances (cloud boot mode)
);
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY,
    seq           INTEGER NOT NULL,
    idx           INTEGER,               -- array index of a sub-job
    kind          TEXT NOT NULL,         -- job | template | sub
    name          TEXT NOT NULL,
    owner         TEXT NOT NULL,
    euser         TEXT NOT NULL,
    egroup        TEXT NOT NULL,
    account       TEXT,
    queue         TEXT NOT NULL,
    state         TEXT NOT NULL,         -- Q H R C (templates: Q until every sub-job is done)
    hold          TEXT NOT NULL DEFAULT '',  -- Hold_Types: u (qsub -h), l (an array's %limit)
    queue_rank    INTEGER,
    ran           REAL,                  -- sandbox seconds the current run lasts (until killed)
    deleted_at    REAL,                  -- qdel of a running job: waiting for the mom's obit
    resources     TEXT NOT NULL,         -- JSON list of [name, value], in Torque's order
    submit_args   TEXT NOT NULL,
    variables     TEXT NOT NULL,
    runtime       REAL NOT NULL,         -- sandbox seconds the job runs (#SANDBOX runtime=)
    walltime      REAL NOT NULL,         -- its Resource_List.walltime, in seconds
    exit_code     INTEGER NOT NULL,      -- its exit status when it runs to the end
    rerunable     INTEGER NOT NULL,
    join_path     TEXT NOT NULL,
    keep_files    TEXT NOT NULL,
    mail_points   TEXT NOT NULL,
    priority      INTEGER NOT NULL,
    output_path   TEXT NOT NULL,
    error_path    TEXT NOT NULL,
    init_work_dir TEXT NOT NULL,
    submit_host   TEXT NOT NULL,
    array_request TEXT,
    slot_limit    INTEGER,
    ctime         REAL NOT NULL,
    qtime         REAL NOT NULL,
    etime         REAL NOT NULL,
    mtime         REAL NOT NULL,
    start         REAL,
    speed         REAL,                  -- speed factor the current run started with
    ends_at       REAL,
    comp_time     REAL,
    exit_status   INTEGER,
    exec_host     TEXT,
    exec_gpus     TEXT,                  -- host-gpu/N+... of a job given GPUs
    gpu_flags     INTEGER,               -- the GPU mode asked for (set with exec_gpus)
    slots         INTEGER,               -- execution slots and distinct hosts of exec_host
    hosts         INTEGER,
    session       INTEGER,
    start_count   INTEGER NOT NULL DEFAULT 0,
    used_walltime REAL,
    comment       TEXT,
    purge_at      REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, kind);
CREATE INDEX IF NOT EXISTS jobs_by_seq ON jobs (seq, idx);
CREATE TABLE IF NOT EXISTS alloc (
    node TEXT NOT NULL,
    slot INTEGER NOT NULL,
    job  TEXT NOT NULL,
    PRIMARY KEY (node, slot)             -- a slot never serves two jobs
);
CREATE INDEX IF NOT EXISTS alloc_by_job ON alloc (job);
"""

#: Settings and their defaults (stored as text).
DEFAULTS: dict[str, str] = {
    "server_name": "localhost",
    "speed": "1",
    "scheduler": "fifo",            # fifo (pbs_sched's default: skip what does not fit) | strict
    "scheduling": "1",              # qmgr: set server scheduling=true|false
    "boot_mode": "fixed",           # fixed | cloud
    "boot_delay": "30",             # sandbox seconds
    "cloud_endpoint": "",
    "cloud_region": "us-east-1",
    "cloud_poll": "1.0",            # real seconds between DescribeInstances calls
    "default_runtime": "10",        # sandbox seconds a job runs without #SANDBOX runtime=
    "keep_completed": "300",        # sandbox seconds a completed job stays (Torque 6 default)
    "default_queue": "batch",
    # Real Torque's timings, in sandbox seconds (tests may shorten them):
    "mom_list_delay": "5",          # a new node is down,offline,MOM-list-not-sent (real: ~10 s)
    "obit_delay": "8",              # a job's end reaches pbs_server with the mom's obit (8-9 s)
    "sched_cycle": "10",            # pbs_sched's periodic cycle: queued jobs' files re-saved
    "mom_status_interval": "45",    # a mom's status (resources_used) every status_update_time
    "delete_infeasible": "1",       # pbs_sched deletes a job the node list can never hold
    "next_queue_rank": "1",
    "next_cycle": "0",              # real time of the next periodic scheduling cycle
    "next_job_id": "0",
    "next_node_seq": "0",
    "next_session": "4000",         # session ids (pids) of started jobs
    "clock": "0",                   # real time up to which events have been processed
    "sched_dirty": "1",             # something changed since the last scheduling pass
}


#: Connections a long-running process keeps open, by database path (see :func:`keep_open`).
_kept: dict[str, sqlite3.Connection] = {}


def keep_open(layout: Layout) -> None:
    """Let this process's sessions share one open connection (the server, which serves many
    requests: a fresh connection re-reads the schema and starts with a cold cache)."""
    if layout.database not in _kept:
        _kept[layout.database] = connect(layout)


def close_kept() -> None:
    while _kept:
        _kept.popitem()[1].close()


class Session:
    """One locked transaction on a sandbox cluster's state.

    Use as a context manager: commits on success, rolls back on an exception, and always
    releases the lock. Accounting records and job-file changes are queued with
    :meth:`record` and :meth:`on_commit` and carried out, in the order they were queued, just
    before the commit, so nothing is written for a session that fails.
    """

    def __init__(self, layout: Layout):
        self.layout = layout
        self.db: sqlite3.Connection | None = None
        self._fd = -1
        self._settings: dict[str, str] | None = None
        self._pending: list[tuple[float, str, str, str] | Callable[[], None]] = []

    def __enter__(self) -> Session:
        self._fd = os.open(self.layout.lock, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self.db = _kept.get(self.layout.database) or connect(self.layout)
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            assert self.db is not None
            if exc_type is None:
                self._flush()
                self.db.execute("COMMIT")
            else:
                self.db.execute("ROLLBACK")
        finally:
            self._release()

    def _release(self) -> None:
        if self.db is not None:
            if self.db is not _kept.get(self.layout.database):
                self.db.close()
            self.db = None
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1

    # -- deferred writes -----------------------------------------------------------------
    def record(self, when: float, kind: str, job_id: str, text: str) -> None:
        """Queue an accounting record."""
        self._pending.append((when, kind, job_id, text))

    def on_commit(self, action: Callable[[], None]) -> None:
        """Queue a file change (job files, the nodes file)."""
        self._pending.append(action)

    def _flush(self) -> None:
        batch: list[tuple[float, str, str, str]] = []
        for item in self._pending:
            if isinstance(item, tuple):
                batch.append(item)
                continue
            if batch:
                acct.append(self.layout, batch)
                batch = []
            item()
        if batch:
            acct.append(self.layout, batch)
        self._pending = []

    # -- settings ------------------------------------------------------------------------
    def settings(self) -> dict[str, str]:
        if self._settings is None:
            assert self.db is not None
            found = dict(self.db.execute("SELECT key, value FROM settings").fetchall())
            self._settings = {**DEFAULTS, **found}
        return self._settings

    def get(self, key: str) -> str:
        return self.settings()[key]

    def get_float(self, key: str) -> float:
        return float(self.get(key))

    def get_int(self, key: str) -> int:
        return int(float(self.get(key)))

    def set(self, key: str, value: object) -> None:
        assert self.db is not None
        text = str(value)
        self.db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, text))
        self.settings()[key] = text

    def next_number(self, key: str) -> int:
        """Take the next number of a counter setting (job ids, node order)."""
        number = self.get_int(key)
        self.set(key, number + 1)
        return number


def connect(layout: Layout) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are begun explicitly)."""
    db = sqlite3.connect(layout.database, timeout=120.0, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA synchronous=OFF")
    return db


def create(layout: Layout, settings: dict[str, object]) -> None:
    """Create the database of a new cluster with the given settings."""
    db = sqlite3.connect(layout.database, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        db.execute("BEGIN")
        for key, value in {**DEFAULTS, **{k: str(v) for k, v in settings.items()}}.items():
            db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))
        db.execute("COMMIT")
    finally:
        db.close()
