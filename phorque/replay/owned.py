"""The state store's instance records, in memory, as the replay keeps them: the instance book a
snapshot is built from (:class:`~phorque.core.ports.InstanceBook`) and the records the executor
keeps (through :class:`phorque.replay.ports.SimRecords`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from phorque.core.model import InstanceId, Owned, Stage


class OwnedBook:
    """The state store's instance records, in memory."""

    def __init__(self) -> None:
        #: The records of the instances that are not gone, by id.
        self.records: dict[str, Owned] = {}
        #: Each gone instance that still claims its node (as the store keeps a gone record's
        #: node until Torque no longer lists it), by id.
        self.gone: dict[str, str] = {}
        self.version = 0
        self._owned: tuple[int, tuple[Owned, ...]] = (-1, ())

    # -- the instance book -------------------------------------------------------------------
    def owned(self) -> tuple[Owned, ...]:
        version, cached = self._owned
        if version != self.version:
            cached = tuple(self.records.values())
            self._owned = (self.version, cached)
        return cached

    def save(self, records: Sequence[Owned], now: float) -> None:
        for rec in records:
            self._keep(_changed(rec, updated_at=now))
        if records:
            self.version += 1

    def ended(self, ids: Sequence[str]) -> set[str]:
        """Gone records are not kept, and the replay's groups list an instance as gone only
        after it was seen alive: every one of these without a record has a gone one."""
        records = self.records
        return {i for i in ids if i not in records}

    def recorded_nodes(self) -> set[str]:
        return set(self.gone.values()) if self.gone else set()

    def gone_nodes(self) -> dict[str, str]:
        return dict(self.gone)

    def forget_nodes(self, names: Sequence[str]) -> None:
        forgotten = set(names)
        for instance_id in [i for i, node in self.gone.items() if node in forgotten]:
            del self.gone[instance_id]

    def _keep(self, rec: Owned) -> None:
        if rec.stage == Stage.GONE:
            # Nothing but its node is ever read back (the store reads no gone record).
            self.records.pop(rec.instance_id, None)
            if rec.node:
                self.gone[rec.instance_id] = rec.node
            else:
                self.gone.pop(rec.instance_id, None)
        else:
            self.records[rec.instance_id] = rec
            self.gone.pop(rec.instance_id, None)

    def set_stage(self, instance_id: InstanceId, cloud: str, stage: Stage, now: float, **changes: Any) -> Owned:
        """As the store's: the record with its new stage (one made if there was none), saved
        with the time of the change."""
        rec = self.records.get(instance_id) or Owned(instance_id=instance_id, cloud=cloud, stage=stage,
                                                     first_seen=now)
        rec = _changed(rec, stage=stage, updated_at=now, **changes)
        self._keep(rec)
        self.version += 1
        return rec


_OWNED_FIELDS = tuple(f.name for f in fields(Owned))


def _changed(rec: Owned, **changes: Any) -> Owned:
    """``dataclasses.replace(rec, **changes)`` without its checks of every field, for the
    records the replay stamps at every change."""
    values = {name: getattr(rec, name) for name in _OWNED_FIELDS}
    values.update(changes)
    return Owned(**values)
