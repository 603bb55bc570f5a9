"""Scaling policies: pure functions from a snapshot to a plan, chosen by ``[Policy] name``."""

from __future__ import annotations

from phorque.policy.base import Policy


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


def make_policy(config) -> Policy:
    """The policy a configuration names, with its options."""
    cls = policy_class(config.policy.name)
    return cls(price_per_hour=config.policy.price_per_hour, multiplier=config.policy.multiplier,
               queues=config.phorque.queues, loop_sleep_secs=config.phorque.loop_sleep_secs,
               **config.policy.options)


__all__ = ["Policy", "make_policy", "policy_class", "registry"]
