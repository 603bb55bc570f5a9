"""Queues, as pbs_server keeps them for qmgr and qsub.

``init`` makes the ``batch`` queue as ``torque.setup`` does (Execution, enabled, started,
``resources_default.walltime = 01:00:00`` and ``resources_default.nodes = 1``). More are made
with ``qmgr -c "create queue long"`` and become usable once ``queue_type = execution``,
``enabled`` and ``started`` are set, as on a real server. ``is_transit = true`` makes qsub skip
its check that the node list could hold the job (``Job exceeds queue resource limits``).
"""

from __future__ import annotations

from collections.abc import Sequence
from sqlite3 import Row

from phorque_testbed.sandbox.engine import Engine, TorqueError
from phorque_testbed.sandbox.request import (
    QUEUE_DEFAULTS,
    RequestError,
    _check_value,
    decode_resources,
    encode_resources,
)

PBSE_UNKQUE = 15020
PBSE_QUEEXIST = 15034
PBSE_QUNOENB = 15026
PBSE_NOATTR = 15002
PBSE_BADATVAL = 15014
BOOL_TRUE = ("true", "t", "1", "y", "yes")
BOOL_FALSE = ("false", "f", "0", "n", "no")
FLAGS = ("enabled", "started", "is_transit")


def get(engine: Engine, name: str) -> Row | None:
    return engine.db.execute("SELECT * FROM queues WHERE name = ?", (name,)).fetchone()


def require(engine: Engine, name: str) -> Row:
    row = get(engine, name)
    if row is None:
        raise TorqueError(PBSE_UNKQUE, "Unknown queue")
    return row


def defaults(queue: Row) -> list[tuple[str, str]]:
    return decode_resources(queue["defaults"])


def create(engine: Engine, name: str, attributes: Sequence[tuple[str, str, str]] = ()) -> None:
    if get(engine, name) is not None:
        raise TorqueError(PBSE_QUEEXIST, "Queue already exists")
    seq = engine.db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM queues").fetchone()[0]
    engine.db.execute("INSERT INTO queues (name, seq) VALUES (?, ?)", (name, seq))
    set_attributes(engine, name, attributes)


def create_batch(engine: Engine) -> None:
    """The queue torque.setup makes."""
    create(engine, "batch")
    engine.db.execute("UPDATE queues SET queue_type = 'Execution', enabled = 1, started = 1,"
                      " defaults = ? WHERE name = 'batch'", (encode_resources(list(QUEUE_DEFAULTS)),))


def _flag(value: str) -> int:
    word = value.strip().lower()
    if word in BOOL_TRUE:
        return 1
    if word in BOOL_FALSE:
        return 0
    raise TorqueError(PBSE_BADATVAL, "Illegal attribute or resource value")


def set_attributes(engine: Engine, name: str, attributes: Sequence[tuple[str, str, str]]) -> None:
    queue = require(engine, name)
    resources = dict(defaults(queue))
    for attr, _op, value in attributes:
        if attr == "queue_type":
            kind = value.strip().lower()
            if not kind or not ("execution".startswith(kind) or "route".startswith(kind)):
                raise TorqueError(PBSE_BADATVAL, "Illegal attribute or resource value")
            engine.db.execute("UPDATE queues SET queue_type = ? WHERE name = ?",
                              ("Execution" if "execution".startswith(kind) else "Route", name))
        elif attr in FLAGS:
            engine.db.execute(f"UPDATE queues SET {attr} = ? WHERE name = ?", (_flag(value), name))
        elif attr.startswith("resources_default."):
            resource = attr.split(".", 1)[1]
            try:
                resources[resource] = _check_value(resource, value)
            except RequestError:
                raise TorqueError(PBSE_BADATVAL, "Illegal attribute or resource value") from None
        elif attr in ("resources_max.nodect", "resources_available.nodect", "max_running",
                      "max_queuable", "priority", "resources_max.walltime"):
            continue  # accepted, not modelled
        else:
            raise TorqueError(PBSE_NOATTR, "Undefined attribute ")
    engine.db.execute("UPDATE queues SET defaults = ? WHERE name = ?",
                      (encode_resources(list(resources.items())), name))
    engine.mark_dirty()


def unset_attributes(engine: Engine, name: str, attributes: list[str]) -> None:
    queue = require(engine, name)
    resources = dict(defaults(queue))
    for attr in attributes:
        if attr in FLAGS:
            engine.db.execute(f"UPDATE queues SET {attr} = 0 WHERE name = ?", (name,))
        elif attr.startswith("resources_default."):
            resources.pop(attr.split(".", 1)[1], None)
        elif attr == "queue_type":
            engine.db.execute("UPDATE queues SET queue_type = '' WHERE name = ?", (name,))
    engine.db.execute("UPDATE queues SET defaults = ? WHERE name = ?",
                      (encode_resources(list(resources.items())), name))
    engine.mark_dirty()


def delete(engine: Engine, name: str) -> None:
    require(engine, name)
    if engine.db.execute("SELECT 1 FROM jobs WHERE queue = ? AND state != 'C'", (name,)).fetchone():
        raise TorqueError(15076, "Cannot delete busy object")  # PBSE_OBJBUSY
    engine.db.execute("DELETE FROM queues WHERE name = ?", (name,))


def print_queue(queue: Row) -> list[str]:
    name = queue["name"]
    lines = ["#", f"# Create and define queue {name}", "#", f"create queue {name}"]
    if queue["queue_type"]:
        lines.append(f"set queue {name} queue_type = {queue['queue_type']}")
    if queue["is_transit"]:
        lines.append(f"set queue {name} is_transit = True")
    for resource, value in decode_resources(queue["defaults"]):
        lines.append(f"set queue {name} resources_default.{resource} = {value}")
    lines += [f"set queue {name} enabled = {'True' if queue['enabled'] else 'False'}",
              f"set queue {name} started = {'True' if queue['started'] else 'False'}"]
    return lines
