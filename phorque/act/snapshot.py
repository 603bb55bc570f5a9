"""Building a snapshot from what was read: each spot instance its group dropped put back as
taken by the cloud."""

from __future__ import annotations

import dataclasses

from phorque.core.model import CloudState, Health, Instance, InstanceState, Owned, Stage

#: The interruption given to a spot instance that left its group without Phorque terminating it.
VANISHED = "gone from its spot group without Phorque terminating it"


def with_vanished_spot(clouds: tuple[CloudState, ...], previous: list[Owned],
                       changed: list[Owned]) -> tuple[CloudState, ...]:
    """The clouds, with each spot instance that Phorque owned live and that its group no longer
    lists put back as gone and taken by the cloud: the group drops a reclaimed instance within
    minutes, and its node's jobs must still be requeued."""
    before = {o.instance_id: o for o in previous}
    lost: dict[str, list[Instance]] = {}
    for rec in changed:
        old = before.get(rec.instance_id)
        if rec.stage == Stage.GONE and old is not None and old.stage not in (Stage.TERMINATING, Stage.GONE):
            lost.setdefault(rec.cloud, []).append(
                Instance(id=rec.instance_id, state=InstanceState.GONE, interruption=VANISHED))
    if not lost:
        return clouds
    out = []
    for cloud in clouds:
        listed = {i.id for i in cloud.instances}
        extra = [i for i in lost.get(cloud.name, ()) if i.id not in listed]
        out.append(dataclasses.replace(cloud, instances=cloud.instances + tuple(extra))
                   if cloud.spot and extra and cloud.health != Health.UNREACHABLE else cloud)
    return tuple(out)
