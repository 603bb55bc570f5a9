"""Scaling policies: pure functions from a snapshot to a plan, chosen by ``[Policy] name``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from phorque.policy.base import Policy


# What make_policy reads of a configuration (phorque.adapters.config.Config has it): described
# here, so that the core does not import the adapter that reads the file.
class _PolicyValues(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def price_per_hour(self) -> float | None: ...
    @property
    def multiplier(self) -> int: ...
    @property
    def options(self) -> Mapping[str, Any]: ...


class _DaemonValues(Protocol):
    @property
    def queues(self) -> frozenset[str] | None: ...
    @property
    def loop_sleep_secs(self) -> int: ...


class PolicyConfig(Protocol):
    @property
    def policy(self) -> _PolicyValues: ...
    @property
    def phorque(self) -> _DaemonValues: ...


def registry() -> dict[str, type[Policy]]:
    """Every policy by its configuration name."""
    from phorque.policy import policies

    return {cls.__name__: cls for cls in policies.POLICIES}


def policy_class(name: str) -> type[Policy]:
    """The policy class called ``name``; KeyError (with the names available) if there is none."""
    found = registry()
    if name not in found:
        raise KeyError(f"no policy named {name!r} (available: {', '.join(sorted(found))})")
    return found[name]


def make_policy(config: PolicyConfig) -> Policy:
    """The policy a configuration names, with its options."""
    cls = policy_class(config.policy.name)
    return cls(price_per_hour=config.policy.price_per_hour, multiplier=config.policy.multiplier,
               queues=config.phorque.queues, loop_sleep_secs=config.phorque.loop_sleep_secs,
               **config.policy.options)


__all__ = ["Policy", "make_policy", "policy_class", "registry"]
