"""The ``clouds`` part of ``phorque-status``: each cloud's group, instances and health.

A cloud that cannot be reached (or answers with an error) is listed with its error and health
``unreachable``; it never stops the rest of the status from being printed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from phorque.adapters.cloud.backoff import CloudHealthRecord, health_at
from phorque.adapters.cloud.factory import make_provider
from phorque.adapters.cloud.provider import CloudProvider
from phorque.adapters.config import CloudSettings, Config
from phorque.core.errors import CloudError, CloudUnreachable, StateError
from phorque.core.model import Health, Instance

log = logging.getLogger("phorque.cloud.status")


def iso_time(epoch: float | None) -> str | None:
    """``2024-05-01T12:00:00Z`` for an epoch time, None for None."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def instance_dict(inst: Instance) -> dict[str, Any]:
    """One instance as ``phorque-status --json`` shows it."""
    return {"id": inst.id, "state": inst.state.value, "lifecycle": inst.lifecycle,
            "dns": inst.dns, "private_dns": inst.private_dns,
            "launch_time": iso_time(inst.launch_time)}


def cloud_dict(settings: CloudSettings, provider: CloudProvider,
               record: CloudHealthRecord | None, now: float) -> dict[str, Any]:
    """One cloud's entry. Describe errors become ``health`` and ``error``; nothing is raised.

    ``health`` is ``unreachable`` when the endpoint did not answer, ``failed`` when it answered
    with an error, else what the health record says (``ok``, ``backoff`` or ``failed``).
    """
    out: dict[str, Any] = {
        "name": settings.name, "type": settings.cloud_type, "price": settings.price,
        "group": settings.autoscale_group_name, "desired": None,
        "max_instances": settings.max_instances, "instances": [], "health": Health.OK.value,
        "error": None, "backoff_until": None, "failures": 0,
    }
    if record is not None:
        out["health"] = health_at(record, now).value
        out["failures"] = record.failures
        if out["health"] != Health.OK.value:
            out["backoff_until"] = iso_time(record.backoff_until)
            out["error"] = record.last_error or None
    try:
        view = provider.describe()
    except CloudUnreachable as exc:
        out["health"], out["error"] = Health.UNREACHABLE.value, str(exc)
        return out
    except CloudError as exc:
        # It answered, but with an error (no such group, refused credentials, ...).
        out["health"], out["error"] = Health.FAILED.value, str(exc)
        return out
    out["desired"] = view.desired
    out["instances"] = [instance_dict(i) for i in view.instances]
    return out


def stored_health(config: Config) -> dict[str, CloudHealthRecord]:
    """The clouds' failure records kept in the state database (none when there is no database)."""
    path = config.phorque.state_path
    if not os.path.exists(path):
        return {}
    from phorque.adapters.state import StateStore  # only status needs it here

    try:
        store = StateStore(path)
        try:
            rows = store.health()
        finally:
            store.close()
    except StateError as exc:
        log.warning("cloud health not shown: %s", exc)
        return {}
    records = {}
    for name, row in rows.items():
        try:
            records[name] = CloudHealthRecord(**row)
        except TypeError:
            log.warning("cloud %s: unreadable health record %r", name, row)
    return records


def describe_clouds(config: Config, health: Mapping[str, CloudHealthRecord] | None = None,
                    now: float | None = None,
                    provider_for: Callable[[CloudSettings], CloudProvider] = make_provider,
                    ) -> list[dict[str, Any]]:
    """The ``clouds`` list of ``phorque-status --json``, in price order. Never raises for a cloud.

    Clouds are described in parallel, so an unreachable one costs its timeout once, not once
    per cloud.
    """
    when = time.time() if now is None else now
    records = health or {}

    def one(settings: CloudSettings) -> dict[str, Any]:
        try:
            return cloud_dict(settings, provider_for(settings), records.get(settings.name), when)
        except Exception as exc:  # a status line per cloud, whatever went wrong with one
            log.exception("cloud %s: cannot describe", settings.name)
            return {"name": settings.name, "type": settings.cloud_type, "price": settings.price,
                    "group": settings.autoscale_group_name, "desired": None,
                    "max_instances": settings.max_instances, "instances": [],
                    "health": Health.FAILED.value, "error": f"{type(exc).__name__}: {exc}",
                    "backoff_until": None}

    if not config.clouds:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(config.clouds)),
                            thread_name_prefix="phorque-status") as pool:
        return list(pool.map(one, config.clouds))


def render_clouds(clouds: list[dict[str, Any]], printable: Callable[[object, int], str]) -> list[str]:
    """The clouds as table lines for ``phorque-status`` (``printable`` escapes odd text)."""
    lines = [f"{'CLOUD':<16} {'TYPE':<8} {'PRICE':>7} {'DESIRED':>7} {'MAX':>5} {'LIVE':>5} HEALTH"]
    for cloud in clouds:
        live = sum(1 for i in cloud["instances"] if i["state"] in ("requested", "pending", "running"))
        desired = "--" if cloud["desired"] is None else cloud["desired"]
        lines.append(f"{printable(cloud['name'], 16):<16} {cloud['type']:<8} {cloud['price']:>7g} "
                     f"{desired:>7} {cloud['max_instances']:>5} {live:>5} {cloud['health']}")
        if cloud.get("backoff_until"):
            failures = cloud.get("failures") or 0
            lines.append(f"    backed off until {cloud['backoff_until']} after {failures} failure(s): "
                         "nothing is launched there until then")
        if cloud.get("error"):
            lines.append(f"    error: {printable(cloud['error'], 300)}")
    for cloud in clouds:
        if not cloud["instances"]:
            continue
        lines.append("")
        lines.append(f"{'INSTANCE (' + printable(cloud['name'], 16) + ')':<32} {'STATE':<10} "
                     f"{'LAUNCHED':<21} DNS")
        for inst in cloud["instances"]:
            lines.append(f"{printable(inst['id'] or '(requested)', 32):<32} {inst['state']:<10} "
                         f"{inst['launch_time'] or '--':<21} {printable(inst['dns'] or '--', 60)}")
    return lines
