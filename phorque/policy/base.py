"""The policy protocol: ``plan = policy.plan(snapshot)``, with no I/O, no clock and no globals."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from phorque.model import Snapshot
from phorque.options import Option
from phorque.plan import Plan


class Policy(ABC):
    """Base of every policy.

    ``OPTIONS`` declares the ``[Policy]`` options a policy reads beyond ``name``,
    ``price_per_hour`` and ``multiplier``; the configuration loader checks them.
    """

    OPTIONS: ClassVar[dict[str, Option]] = {}

    def __init__(self, price_per_hour: float | None = None, multiplier: int = 1,
                 **options: Any):
        self.price_per_hour = price_per_hour
        self.multiplier = multiplier
        unknown = set(options) - set(self.OPTIONS)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown option(s) {', '.join(sorted(unknown))}")
        self.options = {name: spec.default for name, spec in self.OPTIONS.items()}
        self.options.update(options)

    @property
    def name(self) -> str:
        return type(self).__name__

    @abstractmethod
    def plan(self, snapshot: Snapshot) -> Plan:
        """Decide what to do. Must not do I/O, read the clock or keep hidden state."""
