"""The policies, one class each; ``[Policy] name`` picks one by class name."""

from __future__ import annotations

from phorque.model import Snapshot
from phorque.plan import Plan
from phorque.policy.base import Policy


class OnDemandPlusPlus(Policy):
    def plan(self, snapshot: Snapshot) -> Plan:
        return Plan()


class OnDemand(Policy):
    def plan(self, snapshot: Snapshot) -> Plan:
        return Plan()


class CostAware(Policy):
    def plan(self, snapshot: Snapshot) -> Plan:
        return Plan()


POLICIES: tuple[type[Policy], ...] = (OnDemandPlusPlus, OnDemand, CostAware)
