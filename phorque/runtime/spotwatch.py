"""Watching spot groups between evaluations: the cloud takes a spot instance back with two
minutes' notice, and nothing in Torque says so at once (pbs_server marks the node down only
minutes after its mom stops answering).

A thread describes each spot section's group every ``interruption_poll_secs`` (no lock: it only
reads) and fires the daemon's trigger when an instance shows EC2's spot state reason, or a live
instance it saw before has left the group. The evaluation that follows does the rest (offline,
requeue, remove, back off). Errors are logged once per cloud until it answers again: the
evaluations report a cloud that cannot be read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from phorque.adapters.cloud.factory import make_provider
from phorque.adapters.cloud.provider import CloudProvider
from phorque.adapters.config import CloudSettings
from phorque.core.errors import CloudError
from phorque.core.model import InstanceId
from phorque.runtime.triggers import Trigger

log = logging.getLogger("phorque.spotwatch")

REASON = "spot interruption"


class SpotWatch:
    """Polls the spot sections' groups; ``check()`` is one look (the thread calls it)."""

    def __init__(self, clouds: tuple[CloudSettings, ...], trigger: Trigger, every_secs: float,
                 make: Callable[[CloudSettings], CloudProvider] = make_provider):
        # Providers of its own: boto3 clients are not shared across threads.
        self.providers = {c.name: make(c) for c in clouds if c.spot}
        self.trigger = trigger
        self.every_secs = every_secs
        self._live: dict[str, set[InstanceId]] = {}
        self._taken: dict[str, set[InstanceId]] = {}
        self._failing: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> list[str]:
        """Look at every spot group once; fire the trigger for what changed. Returns the ids of
        the instances newly found taken back or gone."""
        found: list[str] = []
        for name, provider in self.providers.items():
            try:
                view = provider.describe()
            except CloudError as exc:
                if name not in self._failing:
                    log.info("cloud %s: cannot look for spot interruptions: %s", name, exc)
                    self._failing.add(name)
                continue
            self._failing.discard(name)
            taken = {i.id for i in view.instances if i.interruption}
            live = {i.id for i in view.live if i.id}
            listed = {i.id for i in view.instances}
            vanished = self._live.get(name, set()) - listed
            new = (taken - self._taken.get(name, set())) | vanished
            self._taken[name], self._live[name] = taken, live
            if new:
                log.warning("cloud %s: instance(s) %s taken back by the cloud", name, ", ".join(sorted(new)))
                found.extend(sorted(new))
        if found:
            self.trigger.fire(REASON)
        return found

    def start(self) -> None:
        if not self.providers or self.every_secs <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="spot-watch", daemon=True)
        self._thread.start()
        log.info("watching %d spot group(s) for interruptions every %g s", len(self.providers),
                 self.every_secs)

    def _run(self) -> None:
        while not self._stop.wait(self.every_secs):
            try:
                self.check()
            except Exception:  # never let the watch die: the evaluations go on without it
                log.exception("spot watch: unexpected error")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
