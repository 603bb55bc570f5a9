"""The policy protocol: ``plan = policy.plan(snapshot)``, with no I/O, no clock and no globals.

A policy sees the snapshot through a :class:`~phorque.policy.view.View`. The shared lifecycle
rules (joins, boot timeouts, orphans) run first; the policy's :meth:`Policy.decide` adds the
launches and the scale-in, and may read what the lifecycle already handled.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from phorque.core.model import Snapshot
from phorque.core.options import Option
from phorque.core.plan import Action, Kind, Plan
from phorque.policy.lifecycle import Lifecycle, boot_poll_secs, lifecycle
from phorque.policy.view import View, ViewMemo

#: How many "this job can never run" notes a plan carries; the rest are counted.
NOTE_LIMIT = 20


@dataclass
class Decision:
    """A policy's own part of a plan."""

    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    wake_at: float | None = None

    def wake(self, at: float) -> None:
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)


def refused_notes(view: View) -> list[str]:
    """One note per job the server refuses to start (up to NOTE_LIMIT, the rest counted)."""
    refused = view.refused
    notes = [f"job {j.id} is not launched for: the scheduler cannot start it "
             f"(pbs_server: {j.refused_by_server})" for j in refused[:NOTE_LIMIT]]
    if len(refused) > NOTE_LIMIT:
        notes.append(f"... and {len(refused) - NOTE_LIMIT} more jobs the scheduler cannot start")
    return notes


class Policy(ABC):
    """Base of every policy.

    ``OPTIONS`` declares the ``[Policy]`` options a policy reads beyond ``name``,
    ``price_per_hour`` and ``multiplier``; the configuration loader checks them.
    ``queues`` limits the jobs that count (None: every queue); ``loop_sleep_secs`` is how often
    the daemon looks when nothing happens.
    """

    OPTIONS: ClassVar[dict[str, Option]] = {}
    SUMMARY: ClassVar[str] = ""

    def __init__(self, price_per_hour: float | None = None, multiplier: int = 1,
                 queues: frozenset[str] | None = None, loop_sleep_secs: int = 120, **options: Any):
        self.price_per_hour = price_per_hour
        self.multiplier = max(1, int(multiplier))
        self.queues = queues
        self.loop_sleep_secs = loop_sleep_secs
        unknown = set(options) - set(self.OPTIONS)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown option(s) {', '.join(sorted(unknown))}")
        self.options = {name: spec.default for name, spec in self.OPTIONS.items()}
        self.options.update(options)
        # Derived facts one evaluation hands to the next while they still hold (never a result).
        self._memo = ViewMemo()

    @property
    def name(self) -> str:
        return type(self).__name__

    def plan(self, snapshot: Snapshot) -> Plan:
        view = View(snapshot, self.queues, self._memo)
        life = lifecycle(view)
        decision = self.decide(view, life)
        for action in decision.actions:
            if action.kind == Kind.LAUNCH and action.cloud:
                # The new instances will not announce themselves: look again while they boot.
                decision.wake(snapshot.now + boot_poll_secs(snapshot.cloud(action.cloud)))
        notes = life.notes + decision.notes + refused_notes(view)
        return Plan(actions=tuple(life.actions + decision.actions), notes=tuple(notes),
                    memory={**life.memory, **decision.memory},
                    wake_at=min((t for t in (life.wake_at, decision.wake_at) if t is not None), default=None))

    @abstractmethod
    def decide(self, view: View, life: Lifecycle) -> Decision:
        """Launches and scale-in for this snapshot. Must not do I/O or read the clock."""
