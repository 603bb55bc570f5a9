"""A configuration must not forget instances Phorque owns.

Removing a ``[Cloud-<Name>]`` section, replacing it, or pointing it at another group while the
state owns instances (or requests) there would orphan them: nothing would drain or terminate
them, and they would no longer count against ``price_per_hour``. Phorque cannot drain them
itself under such a configuration: the credentials and endpoint that reach the old group are
what was removed (and the state never holds credentials). So such a configuration is refused,
at start-up, on a reload (the running configuration is kept) and by ``phorque-evaluate``,
with a message saying why and what to do: put the section back, or release its instances first
(``phorque --release`` with the old configuration).
"""

from __future__ import annotations

from phorque.adapters.config import Config
from phorque.adapters.state import StateStore
from phorque.core.errors import ConfigError


def forgotten(config: Config, state: StateStore) -> list[str]:
    """Why ``config`` would forget instances the state owns; empty when it does not."""
    owned: dict[str, int] = {}
    for rec in state.owned():
        owned[rec.cloud] = owned.get(rec.cloud, 0) + 1
    for cloud, capacity in state.capacities().items():
        owned[cloud] = max(owned.get(cloud, 0), capacity)
    recorded = state.groups()
    named = {c.name: c.group_identity for c in config.clouds}
    out = []
    for cloud, count in sorted(owned.items()):
        if count <= 0:
            continue
        was = recorded.get(cloud)
        if cloud not in named:
            out.append(f"[Cloud-{cloud}] is gone, but Phorque owns {count} instance(s) or request(s) "
                       f"there{f' ({was})' if was else ''}")
        elif was is not None and was != named[cloud]:
            out.append(f"[Cloud-{cloud}] now reaches {named[cloud]}, but Phorque owns {count} "
                       f"instance(s) or request(s) in {was}")
    return out


def check_nothing_forgotten(config: Config, state: StateStore) -> None:
    """Raise ConfigError when ``config`` would orphan instances; else record its groups."""
    problems = forgotten(config, state)
    if problems:
        raise ConfigError(config.path, None, None,
                          "; ".join(problems) + ": they would be orphaned and spend outside "
                          "price_per_hour. Put the section back as it was, or release them first "
                          "(phorque --release with the configuration that names them)")
    state.save_groups({c.name: c.group_identity for c in config.clouds})
