"""Bringing the state store's lifecycle records up to date with what was just observed.

Pure: given the clouds' instances, Torque's nodes and the previous records, it returns the
records that changed. The daemon saves them; the replay simulator keeps them in memory. An
instance missing from a cloud that could not be read is not "gone": nothing is concluded from
a failed read.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import replace

from phorque.core.model import CloudState, Health, InstanceState, Node, Owned, Stage

_HELD = (Stage.DRAINING, Stage.TERMINATING)


def _observe_one(now: float, rec: Owned, state: InstanceState, node: Node | None) -> Owned:
    if state == InstanceState.GONE:
        return replace(rec, stage=Stage.GONE)
    if state == InstanceState.FAILED and rec.stage not in _HELD:
        return replace(rec, stage=Stage.FAILED)
    if node is None:
        if rec.stage in _HELD:
            return rec
        if rec.joined_at is not None:
            # A node that joined and is not in this read: missing since now (it may be a bad
            # read); the lifecycle rules wait before they conclude anything.
            return replace(rec, down_since=rec.down_since if rec.down_since is not None else now)
        stage = Stage.REQUESTED if state == InstanceState.REQUESTED else Stage.BOOTING
        return replace(rec, stage=stage, idle_since=None)
    if rec.node != node.name:
        rec = replace(rec, node=node.name)
    if node.is_down:
        if rec.joined_at is None:
            return rec if rec.stage in _HELD else replace(rec, stage=Stage.BOOTING)
        return replace(rec, down_since=rec.down_since if rec.down_since is not None else now)
    joined_at = rec.joined_at if rec.joined_at is not None else now
    idle = node.is_idle
    idle_since = (rec.idle_since if rec.idle_since is not None else now) if idle else None
    stage = rec.stage
    if stage not in _HELD or not node.is_offline:
        # A drain put back (its node is no longer offline). A failed instance is failed again:
        # observing it once more must change nothing (the replay observes only what changed).
        stage = Stage.FAILED if state == InstanceState.FAILED else Stage.IDLE if idle else Stage.BUSY
    return replace(rec, stage=stage, joined_at=joined_at, idle_since=idle_since, down_since=None)


def observe(now: float, clouds: Iterable[CloudState], nodes: Iterable[Node],
            previous: Iterable[Owned], ended: Container[str] = ()) -> list[Owned]:
    """Records that are new or changed after this observation. ``ended``: instances whose record
    is already gone. A group lists a gone member a while longer (AWS shows a terminating one for
    minutes): its record, and the node it still claims, are not made anew."""
    by_id = {rec.instance_id: rec for rec in previous}
    by_name = {n.name: n for n in nodes}
    changed: list[Owned] = []
    seen: set[str] = set()
    readable: set[str] = set()
    for cloud in clouds:
        if cloud.health == Health.UNREACHABLE:
            continue
        readable.add(cloud.name)
        for inst in cloud.instances:
            if not inst.id:
                continue
            seen.add(inst.id)
            rec = by_id.get(inst.id)
            if rec is None:
                if inst.state == InstanceState.GONE and inst.id in ended:
                    continue
                rec = Owned(instance_id=inst.id, cloud=cloud.name, stage=Stage.REQUESTED, first_seen=now)
            if rec.launch_time is None and inst.launch_time is not None:
                rec = replace(rec, launch_time=inst.launch_time)
            name = inst.node_name or rec.node
            new = _observe_one(now, rec, inst.state, by_name.get(name) if name else None)
            if new != by_id.get(inst.id):
                changed.append(new)
    for rec in by_id.values():
        if rec.instance_id not in seen and rec.cloud in readable and rec.stage != Stage.GONE:
            changed.append(replace(rec, stage=Stage.GONE))
    return changed
