"""The state store's instance records, in memory, as the replay keeps them."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from phorque.core.model import InstanceId, Owned, Stage


class OwnedBook:
    """The state store's instance records, in memory."""

    def __init__(self) -> None:
        self.records: dict[str, Owned] = {}
        self.version = 0

    def save(self, records: list[Owned], now: float) -> None:
        for rec in records:
            self._keep(_changed(rec, updated_at=now))
        if records:
            self.version += 1

    def _keep(self, rec: Owned) -> None:
        if rec.stage == Stage.GONE:
            self.records.pop(rec.instance_id, None)  # the store never reads them back
        else:
            self.records[rec.instance_id] = rec

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
