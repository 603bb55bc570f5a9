"""Invariants every policy keeps on random snapshots (hypothesis).

No plan drains, terminates or removes a node that runs a job; no plan touches a node Phorque does
not own (static nodes, nodes an administrator set offline); no plan asks for more than
``max_instances`` or spends above ``price_per_hour``; nothing is launched on a cloud in back-off.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phorque.core.model import Health, InstanceState, Node
from phorque.core.plan import Kind
from phorque.policy.policies import POLICIES
from phorque.policy.view import View, drain_note, join_note
from tests.builders import NOW, cloud, inst, job, node, owned, snapshot

STATES = st.sampled_from(["free", "job-exclusive", "down", "offline", "down,offline",
                          "offline,job-exclusive", "state-unknown,down", "busy"])


@st.composite
def snapshots(draw):
    statics = [node(f"static{k}", np=draw(st.integers(1, 16)), state=draw(STATES),
                    jobs=tuple(f"{k}{j}.s" for j in range(draw(st.integers(0, 2)))),
                    note=draw(st.sampled_from(["", "maintenance", "head node"])))
               for k in range(draw(st.integers(0, 4)))]
    clouds, nodes, records = [], list(statics), []
    for c in range(draw(st.integers(1, 3))):
        name = f"c{c}"
        cores = draw(st.integers(1, 8))
        insts = []
        for k in range(draw(st.integers(0, 5))):
            iid = f"i-{c}-{k}"
            state = draw(st.sampled_from(list(InstanceState)))
            dns = draw(st.sampled_from([None, f"{name}n{k}"]))
            insts.append(inst(iid, dns, state=state, age=draw(st.floats(0, 8000))))
            if dns and draw(st.booleans()):
                jobs = tuple(f"{c}{k}{j}.s" for j in range(draw(st.integers(0, 2))))
                kind = draw(st.sampled_from(["joined", "draining", "admin", "admin-own-note"]))
                note = {"joined": join_note(name, iid), "draining": drain_note("x"),
                        "admin": "disk failure", "admin-own-note": join_note(name, iid)}[kind]
                state_words = draw(STATES)
                if kind != "joined" and "offline" not in state_words:
                    state_words += ",offline"
                nodes.append(node(dns, np=cores, state=state_words, jobs=jobs, note=note))
                if draw(st.booleans()):
                    records.append(owned(iid, name, dns, idle_for=draw(st.sampled_from([None, 5.0, 5000.0]))))
        valid = sum(1 for i in insts if i.state.is_valid)
        max_instances = draw(st.integers(valid, valid + 6))
        desired = draw(st.integers(0, max_instances))
        clouds.append(cloud(name, price=draw(st.sampled_from([0.0, 0.1, 0.5, 2.0])), cores=cores,
                            max_instances=max_instances, desired=desired, instances=tuple(insts),
                            charge=draw(st.sampled_from([0, 60, 3600])),
                            health=draw(st.sampled_from([Health.OK, Health.OK, Health.BACKOFF,
                                                         Health.UNREACHABLE]))))
    clouds.sort(key=lambda c: c.price)
    jobs = []
    for k in range(draw(st.integers(0, 12))):
        shape = tuple(draw(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 10)), min_size=0, max_size=2)))
        jobs.append(job(f"{k}.q", cores=draw(st.integers(1, 20)), nodes=shape))
    return snapshot(jobs=jobs, nodes=nodes, clouds=clouds, owned=records)


def node_map(snap) -> dict[str, Node]:
    return {n.name: n for n in snap.nodes}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), st.sampled_from(POLICIES), st.sampled_from([None, 0.5, 3.0, 50.0]),
       st.integers(1, 3))
def test_invariants(snap, policy_cls, budget, multiplier):
    plan = policy_cls(price_per_hour=budget, multiplier=multiplier).plan(snap)
    view = View(snap)
    nodes = node_map(snap)
    dns_of = {i.id: i.dns for c in snap.clouds for i in c.instances}
    owned_names = view.owned_node_names
    for action in plan.actions:
        targets = {action.node} if action.node else set()
        if action.kind == Kind.TERMINATE and dns_of.get(action.instance):
            targets.add(dns_of[action.instance])
        for name in targets:
            n = nodes.get(name)
            if n is None:
                continue
            if action.kind in (Kind.DRAIN, Kind.TERMINATE, Kind.REMOVE):
                assert n.is_idle, f"{action} on a node with jobs {n.jobs}"
            if action.kind in (Kind.DRAIN, Kind.TERMINATE, Kind.REMOVE, Kind.UNDRAIN, Kind.JOIN):
                assert not name.startswith("static"), f"{action} touches a static node"
            if action.kind in (Kind.DRAIN, Kind.UNDRAIN, Kind.TERMINATE, Kind.REMOVE):
                assert name in owned_names
                admin = n.is_offline and n.note in ("disk failure",) and not any(
                    o.node == name for o in snap.owned)
                assert not admin, f"{action} touches a node an administrator set offline"
    launched = {c.name: 0 for c in snap.clouds}
    for action in plan.of(Kind.LAUNCH):
        launched[action.cloud] += action.count
        assert action.count > 0
    added = 0.0
    for c in snap.clouds:
        if launched[c.name]:
            assert c.health == Health.OK, f"launch on a cloud in {c.health}"
        assert c.capacity + launched[c.name] <= c.max_instances
        added += launched[c.name] * c.price
    if budget is not None and view.spend_rate <= budget:
        assert view.spend_rate + added <= budget + 1e-9


@settings(max_examples=150, deadline=None)
@given(snapshots(), st.sampled_from(POLICIES))
def test_plans_are_deterministic_and_do_not_mutate_the_snapshot(snap, policy_cls):
    before = repr(snap)
    first = policy_cls().plan(snap)
    second = policy_cls().plan(snap)
    assert first.actions == second.actions and first.notes == second.notes
    assert repr(snap) == before


def test_now_is_the_snapshot_clock():
    # The same snapshot at another "now" gives another decision: time is an input.
    c = cloud(instances=(inst("i-a", "a", age=1000),))
    snap_early = snapshot(nodes=(node("a", note=join_note("hotel", "i-a")),), clouds=[c])
    snap_late = snapshot(nodes=(node("a", note=join_note("hotel", "i-a")),), clouds=[c], now=NOW + 2500)
    policy = POLICIES[2]()
    assert policy.plan(snap_early).actions == ()
    assert policy.plan(snap_late).actions != ()
