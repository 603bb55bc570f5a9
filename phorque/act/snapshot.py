"""Building a snapshot from what was read: the lifecycle records brought up to date, each spot
instance its group dropped put back as taken, and the nodes of gone instances that are still
Phorque's to remove.

The engine builds every snapshot with these two steps, and so does the replay on its simulated
world (:meth:`phorque.replay.world.World.snapshot`), so that a replay decides from what the
daemon would have seen. Neither step reads a clock or does I/O beyond the instance book it is
given (:class:`~phorque.core.ports.InstanceBook`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Container, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from phorque.core.model import (
    CloudState,
    Health,
    Instance,
    InstanceState,
    Job,
    Node,
    Owned,
    QueueIndex,
    Snapshot,
    Stage,
)
from phorque.core.observe import observe
from phorque.core.ports import InstanceBook

#: The interruption given to a spot instance that left its group without Phorque terminating it.
VANISHED = "gone from its spot group without Phorque terminating it"


@dataclass(frozen=True, slots=True)
class Observation:
    """The records before an observation and those it changed. ``complete``: every record was
    observed (else only those of the instances named, and the book holds the rest)."""

    previous: Sequence[Owned]
    changed: Sequence[Owned]
    complete: bool = True


#: No gone instance claims a node (one read-only mapping for every snapshot that has none).
_NO_GONE_NODES: Mapping[str, str] = MappingProxyType({})

#: A partial observation of no instance.
NOTHING = Observation((), (), complete=False)


def observe_all(now: float, clouds: tuple[CloudState, ...], nodes: Sequence[Node],
                book: InstanceBook) -> Observation:
    """Every record of the book, observed against the clouds and the nodes."""
    previous = list(book.owned())
    return Observation(previous, observe(now, clouds, nodes, previous, _ended(clouds, previous, book)))


def _ended(clouds: tuple[CloudState, ...], previous: Sequence[Owned], book: InstanceBook) -> Container[str]:
    """The gone members the groups still list whose record is gone too (asked of the book only
    when there are such members)."""
    listed = [i.id for c in clouds if c.health != Health.UNREACHABLE for i in c.instances
              if i.state == InstanceState.GONE and i.id]
    if not listed:
        return ()
    live = {o.instance_id for o in previous}
    listed = [i for i in listed if i not in live]
    return book.ended(listed) if listed else ()


def observe_some(now: float, clouds: tuple[CloudState, ...],
                 listed_nodes: Callable[[set[str]], Sequence[Node]], book: InstanceBook,
                 records: Mapping[str, Owned], ids: Collection[str]) -> Observation:
    """Only the instances named (their cloud state, node or record changed since the last
    observation, or they left their group), ``records`` being the book's live records by id and
    ``listed_nodes`` giving the nodes Torque lists of the names asked for.

    observe() judges each instance on its own (its state, its node, its record) and reaches a
    fixed point: observing an instance again when none of these changed returns nothing. So this
    gives the records that observing everything would, for a fraction of the work. A cloud that
    turns unreadable or readable again changes the judgement of all its instances: they must all
    be named then (the replay's clouds are always readable).
    """
    if not ids:
        return NOTHING
    # observe() reads a cloud's name, health and instances only: a bare CloudState of the named
    # instances (dataclasses.replace of every field costs more than the observation).
    sub = tuple(CloudState(c.name, c.price, c.instance_cores, c.max_instances, health=c.health,
                           instances=tuple(i for i in c.instances if i.id in ids)) for c in clouds)
    previous = [records[i] for i in ids if i in records]
    names: set[str] = {i.dns for c in sub for i in c.instances if i.dns}
    names.update(r.node for r in previous if r.node)
    return Observation(previous, observe(now, sub, listed_nodes(names), previous, _ended(sub, previous, book)),
                       complete=False)


def build(now: float, jobs: tuple[Job, ...], nodes: tuple[Node, ...], clouds: tuple[CloudState, ...],
          seen: Observation, book: InstanceBook, memory: Any, *, save: bool,
          listed: Container[str] | None = None,
          forgotten: Callable[[list[str]], None] | None = None,
          queue_index: QueueIndex | None = None) -> Snapshot:
    """The snapshot from what was read and observed. With ``save`` the observation is already
    in the book (as it must be when it is not ``complete``), and the names of gone instances'
    nodes that Torque no longer lists are released from it (and given to ``forgotten``).
    ``listed`` answers whether Torque lists a node (by default from ``nodes``); ``queue_index``
    is the live view's index of ``jobs``."""
    previous, changed = seen.previous, seen.changed
    just_gone: dict[str, str] = {}
    if changed:
        gone = [o for o in changed if o.stage == Stage.GONE]
        if gone:
            clouds = with_vanished_spot(clouds, previous, gone)
            just_gone = {o.instance_id: o.node for o in gone if o.node}
    if seen.complete:
        merged = {o.instance_id: o for o in previous}
        merged.update({o.instance_id: o for o in changed})
        owned = tuple(o for o in merged.values() if o.stage.is_live)
    else:
        if not save:
            raise ValueError("a partial observation must be saved before a snapshot is built from it")
        owned = tuple(book.owned())
    # Nodes Phorque created whose instance is gone: still its own to remove. Once Torque no
    # longer lists one, the record lets go of the name (a node made later with that name is
    # someone else's); a name missing from a bad read is only ever given up, never claimed.
    recorded = book.recorded_nodes()
    if just_gone:
        recorded = recorded | set(just_gone.values())
    if not recorded:
        return Snapshot(now=now, jobs=jobs, nodes=nodes, clouds=clouds, owned=owned, memory=memory,
                        gone_nodes=_NO_GONE_NODES, queue_index=queue_index)
    if listed is None:
        listed = {n.name for n in nodes}
    unlisted = sorted(n for n in recorded if n not in listed)
    if save and unlisted:
        book.forget_nodes(unlisted)
        if forgotten is not None:
            forgotten(unlisted)
    gone_nodes = {iid: node for iid, node in book.gone_nodes().items() if node in listed}
    gone_nodes.update({iid: node for iid, node in just_gone.items() if node in listed})
    return Snapshot(now=now, jobs=jobs, nodes=nodes, clouds=clouds, owned=owned, memory=memory,
                    recorded_nodes=frozenset(n for n in recorded if n in listed), gone_nodes=gone_nodes,
                    queue_index=queue_index)


def with_vanished_spot(clouds: tuple[CloudState, ...], previous: Sequence[Owned],
                       changed: Sequence[Owned]) -> tuple[CloudState, ...]:
    """The clouds, with each spot instance that Phorque owned live and that its group no longer
    lists put back as gone and taken by the cloud: the group drops a reclaimed instance within
    minutes, and its node's jobs must still be requeued."""
    if not any(rec.stage == Stage.GONE for rec in changed):
        return clouds
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
