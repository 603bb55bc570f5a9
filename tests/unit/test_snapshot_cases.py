"""Saved snapshots: the cases of ``tests/cases/`` give exactly their saved plans, the file format
reads back exactly what it wrote, a malformed file is named with its field, and the real
``phorque-evaluate --snapshot`` command (tests/integration/test_snapshot_cli.py) plans on a file
without reading anything else."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phorque.adapters.snapshot_file import (
    SnapshotFileError,
    document,
    from_dict,
    parse_document,
    plan_rows,
    policy_from_section,
    policy_section,
    read_saved,
    to_dict,
    write_saved,
)
from phorque.core.model import (
    Chunk,
    CloudState,
    Health,
    Instance,
    InstanceState,
    Job,
    LaunchFailure,
    Node,
    Owned,
    Snapshot,
    Stage,
)
from phorque.core.plan import Kind
from phorque.policy.policies import CostAware, OnDemand
from tests.builders import cloud, job, snapshot
from tests.hostile.strategies import hostile_piece

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((ROOT / "tests" / "cases").glob("*.json"))


# -- the cases ----------------------------------------------------------------------------------------

def test_there_are_cases_for_the_main_decisions():
    assert len(CASES) >= 8
    kinds = {row["action"] for path in CASES for row in read_saved(str(path)).plan}
    assert {"launch", "join", "undrain", "drain", "terminate", "remove"} <= kinds
    policies = {read_saved(str(path)).policy["name"] for path in CASES}
    assert {"CostAware", "OnDemand", "OnDemandPlusPlus"} <= policies


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case_gives_its_saved_plan(path):
    saved = read_saved(str(path))
    policy = policy_from_section(saved.policy)
    plan = policy.plan(saved.snapshot)
    assert plan_rows(plan) == saved.plan
    assert list(plan.notes) == saved.notes
    assert saved.wake_saved and plan.wake_at == saved.wake_at
    assert saved.same_plan(plan)
    # The file is in the form this Phorque writes: nothing in it is read and then dropped.
    raw = json.loads(path.read_text())
    assert to_dict(saved.snapshot) == raw["snapshot"]
    assert policy_section(policy) == raw["policy"]


# -- the round trip ----------------------------------------------------------------------------------

_names = st.lists(hostile_piece, max_size=3).map(lambda parts: b"".join(parts).decode("utf-8", "surrogateescape"))
_small = st.integers(0, 2**53)
_times = st.none() | st.floats(allow_nan=False, allow_infinity=False)
_words = st.tuples(_names) | st.lists(_names, max_size=3).map(tuple)

_chunks = st.builds(Chunk, count=_small, ppn=_small, host=st.none() | _names, spread=st.booleans(),
                    mem_mb=_small, gpus=_small, properties=_words)
_jobs = st.builds(Job, id=_names, state=st.sampled_from(["Q", "R", "E", "H", "C"]) | _names, queue=_names,
                  cores=st.integers(-5, 10**6), chunks=st.lists(_chunks, max_size=3).map(tuple),
                  walltime_secs=st.none() | _small, remaining_secs=st.none() | st.integers(-10, 10**6),
                  name=_names, owner=_names, exec_hosts=_words, queued_at=_times, started_at=_times,
                  gpus=_small, comment=_names, mem_mb=_small, pmem_mb=_small, vmem_mb=_small,
                  pvmem_mb=_small, rerunnable=st.none() | st.booleans(), request2=st.booleans())
_nodes = st.builds(Node, name=_names, np=_small, state=st.frozensets(
    st.sampled_from(["free", "down", "offline", "job-exclusive", "state-unknown"]) | _names, max_size=3),
    jobs=_words, used_slots=_small, properties=_words, note=_names, mem_mb=_small, gpus=_small)
_instances = st.builds(Instance, id=_names, state=st.sampled_from(list(InstanceState)), lifecycle=_names,
                       dns=st.none() | _names, private_dns=st.none() | _names, launch_time=_times,
                       interruption=_names)
_clouds = st.builds(
    CloudState, name=_names, price=st.floats(allow_nan=False, allow_infinity=False), instance_cores=_small,
    max_instances=_small, charge_time_secs=_small, boot_secs=_small, boot_timeout_secs=_small, desired=_small,
    instances=st.lists(_instances, max_size=3).map(tuple), health=st.sampled_from(list(Health)),
    backoff_until=_times, error=_names, node_properties=_words, instance_memory_mb=_small,
    instance_gpus=_small, queues=st.none() | st.frozensets(_names, max_size=3),
    launch_failure=st.none() | st.builds(LaunchFailure, id=_names, code=_names, message=_names),
    spot=st.booleans())
_owned = st.builds(Owned, instance_id=_names, cloud=_names, stage=st.sampled_from(list(Stage)),
                   node=st.none() | _names, first_seen=_times, launch_time=_times, joined_at=_times,
                   idle_since=_times, drain_started=_times, down_since=_times, updated_at=_times)
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                     | _names, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_names, inner, max_size=3),
                     max_leaves=10)
_snapshots = st.builds(
    Snapshot, now=st.floats(allow_nan=False, allow_infinity=False), jobs=st.lists(_jobs, max_size=3).map(tuple),
    nodes=st.lists(_nodes, max_size=3).map(tuple), clouds=st.lists(_clouds, max_size=2).map(tuple),
    owned=st.lists(_owned, max_size=2).map(tuple), memory=st.dictionaries(_names, _json, max_size=3),
    torque_ok=st.booleans(), recorded_nodes=st.frozensets(_names, max_size=3),
    gone_nodes=st.dictionaries(_names, _names, max_size=3))


@settings(max_examples=200, deadline=None)
@given(_snapshots)
def test_round_trip_is_exact(snap):
    data = to_dict(snap)
    back = from_dict(json.loads(json.dumps(data)))  # through JSON text, as a file holds it
    assert back == snap
    # What equality does not compare: the kinds of the values, and the derived fields.
    assert to_dict(back) == data
    for mine, theirs in zip(back.nodes, snap.nodes, strict=True):
        assert (mine.free_cores, mine.is_idle, mine.is_usable) == (theirs.free_cores, theirs.is_idle, theirs.is_usable)
    for mine, theirs in zip(back.clouds, snap.clouds, strict=True):
        assert mine.capacity == theirs.capacity and mine.queues == theirs.queues
        assert type(mine.instances) is tuple and type(mine.price) is float


def test_round_trip_keeps_what_equality_might_blur():
    every = CloudState("a", 0.1, 4, 2, queues=None)
    none = CloudState("b", 0.1, 4, 2, queues=frozenset())
    snap = Snapshot(now=1.5, clouds=(every, none), recorded_nodes=frozenset({"b", "a"}))
    data = json.loads(json.dumps(to_dict(snap)))
    assert data["clouds"][0]["queues"] is None and data["clouds"][1]["queues"] == []
    assert data["recorded_nodes"] == ["a", "b"]
    back = from_dict(data)
    assert back.clouds[0].queues is None and back.clouds[1].queues == frozenset()
    assert back == snap
    # Derived caches are not data: a node's free cores follow from its fields.
    assert "free_cores" not in to_dict(Snapshot(now=0.0, nodes=(Node("n", 4),)))["nodes"][0]


def test_memory_that_json_would_change_is_refused():
    with pytest.raises(TypeError, match=r"snapshot\.memory\.k"):
        to_dict(Snapshot(now=0.0, memory={"k": (1, 2)}))


# -- malformed files ----------------------------------------------------------------------------------

def _good() -> dict:
    snap = snapshot(jobs=[job("1.srv", nodes=((1, 4),))], clouds=[cloud("hotel")])
    policy = CostAware(price_per_hour=10.0)
    return document(snap, policy, policy.plan(snap), "a test")


def _set(data: dict, path: list, value) -> dict:
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize("path,value,field,words", [
    (["format"], 2, "format", "unknown format 2"),
    (["format"], KeyError, "format", "missing field"),
    (["snapshot"], KeyError, "snapshot", "missing field"),
    (["snapshot", "now"], KeyError, "snapshot.now", "missing field"),
    (["snapshot", "now"], "soon", "snapshot.now", 'expected a number, got "soon"'),
    (["snapshot", "jobs", 0, "cores"], "4", "snapshot.jobs[0].cores", 'expected an integer, got "4"'),
    (["snapshot", "jobs", 0, "cores"], True, "snapshot.jobs[0].cores", "expected an integer, got true"),
    (["snapshot", "jobs", 0, "chunks"], {}, "snapshot.jobs[0].chunks", "expected a list, got an object"),
    (["snapshot", "jobs", 0, "colour"], "red", "snapshot.jobs[0].colour", "unknown field of Job"),
    (["snapshot", "clouds", 0, "health"], "fine", "snapshot.clouds[0].health", "expected one of ok, backoff"),
    (["snapshot", "clouds", 0, "queues"], "batch", "snapshot.clouds[0].queues", "expected a list"),
    (["snapshot", "torque_ok"], 1, "snapshot.torque_ok", "expected true or false, got 1"),
    (["snapshot", "now"], 10**400, "snapshot.now", "too large for a number"),
    (["snapshot", "memory"], [], "snapshot.memory", "expected an object, got a list"),
    (["policy", "name"], "Nope", "policy.name", "no policy named 'Nope'"),
    (["policy", "options", "walltime_aware"], 1, "policy.options.walltime_aware", "expected a bool"),
    (["policy", "options", "scale_in_margin_secs"], -1, "policy.options.scale_in_margin_secs", "below the minimum"),
    (["policy", "options", "stall_limit"], 3, "policy.options.stall_limit", "not an option of CostAware"),
    (["policy", "multiplier"], 0, "policy.multiplier", "below the minimum 1"),
    (["plan"], {}, "plan", "expected a list, got an object"),
    (["plan", 0, "action"], "explode", "plan[0].action", "expected one of launch, cancel, join"),
    (["plan", 0, "count"], "1", "plan[0].count", "expected an integer"),
    (["notes"], [3], "notes[0]", "expected a string, got 3"),
    (["wake_at"], "soon", "wake_at", "expected a number"),
    (["extra"], 1, "extra", "unknown field"),
])
def test_malformed_file_names_file_and_field(tmp_path, path, value, field, words):
    file = tmp_path / "case.json"
    file.write_text(json.dumps(_set(_good(), path, value)))
    with pytest.raises(SnapshotFileError) as caught:
        read_saved(str(file))
    assert caught.value.path == str(file) and caught.value.where == field
    assert str(caught.value).startswith(f"{file}: {field}: ")
    assert words in str(caught.value)


@pytest.mark.parametrize("text,words", [
    ("{", "not JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    ("", "not JSON"),
    ("[1]", "expected a JSON object, got a list"),
    ('{"format": 1, "now": NaN}', "not JSON: NaN is not a finite number"),
    ("[" * 100_000, "not JSON"),
])
def test_unreadable_json(tmp_path, text, words):
    file = tmp_path / "bad.json"
    file.write_text(text)
    with pytest.raises(SnapshotFileError, match=str(file)) as caught:
        read_saved(str(file))
    assert words in str(caught.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(SnapshotFileError, match="cannot read: No such file"):
        read_saved(str(tmp_path / "none.json"))
    (tmp_path / "bin.json").write_bytes(b'{"format": 1, "x": "\xff"}')
    with pytest.raises(SnapshotFileError, match="not UTF-8"):
        read_saved(str(tmp_path / "bin.json"))


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "s.json"
    target.write_text("old")
    data = _good()
    write_saved(str(target), data)
    assert json.loads(target.read_text()) == data
    assert os.listdir(tmp_path) == ["s.json"]
    with pytest.raises(ValueError):
        write_saved(str(target), {**data, "now": float("nan")})
    assert json.loads(target.read_text()) == data  # the old file is whole
    assert os.listdir(tmp_path) == ["s.json"]


def test_parse_document_of_what_document_wrote():
    data = json.loads(json.dumps(_good()))
    saved = parse_document(data)
    assert saved.description == "a test" and saved.plan == data["plan"] and saved.notes == data["notes"]
    assert saved.plan and saved.plan[0]["action"] == Kind.LAUNCH.value


def test_the_wake_up_is_part_of_the_saved_plan():
    saved = read_saved(str(ROOT / "tests" / "cases" / "idle_mid_period.json"))
    plan = policy_from_section(saved.policy).plan(saved.snapshot)
    assert saved.wake_at == plan.wake_at == saved.snapshot.now + 1800 - 120  # the drain moment
    assert not saved.same_plan(replace(plan, wake_at=plan.wake_at + 60))
    # A file saved before the wake-up was written is compared on its actions and notes.
    data = json.loads((ROOT / "tests" / "cases" / "idle_mid_period.json").read_text())
    del data["wake_at"]
    older = parse_document(data)
    assert not older.wake_saved and older.same_plan(replace(plan, wake_at=None))


def test_policy_of_the_file_is_built_as_configured():
    policy = policy_from_section(policy_section(OnDemand(price_per_hour=1.5, multiplier=3,
                                                         queues=frozenset({"b", "a"}), idle_secs=30)))
    assert isinstance(policy, OnDemand)
    assert (policy.price_per_hour, policy.multiplier, policy.queues, policy.options) == (
        1.5, 3, frozenset({"a", "b"}), {"idle_secs": 30})
