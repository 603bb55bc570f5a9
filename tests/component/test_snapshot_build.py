"""The snapshot building the engine and the replay share (phorque.act.snapshot).

The engine observes every record against the state store; the replay observes only the
instances touched since its last snapshot, against its in-memory book. Driven by the same
random changes, the two must build the same snapshot at every step: that is what lets a replay
decide from what the daemon would have seen.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phorque.act.snapshot import VANISHED, build, observe_all, observe_some
from phorque.adapters.state import StateStore
from phorque.core.model import CloudState, Instance, InstanceState, Node, Snapshot, Stage
from phorque.replay.owned import OwnedBook
from tests.builders import NOW, cloud, inst, node

IDS = [f"i-{k}" for k in range(5)]
SPOT = {"i-3", "i-4"}  # the instances of the spot cloud
NODE_STATES = ["free", "job-exclusive", "down", "offline", "free,offline", "down,offline"]

#: One change: an instance's state (None: its group no longer lists it), its node's state
#: (None: Torque no longer lists it), or the executor moving its record to a stage.
_steps = st.lists(st.one_of(
    st.tuples(st.just("instance"), st.sampled_from(IDS), st.sampled_from([None, *InstanceState])),
    st.tuples(st.just("node"), st.sampled_from(IDS), st.sampled_from([None, *NODE_STATES])),
    st.tuples(st.just("stage"), st.sampled_from(IDS), st.sampled_from([Stage.DRAINING, Stage.TERMINATING])),
), min_size=1, max_size=25)


class World:
    """Two clouds (one of them spot) and their instances' nodes."""

    def __init__(self) -> None:
        self.instances: dict[str, InstanceState] = {}
        self.nodes: dict[str, str] = {}

    def clouds(self) -> tuple[CloudState, ...]:
        def listed(ids):
            return tuple(inst(i, dns=f"{i}.cloud" if s == InstanceState.RUNNING else None, state=s)
                         for i, s in self.instances.items() if i in ids)
        return (cloud("hotel", instances=listed(set(IDS) - SPOT)),
                replace(cloud("spot", price=0.05), spot=True, instances=listed(SPOT)))

    def node_models(self) -> tuple[Node, ...]:
        return tuple(node(name, state=state, jobs=("1.srv",) if state == "job-exclusive" else ())
                     for name, state in sorted(self.nodes.items()))


def _lookup(listed: dict[str, Node]):
    return lambda names: [listed[n] for n in names if n in listed]


def _views(snap: Snapshot):
    """What a policy reads of a snapshot, in an order that does not depend on the book."""
    owned = {o.instance_id: replace(o, updated_at=None) for o in snap.owned}
    return snap.clouds, owned, snap.recorded_nodes, dict(snap.gone_nodes)


@settings(max_examples=300, deadline=None)
@given(_steps)
def test_observing_the_touched_instances_builds_the_snapshot_observing_all_builds(steps):
    world = World()
    store = StateStore(":memory:")   # the engine's book, every record observed
    book = OwnedBook()               # the replay's, only the touched ones
    forgotten: list[list[str]] = []
    now = NOW
    for kind, iid, value in steps:
        now += 10
        touched = {iid}
        if kind == "instance":
            if value is None:
                world.instances.pop(iid, None)
            else:
                world.instances[iid] = value
        elif kind == "node":
            name = f"{iid}.cloud"
            if value is None:
                world.nodes.pop(name, None)
            else:
                world.nodes[name] = value
        else:  # the executor drains or terminates an instance it owns (a record of the snapshot's)
            if (rec := store.get(iid)) is not None and rec.stage.is_live:
                store.set_stage(iid, rec.cloud, value, now)
            if (rec := book.records.get(iid)) is not None and rec.stage.is_live:
                book.set_stage(iid, rec.cloud, value, now)
        clouds, nodes = world.clouds(), world.node_models()

        everything = observe_all(now, clouds, nodes, store)
        store.save(everything.changed, now)
        full = build(now, (), nodes, clouds, everything, store, {}, save=True, forgotten=forgotten.append)

        listed = {n.name: n for n in nodes}
        some = observe_some(now, clouds, _lookup(listed), book, book.records, touched)
        book.save(list(some.changed), now)
        partial = build(now, (), nodes, clouds, some, book, {}, save=True, listed=listed)

        assert _views(partial) == _views(full)


def test_a_gone_instance_keeps_its_listed_node_and_lets_go_of_an_unlisted_one():
    store = StateStore(":memory:")
    running = (cloud("hotel", instances=(inst("i-1", dns="n1"), inst("i-2", dns="n2"))),)
    nodes = (node("n1"), node("n2"))
    store.save(observe_all(NOW, running, nodes, store).changed, NOW)
    # Both instances are gone; Torque still lists n1 only.
    gone = (cloud("hotel"),)
    seen = observe_all(NOW + 60, gone, nodes[:1], store)
    assert sorted((o.instance_id, o.stage) for o in seen.changed) == [("i-1", Stage.GONE), ("i-2", Stage.GONE)]

    dry = build(NOW + 60, (), nodes[:1], gone, seen, store, {}, save=False)
    assert dry.owned == () and dry.recorded_nodes == {"n1"} and dict(dry.gone_nodes) == {"i-1": "n1"}

    store.save(list(seen.changed), NOW + 60)
    released: list[list[str]] = []
    snap = build(NOW + 60, (), nodes[:1], gone, seen, store, {}, save=True, forgotten=released.append)
    assert snap.recorded_nodes == {"n1"} and dict(snap.gone_nodes) == {"i-1": "n1"}
    assert released == [["n2"]] and store.gone_nodes() == {"i-1": "n1"}  # n2's name is let go

    # Once Torque no longer lists n1, its name is let go too, and nothing is left to remove.
    again = build(NOW + 120, (), (), gone, observe_all(NOW + 120, gone, (), store), store, {}, save=True,
                  forgotten=released.append)
    assert released[-1] == ["n1"] and again.recorded_nodes == frozenset() and not again.gone_nodes


def test_a_spot_instance_its_group_dropped_is_put_back_as_taken():
    book = OwnedBook()
    spot = replace(cloud("spot", instances=(inst("i-9", dns="n9"),)), spot=True)
    book.save(observe_all(NOW, (spot,), (node("n9"),), book).changed, NOW)
    dropped = (replace(spot, instances=()),)
    seen = observe_all(NOW + 30, dropped, (node("n9", state="down"),), book)
    book.save(list(seen.changed), NOW + 30)
    snap = build(NOW + 30, (), (node("n9", state="down"),), dropped, seen, book, {}, save=True)
    assert snap.clouds[0].instances == (Instance(id="i-9", state=InstanceState.GONE, interruption=VANISHED),)
    assert dict(snap.gone_nodes) == {"i-9": "n9"}  # its jobs are still to be requeued


def test_a_partial_observation_must_be_saved_first():
    book = OwnedBook()
    seen = observe_some(NOW, (cloud("hotel", instances=(inst("i-1"),)),), lambda names: [], book, book.records,
                        {"i-1"})
    with pytest.raises(ValueError, match="saved"):
        build(NOW, (), (), (), seen, book, {}, save=False)


def test_a_gone_member_its_group_still_lists_keeps_its_record_and_node_claim():
    # AWS lists a terminating member for minutes: its record, gone with the node it claims, is
    # neither made anew at each look nor stripped of its node.
    store = StateStore(":memory:")
    up = (cloud("hotel", instances=(inst("i-1", dns="n1"),)),)
    nodes = (node("n1", state="down"),)
    store.save(observe_all(NOW, up, nodes, store).changed, NOW)
    terminating = (cloud("hotel", instances=(inst("i-1", state=InstanceState.GONE),)),)
    first = observe_all(NOW + 5, terminating, nodes, store)
    assert [(o.stage, o.node) for o in first.changed] == [(Stage.GONE, "n1")]
    store.save(list(first.changed), NOW + 5)
    for later in (NOW + 10, NOW + 60):
        seen = observe_all(later, terminating, nodes, store)
        assert seen.changed == []
        snap = build(later, (), nodes, terminating, seen, store, {}, save=True)
        assert dict(snap.gone_nodes) == {"i-1": "n1"} and snap.recorded_nodes == {"n1"}
    assert store.get("i-1").first_seen == NOW
