"""Phorque's durable state: a small sqlite database in ``state_dir``.

It remembers every instance Phorque launched and its lifecycle (requested, booting, joined,
busy/idle, draining, terminating, gone) with timestamps, each cloud's failure record for back-off,
the policy's memory between evaluations, the recent decisions, and the daemon's heartbeat. The
database and its directory are created readable by the owner only. Writes are short transactions;
cloud changes are already serialized by the lock, and sqlite's own locking (with a busy timeout)
keeps concurrent readers such as ``phorque-status`` safe.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields, replace
from typing import Any

from phorque.adapters.private import private_dir, private_file
from phorque.core.errors import StateError
from phorque.core.model import InstanceId, Owned, Stage

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY, cloud TEXT NOT NULL, stage TEXT NOT NULL, node TEXT,
    first_seen REAL, launch_time REAL, joined_at REAL, idle_since REAL, drain_started REAL,
    down_since REAL, updated_at REAL);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, instance_id TEXT NOT NULL,
    cloud TEXT, stage TEXT NOT NULL, node TEXT);
CREATE TABLE IF NOT EXISTS cloud_health (
    cloud TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cloud_capacity (
    cloud TEXT PRIMARY KEY, capacity INTEGER NOT NULL, updated_at REAL);
CREATE TABLE IF NOT EXISTS memory (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, policy TEXT, action TEXT NOT NULL,
    cloud TEXT, instance TEXT, node TEXT, count INTEGER, reason TEXT, outcome TEXT);
CREATE TABLE IF NOT EXISTS daemon (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cloud_groups (cloud TEXT PRIMARY KEY, identity TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS interruptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, cloud TEXT NOT NULL,
    instance_id TEXT NOT NULL, node TEXT, requeued TEXT NOT NULL, lost TEXT NOT NULL);
"""

# What the cost report needs of each instance, kept apart from ``instances`` (whose node is
# released when Torque drops the node) and from ``transitions`` (pruned): never pruned.
BILLING_SCHEMA = """
CREATE TABLE IF NOT EXISTS billing (
    instance_id TEXT PRIMARY KEY, cloud TEXT NOT NULL, node TEXT, launched REAL, ended REAL);
"""

# A database made before the billing table: each instance's row from what is left, the node
# from ``instances`` or its last transition, the end from its going gone (else its last update).
_BACKFILL = """
INSERT OR IGNORE INTO billing (instance_id, cloud, node, launched, ended)
SELECT i.instance_id, i.cloud,
       COALESCE(i.node, (SELECT t.node FROM transitions t WHERE t.instance_id = i.instance_id
                         AND t.node IS NOT NULL ORDER BY t.id DESC LIMIT 1)),
       COALESCE(i.launch_time, i.first_seen),
       CASE WHEN i.stage != 'gone' THEN NULL ELSE COALESCE(
           (SELECT MIN(t.time) FROM transitions t WHERE t.instance_id = i.instance_id
            AND t.stage = 'gone' AND t.id > COALESCE((SELECT MAX(u.id) FROM transitions u
                WHERE u.instance_id = i.instance_id AND u.stage != 'gone'), 0)),
           i.updated_at) END
FROM instances i
"""

# One upsert per saved record: the node once known is kept, the launch is the cloud's launch
# time once known (else when Phorque first saw it), the end is the first save as gone (kept
# while it stays gone, cleared if it is seen live again).
_BILLING_UPSERT = """
INSERT INTO billing (instance_id, cloud, node, launched, ended) VALUES (?, ?, ?, ?, ?)
ON CONFLICT(instance_id) DO UPDATE SET cloud = excluded.cloud,
    node = COALESCE(excluded.node, billing.node),
    launched = COALESCE(excluded.launched, billing.launched),
    ended = CASE WHEN excluded.ended IS NULL THEN NULL
                 ELSE COALESCE(billing.ended, excluded.ended) END
"""

#: Decisions and transitions kept; older rows are pruned.
HISTORY_LIMIT = 5000

_OWNED_FIELDS = [f.name for f in fields(Owned)]


def _row_to_owned(row: sqlite3.Row) -> Owned:
    values = {name: row[name] for name in _OWNED_FIELDS}
    values["stage"] = Stage(values["stage"])
    return Owned(**values)


class StateStore:
    """The sqlite state. One instance per process; cheap to open."""

    def __init__(self, path: str):
        """Open (creating if needed) the database at ``path``; ``:memory:`` keeps it in memory."""
        self.path = path
        try:
            if path != ":memory:":
                private_dir(os.path.dirname(os.path.abspath(path)))
            if path != ":memory:":
                private_file(path)  # owner-only before sqlite opens it; an existing one is kept
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            self._add_billing()
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the state database {path}: {exc}") from exc

    def _add_billing(self) -> None:
        """Create the billing table; in a database that had none, fill it from what is left.

        Looked for first without a write lock: opening an upgraded database (``phorque-status``
        beside a running daemon) stays a read."""
        exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'billing'"
        if self.db.execute(exists).fetchone():
            return
        with self.transaction() as db:
            if not db.execute(exists).fetchone():  # another process may have made it meanwhile
                db.execute(BILLING_SCHEMA)
                db.execute(_BACKFILL)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self):
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: {exc}") from exc

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self.db.execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: {exc}") from exc

    # -- instances -----------------------------------------------------------------------
    def owned(self, include_gone: bool = False) -> list[Owned]:
        sql = "SELECT * FROM instances"
        if not include_gone:
            sql += " WHERE stage != 'gone'"
        return [_row_to_owned(r) for r in self._query(sql + " ORDER BY first_seen, instance_id")]

    def get(self, instance_id: str) -> Owned | None:
        rows = self._query("SELECT * FROM instances WHERE instance_id = ?", (instance_id,))
        return _row_to_owned(rows[0]) if rows else None

    def save(self, records: Iterable[Owned], now: float | None = None) -> None:
        """Insert or replace records; a change of stage is also written to the history."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            for rec in records:
                old = db.execute("SELECT stage, node FROM instances WHERE instance_id = ?",
                                 (rec.instance_id,)).fetchone()
                rec = replace(rec, updated_at=now)
                values = asdict(rec)
                values["stage"] = rec.stage.value
                db.execute(f"INSERT OR REPLACE INTO instances ({', '.join(_OWNED_FIELDS)}) "
                           f"VALUES ({', '.join('?' * len(_OWNED_FIELDS))})",
                           [values[n] for n in _OWNED_FIELDS])
                if old is None or old["stage"] != rec.stage.value or old["node"] != rec.node:
                    db.execute("INSERT INTO transitions (time, instance_id, cloud, stage, node) "
                               "VALUES (?, ?, ?, ?, ?)",
                               (now, rec.instance_id, rec.cloud, rec.stage.value, rec.node))
                db.execute(_BILLING_UPSERT,
                           (rec.instance_id, rec.cloud, rec.node,
                            rec.launch_time if rec.launch_time is not None else rec.first_seen,
                            now if rec.stage == Stage.GONE else None))

    def ended(self, ids: Sequence[str]) -> set[str]:
        """Of these instances, those whose record is gone."""
        found: set[str] = set()
        ids = list(ids)
        for start in range(0, len(ids), 500):  # within sqlite's limit of bound parameters
            chunk = ids[start:start + 500]
            found.update(r["instance_id"] for r in self._query(
                f"SELECT instance_id FROM instances WHERE stage = 'gone' AND instance_id IN "
                f"({', '.join('?' * len(chunk))})", chunk))
        return found

    def recorded_nodes(self) -> set[str]:
        """Node names of instances that are gone: nodes Phorque created and may still remove."""
        return {r["node"] for r in self._query(
            "SELECT node FROM instances WHERE stage = 'gone' AND node IS NOT NULL")}

    def gone_nodes(self) -> dict[str, str]:
        """Instance id -> node name of instances that are gone and still claim their node."""
        return {r["instance_id"]: r["node"] for r in self._query(
            "SELECT instance_id, node FROM instances WHERE stage = 'gone' AND node IS NOT NULL")}

    def forget_nodes(self, names: Iterable[str]) -> None:
        """Gone instances stop claiming these nodes (Torque no longer lists them): a node of
        that name made later, by someone else, is not Phorque's."""
        with self.transaction() as db:
            db.executemany("UPDATE instances SET node = NULL WHERE stage = 'gone' AND node = ?",
                           [(n,) for n in names])

    def billing(self) -> list[dict[str, Any]]:
        """What each instance Phorque ever owned was paid for: ``instance_id``, ``cloud``,
        ``node`` (None when never known), ``launched``, ``ended`` (None while it lives) and
        ``stage``, oldest launch first."""
        rows = self._query(
            "SELECT i.instance_id, i.cloud, i.stage, COALESCE(b.node, i.node) AS node, "
            "COALESCE(b.launched, i.launch_time, i.first_seen) AS launched, b.ended, i.updated_at "
            "FROM instances i LEFT JOIN billing b ON b.instance_id = i.instance_id "
            "ORDER BY launched, i.instance_id")
        out = []
        for row in rows:
            entry = dict(row)
            updated = entry.pop("updated_at")
            if entry["stage"] != Stage.GONE.value:
                entry["ended"] = None
            elif entry["ended"] is None:
                entry["ended"] = updated  # gone before it had a billing row: its last save
            out.append(entry)
        return out

    def set_stage(self, instance_id: InstanceId, cloud: str, stage: Stage, now: float, **changes: Any) -> Owned:
        """Move one instance to ``stage`` (creating its record if needed) and return it."""
        rec = self.get(instance_id) or Owned(instance_id=instance_id, cloud=cloud, stage=stage,
                                             first_seen=now)
        rec = replace(rec, stage=stage, **changes)
        self.save([rec], now)
        return rec

    def transitions(self, instance_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        if instance_id is None:
            rows = self._query("SELECT * FROM transitions ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._query("SELECT * FROM transitions WHERE instance_id = ? ORDER BY id DESC "
                               "LIMIT ?", (instance_id, limit))
        return [dict(r) for r in reversed(rows)]

    # -- clouds, memory, decisions ---------------------------------------------------------
    def health(self) -> dict[str, dict[str, Any]]:
        return {r["cloud"]: json.loads(r["record"]) for r in self._query("SELECT * FROM cloud_health")}

    def save_health(self, cloud: str, record: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO cloud_health (cloud, record) VALUES (?, ?)",
                       (cloud, json.dumps(record)))

    def capacities(self) -> dict[str, int]:
        """Each cloud's believed capacity: what it showed last, or what Phorque asked of it since."""
        return {r["cloud"]: r["capacity"] for r in self._query("SELECT * FROM cloud_capacity")}

    def save_capacity(self, cloud: str, capacity: int, now: float, *, raise_only: bool = False) -> None:
        """Record a cloud's capacity; with ``raise_only``, only if it is above the one recorded."""
        with self.transaction() as db:
            if raise_only:
                db.execute("INSERT INTO cloud_capacity (cloud, capacity, updated_at) VALUES (?, ?, ?) "
                           "ON CONFLICT(cloud) DO UPDATE SET capacity = excluded.capacity, "
                           "updated_at = excluded.updated_at WHERE excluded.capacity > capacity",
                           (cloud, capacity, now))
            else:
                db.execute("INSERT OR REPLACE INTO cloud_capacity (cloud, capacity, updated_at) "
                           "VALUES (?, ?, ?)", (cloud, capacity, now))

    def groups(self) -> dict[str, str]:
        """The group each cloud name reached when Phorque last acted there."""
        return {r["cloud"]: r["identity"] for r in self._query("SELECT * FROM cloud_groups")}

    def save_groups(self, groups: dict[str, str]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO cloud_groups (cloud, identity) VALUES (?, ?)",
                           list(groups.items()))

    def memory(self) -> dict[str, Any]:
        return {r["key"]: json.loads(r["value"]) for r in self._query("SELECT * FROM memory")}

    def save_memory(self, memory: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM memory")
            db.executemany("INSERT INTO memory (key, value) VALUES (?, ?)",
                           [(k, json.dumps(v)) for k, v in memory.items()])

    def record_decisions(self, now: float, policy: str, rows: Iterable[dict[str, Any]]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO decisions (time, policy, action, cloud, instance, node, count, reason, outcome) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(now, policy, r["action"], r.get("cloud"), r.get("instance"), r.get("node"),
                  r.get("count"), r.get("reason"), r.get("outcome")) for r in rows])
            for table in ("decisions", "transitions"):
                db.execute(f"DELETE FROM {table} WHERE id <= (SELECT MAX(id) FROM {table}) - ?",
                           (HISTORY_LIMIT,))

    def decisions(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM decisions ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(r) for r in reversed(rows)]

    def record_interruption(self, now: float, cloud: str, instance_id: str, node: str | None,
                            requeued: list[str], lost: dict[str, str]) -> None:
        """An instance the cloud took back: the jobs requeued, and those lost (job -> why)."""
        with self.transaction() as db:
            db.execute("INSERT INTO interruptions (time, cloud, instance_id, node, requeued, lost) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (now, cloud, instance_id, node, json.dumps(requeued), json.dumps(lost)))
            db.execute("DELETE FROM interruptions WHERE id <= (SELECT MAX(id) FROM interruptions) - ?",
                       (HISTORY_LIMIT,))

    def interruptions(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest interruptions, oldest first."""
        rows = self._query("SELECT * FROM interruptions ORDER BY id DESC LIMIT ?", (limit,))
        out = []
        for row in reversed(rows):
            item = dict(row)
            item["requeued"], item["lost"] = json.loads(item["requeued"]), json.loads(item["lost"])
            out.append(item)
        return out

    # -- daemon ----------------------------------------------------------------------------
    def set_daemon(self, **values: Any) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO daemon (key, value) VALUES (?, ?)",
                           [(k, json.dumps(v)) for k, v in values.items()])

    def daemon(self) -> dict[str, Any]:
        return {r["key"]: json.loads(r["value"]) for r in self._query("SELECT * FROM daemon")}
