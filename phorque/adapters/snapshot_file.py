"""Saved snapshots: a snapshot, the policy that planned on it and the plan it gave, as one JSON file.

``phorque-evaluate --save-snapshot FILE`` writes one; ``phorque-evaluate --snapshot FILE`` plans
on it again with the configured policy and says whether the plan is still the saved one. The test
cases under ``tests/cases/`` are such files: each pins what a policy does on one situation.

A file is one JSON object (format 1)::

    {
      "format": 1,
      "description": "...",              # optional: what the file shows (free text)
      "policy": {
        "name": "CostAware",              # the [Policy] name
        "price_per_hour": 10.0,           # null: unlimited
        "multiplier": 1,
        "queues": null,                   # [Phorque] queue_name as a sorted list; null: every queue
        "loop_sleep_secs": 120,
        "options": {"scale_in_margin_secs": 120, "idle_secs": null, "walltime_aware": true}
      },
      "snapshot": {...},                  # below
      "plan": [{"action": "launch", "cloud": "hotel", "count": 1, "reason": "..."}, ...],
      "notes": ["..."],
      "wake_at": 1700000300.0             # optional: when the plan asked to look again (null: never)
    }

``plan`` holds the plan's actions as :meth:`phorque.core.plan.Action.as_dict` gives them, in
:meth:`phorque.core.plan.Plan.ordered` order; ``notes`` the plan's notes in order; ``wake_at`` the
plan's wake-up, in epoch seconds (a file without it, saved before it was written, is compared on
its actions and notes only). ``options`` holds
every option of the policy (the configured value, else its default).

``snapshot`` holds the fields of :class:`phorque.core.model.Snapshot` by name, and so on down: a
``Job``, ``Chunk``, ``Node``, ``CloudState``, ``Instance``, ``LaunchFailure`` and ``Owned`` is an
object of its fields (the derived ones, such as a node's ``free_cores``, are not written: they
follow from the others); a tuple is a list; a set (a node's ``state``, ``recorded_nodes``, a
cloud's ``queues``) is a sorted list, and a cloud's ``queues`` is ``null`` for "every queue",
apart from ``[]``; an instance's ``state``, a cloud's ``health`` and an owned record's ``stage``
are their values (``"running"``, ``"ok"``, ``"idle"``); ``memory`` (the policy's memory, JSON
as the state store keeps it) and ``gone_nodes`` are objects; times are epoch seconds. A field
left out takes the model's default (a file saved before a field was added still reads); a field
without a default must be there. An unknown field, a value of the wrong type or an unknown
``format`` is an error naming the file and the field (``snapshot.jobs[2].cores``).

:func:`to_dict`/:func:`from_dict` and :func:`document`/:func:`parse_document` do no I/O;
:func:`read_saved` and :func:`write_saved` beside them read and write a file.
``from_dict(to_dict(s)) == s`` for every snapshot whose memory is JSON data.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass
from enum import Enum
from functools import cache
from typing import Any

from phorque.adapters.private import replace_atomically
from phorque.core.errors import PhorqueError
from phorque.core.model import Snapshot
from phorque.core.options import OptionValueError
from phorque.core.plan import Kind, Plan
from phorque.policy import policy_class
from phorque.policy.base import Policy

FORMAT = 1


class SnapshotFileError(PhorqueError):
    """A saved snapshot that cannot be read: the file (when known), the field and what is wrong."""

    def __init__(self, where: str, problem: str, path: str | None = None):
        self.path = path
        self.where = where
        self.problem = problem
        super().__init__(f"{path + ': ' if path else ''}{where + ': ' if where else ''}{problem}")

    def in_file(self, path: str) -> SnapshotFileError:
        return SnapshotFileError(self.where, self.problem, path)


@dataclass(frozen=True)
class Saved:
    """What a file holds: the policy section, the snapshot, the plan's rows and notes."""

    policy: dict[str, Any]
    snapshot: Snapshot
    plan: list[dict[str, Any]]
    notes: list[str]
    description: str = ""
    #: The plan's wake-up; ``wake_saved`` is False for a file written before it was saved.
    wake_at: float | None = None
    wake_saved: bool = False

    def same_plan(self, plan: Plan) -> bool:
        """Whether ``plan`` is the saved one: its actions, its notes and (when saved) its wake-up."""
        return (plan_rows(plan) == self.plan and list(plan.notes) == self.notes
                and (not self.wake_saved or plan.wake_at == self.wake_at))


# -- the snapshot -------------------------------------------------------------------------------------

def to_dict(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON data (see the module's description of the shape)."""
    return _dump(snapshot, Snapshot, "snapshot")


def from_dict(data: object, where: str = "snapshot") -> Snapshot:
    """The snapshot ``to_dict`` gave; SnapshotFileError naming the field when ``data`` is not one."""
    return _load(data, Snapshot, where)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _written_fields(cls: type) -> list:
    # init=False fields are derived caches (Node.free_cores, CloudState._valid), and so is a
    # field marked derived (Snapshot.queue_index): never data.
    return [f for f in fields(cls) if f.init and not f.metadata.get("derived")]


def _plain(kind: Any) -> Any:
    """The type a NewType stands for (an id is written and read as its text)."""
    while isinstance(kind, typing.NewType):
        kind = kind.__supertype__
    return kind


def _dump(value: Any, kind: Any, where: str) -> Any:
    kind = _plain(kind)
    origin = typing.get_origin(kind)
    if kind is Any:
        return _json_value(value, where)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(kind) if a is not type(None)]
        return _dump(value, inner, where)
    if isinstance(kind, type) and is_dataclass(kind):
        return {f.name: _dump(getattr(value, f.name), _hints(kind)[f.name], f"{where}.{f.name}")
                for f in _written_fields(kind)}
    if isinstance(kind, type) and issubclass(kind, Enum):
        return value.value
    if origin is tuple:
        inner = typing.get_args(kind)[0]
        return [_dump(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is frozenset:
        return sorted(value)
    if origin is Mapping:
        _, inner = typing.get_args(kind)
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is not a string")
            out[key] = _dump(item, inner, f"{where}.{key}")
        return out
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a finite number")
        return value
    return value  # int, str, bool: JSON as they are


def _json_value(value: Any, where: str) -> Any:
    """A copy of JSON data; a tuple or any other value would not come back as it was."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a finite number")
        return value
    if isinstance(value, list):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is not a string")
            out[key] = _json_value(item, f"{where}.{key}")
        return out
    raise TypeError(f"{where}: {type(value).__name__} is not JSON data (lists, objects, strings, numbers)")


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _shown(value: object) -> str:
    text = json.dumps(value) if value is None or isinstance(value, str | int | float | bool) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _wrong(where: str, wanted: str, value: object) -> SnapshotFileError:
    containers: dict[type, str] = {list: "a list", dict: "an object"}
    got = containers.get(type(value))
    return SnapshotFileError(where, f"expected {wanted}, got {got or _shown(value)}")


def _load(value: Any, kind: Any, where: str) -> Any:
    kind = _plain(kind)
    origin = typing.get_origin(kind)
    if kind is Any:
        return _json_value(value, where)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(kind) if a is not type(None)]
        return _load(value, inner, where)
    if isinstance(kind, type) and is_dataclass(kind):
        return _load_dataclass(value, kind, where)
    if isinstance(kind, type) and issubclass(kind, Enum):
        known = [m.value for m in kind]
        if not isinstance(value, str) or value not in known:
            raise SnapshotFileError(where, f"expected one of {', '.join(known)}, got {_shown(value)}")
        return kind(value)
    if origin is tuple:
        if not isinstance(value, list):
            raise _wrong(where, "a list", value)
        inner = typing.get_args(kind)[0]
        return tuple(_load(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is frozenset:
        if not isinstance(value, list):
            raise _wrong(where, "a list", value)
        (inner,) = typing.get_args(kind)
        return frozenset(_load(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is Mapping:
        if not isinstance(value, dict):
            raise _wrong(where, "an object", value)
        _, inner = typing.get_args(kind)
        return types.MappingProxyType({k: _load(v, inner, f"{where}.{k}") for k, v in value.items()})
    if kind is bool:
        if not isinstance(value, bool):
            raise _wrong(where, _NAMES[bool], value)
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong(where, _NAMES[int], value)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong(where, _NAMES[float], value)
        try:
            return float(value)
        except OverflowError:  # an integer of 400 digits
            raise SnapshotFileError(where, "too large for a number") from None
    if kind is str:
        if not isinstance(value, str):
            raise _wrong(where, _NAMES[str], value)
        return value
    raise TypeError(f"{where}: no reading for {kind!r}")  # a model field of a new kind


def _load_dataclass(value: Any, cls: type, where: str) -> Any:
    if not isinstance(value, dict):
        raise _wrong(where, f"an object ({cls.__name__})", value)
    known = _written_fields(cls)
    names = {f.name for f in known}
    unknown = sorted(set(value) - names)
    if unknown:
        raise SnapshotFileError(f"{where}.{unknown[0]}", f"unknown field of {cls.__name__} "
                                f"(known: {', '.join(f.name for f in known)})")
    args = {}
    for f in known:
        if f.name not in value:
            if f.default is MISSING and f.default_factory is MISSING:
                raise SnapshotFileError(f"{where}.{f.name}", "missing field")
            continue
        args[f.name] = _load(value[f.name], _hints(cls)[f.name], f"{where}.{f.name}")
    return cls(**args)


# -- the policy ---------------------------------------------------------------------------------------

def policy_section(policy: Policy) -> dict[str, Any]:
    """The ``policy`` section for a policy object: its name and every option it plans with."""
    return {
        "name": policy.name,
        "price_per_hour": None if policy.price_per_hour is None else float(policy.price_per_hour),
        "multiplier": policy.multiplier,
        "queues": None if policy.queues is None else sorted(policy.queues),
        "loop_sleep_secs": policy.loop_sleep_secs,
        "options": {name: policy.options[name] for name in sorted(policy.options)},
    }


def policy_from_section(section: object, where: str = "policy") -> Policy:
    """The policy a ``policy`` section names, with its options."""
    if not isinstance(section, dict):
        raise _wrong(where, "an object", section)
    keys = ("name", "price_per_hour", "multiplier", "queues", "loop_sleep_secs", "options")
    unknown = sorted(set(section) - set(keys))
    if unknown:
        raise SnapshotFileError(f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(keys)})")
    for key in keys:
        if key not in section:
            raise SnapshotFileError(f"{where}.{key}", "missing field")
    name = _load(section["name"], str, f"{where}.name")
    try:
        cls = policy_class(name)
    except KeyError as exc:
        raise SnapshotFileError(f"{where}.name", str(exc.args[0])) from None
    price = _load(section["price_per_hour"], float | None, f"{where}.price_per_hour")
    if price is not None and price < 0:
        raise SnapshotFileError(f"{where}.price_per_hour", f"{price:g} is below 0")
    multiplier = _load(section["multiplier"], int, f"{where}.multiplier")
    if multiplier < 1:
        raise SnapshotFileError(f"{where}.multiplier", f"{multiplier} is below the minimum 1")
    loop = _load(section["loop_sleep_secs"], int, f"{where}.loop_sleep_secs")
    if loop < 1:
        raise SnapshotFileError(f"{where}.loop_sleep_secs", f"{loop} is below the minimum 1")
    queues = _load(section["queues"], frozenset[str] | None, f"{where}.queues")
    options = section["options"]
    if not isinstance(options, dict):
        raise _wrong(f"{where}.options", "an object", options)
    values: dict[str, Any] = {}
    for key, value in options.items():
        spec = cls.OPTIONS.get(key)
        if spec is None:
            known = ", ".join(sorted(cls.OPTIONS)) or "none"
            raise SnapshotFileError(f"{where}.options.{key}", f"not an option of {name} (known: {known})")
        if value is None and spec.default is None:
            values[key] = None
            continue
        if value is None or isinstance(value, list | dict):
            raise _wrong(f"{where}.options.{key}", "a number or true or false", value)
        # The option's own check, as the configuration loader makes it (kinds, minimums).
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        try:
            parsed = spec.parse(text)
        except OptionValueError as exc:
            raise SnapshotFileError(f"{where}.options.{key}", str(exc)) from None
        if type(parsed) is not type(value) and not (isinstance(parsed, float) and type(value) is int):
            raise _wrong(f"{where}.options.{key}", f"a {type(parsed).__name__}", value)
        values[key] = parsed
    return cls(price_per_hour=price, multiplier=multiplier, queues=queues, loop_sleep_secs=loop, **values)


# -- the whole file -----------------------------------------------------------------------------------

def plan_rows(plan: Plan) -> list[dict[str, Any]]:
    """The plan's actions as a file holds them."""
    return [a.as_dict() for a in plan.ordered()]


def document(snapshot: Snapshot, policy: Policy, plan: Plan, description: str = "") -> dict[str, Any]:
    """The file's object for a snapshot, the policy that planned on it and its plan."""
    out: dict[str, Any] = {"format": FORMAT}
    if description:
        out["description"] = description
    out.update(policy=policy_section(policy), snapshot=to_dict(snapshot), plan=plan_rows(plan),
               notes=list(plan.notes), wake_at=plan.wake_at)
    return out


_DOC_KEYS = ("format", "description", "policy", "snapshot", "plan", "notes", "wake_at")
_ROW_KEYS = {"action": str, "cloud": str, "count": int, "instance": str, "node": str, "reason": str}


def parse_document(data: object) -> Saved:
    """What a file's object holds; SnapshotFileError naming the field when it is malformed."""
    if not isinstance(data, dict):
        raise _wrong("", "a JSON object", data)
    if "format" not in data:
        raise SnapshotFileError("format", "missing field (this is not a saved snapshot)")
    if isinstance(data["format"], bool) or data["format"] != FORMAT:
        raise SnapshotFileError("format", f"unknown format {_shown(data['format'])} (this Phorque reads {FORMAT})")
    unknown = sorted(set(data) - set(_DOC_KEYS))
    if unknown:
        raise SnapshotFileError(unknown[0], f"unknown field (known: {', '.join(_DOC_KEYS)})")
    for key in ("policy", "snapshot", "plan", "notes"):
        if key not in data:
            raise SnapshotFileError(key, "missing field")
    description = _load(data.get("description", ""), str, "description")
    policy = policy_section(policy_from_section(data["policy"]))
    snapshot = from_dict(data["snapshot"])
    rows = data["plan"]
    if not isinstance(rows, list):
        raise _wrong("plan", "a list", rows)
    for i, row in enumerate(rows):
        _check_row(row, f"plan[{i}]")
    notes = list(_load(data["notes"], tuple[str, ...], "notes"))
    wake_at = _load(data.get("wake_at"), float | None, "wake_at")
    return Saved(policy=policy, snapshot=snapshot, plan=[dict(r) for r in rows], notes=notes,
                 description=description, wake_at=wake_at, wake_saved="wake_at" in data)


def _check_row(row: object, where: str) -> None:
    if not isinstance(row, dict):
        raise _wrong(where, "an object", row)
    for key in ("action", "reason"):
        if key not in row:
            raise SnapshotFileError(f"{where}.{key}", "missing field")
    for key, value in row.items():
        kind = _ROW_KEYS.get(key)
        if kind is None:
            raise SnapshotFileError(f"{where}.{key}", f"unknown field (known: {', '.join(_ROW_KEYS)})")
        _load(value, kind, f"{where}.{key}")
    if row["action"] not in [k.value for k in Kind]:
        raise SnapshotFileError(f"{where}.action", f"expected one of {', '.join(k.value for k in Kind)}, "
                                f"got {_shown(row['action'])}")


# -- files --------------------------------------------------------------------------------------------

def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def read_saved(path: str) -> Saved:
    """Read a saved snapshot; SnapshotFileError (naming the file) when it cannot be read or used."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise SnapshotFileError("", f"cannot read: {exc.strerror or exc}", path) from None
    except UnicodeDecodeError as exc:
        raise SnapshotFileError("", f"not UTF-8 text (byte {exc.start})", path) from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SnapshotFileError("", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", path) from None
    except (ValueError, RecursionError) as exc:
        raise SnapshotFileError("", f"not JSON: {exc}", path) from None
    try:
        return parse_document(data)
    except SnapshotFileError as exc:
        raise exc.in_file(path) from None
    except RecursionError:
        raise SnapshotFileError("", "nested too deeply", path) from None


def write_saved(path: str, data: dict[str, Any]) -> None:
    """Write a file's object atomically: a temporary file beside ``path``, then a rename (a reader
    sees the old file or the new one, never half of one). Raises OSError."""
    # ASCII: a lone surrogate in a name (Torque sends any bytes) is written as an escape too.
    replace_atomically(path, json.dumps(data, indent=1, allow_nan=False) + "\n", ".snapshot-")
