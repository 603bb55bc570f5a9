"""A test bed of in-memory ports: Torque, clouds, a clock and a state store, for component tests
of the executor and the engine (milliseconds each, no subprocess, no server)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from phorque.act.engine import Engine
from phorque.adapters.config import Config, load_config
from phorque.adapters.state import StateStore
from phorque.core.model import CloudState, Snapshot
from tests.fakes import FakeClock, MemoryCloud, MemoryTorque


def config_text(tmp_path: Path, clouds: dict[str, dict[str, object]], policy: str = "OnDemand",
                budget: str = "10", extra_policy: str = "") -> str:
    """A phorque.conf with these ``[Cloud-<name>]`` sections (options over the defaults below);
    the endpoints are never contacted, the providers are in memory."""
    sections = []
    for name, options in clouds.items():
        values: dict[str, object] = {
            "cloud_uri": "http://127.0.0.1:9", "autoscale_uri": "http://127.0.0.1:9",
            "access_id": "testing", "secret_key": "testing", "image_id": "ami-12c6146b",
            "autoscale_group_name": f"{name}-group", "launch_config_name": f"{name}-lc",
            "instance_type": "t3.medium", "instance_cores": 4, "max_instances": 3,
            "charge_time_secs": 3600, "price": 0.1, "boot_secs": 60}
        values.update(options)
        lines = "\n".join(f"{k} = {v}" for k, v in values.items())
        sections.append(f"[Cloud-{name}]\n{lines}\n")
    return textwrap.dedent(f"""
        [Phorque]
        state_dir = {tmp_path / 'state'}
        trigger_address =
        boot_timeout_secs = 900

        [Policy]
        name = {policy}
        price_per_hour = {budget}
        {extra_policy}
        """) + "\n".join(sections)


@dataclass
class Bed:
    """Torque, the clouds (in price order) and the clock an engine is built on."""

    tmp_path: Path
    clock: FakeClock = field(default_factory=FakeClock)
    torque: MemoryTorque = field(default_factory=MemoryTorque)
    clouds: dict[str, MemoryCloud] = field(default_factory=dict)
    config: Config | None = None
    state: StateStore = field(default_factory=lambda: StateStore(":memory:"))

    def configure(self, clouds: dict[str, dict[str, object]], **kwargs: str) -> Config:
        path = self.tmp_path / "phorque.conf"
        path.write_text(config_text(self.tmp_path, clouds, **kwargs))
        self.config = load_config(path, environ={})
        for settings in self.config.clouds:
            self.clouds[settings.name] = MemoryCloud(
                settings.name, self.clock, max_instances=settings.max_instances,
                boot_secs=settings.boot_secs)
        return self.config

    def engine(self, own_state: bool = False) -> Engine:
        """An engine on the bed's ports. ``own_state``: it opens the configured state file
        itself, on first use (so in the thread that uses it: sqlite connections stay in
        theirs), instead of sharing the bed's in-memory store."""
        assert self.config is not None, "configure() first"
        return Engine(self.config, torque=self.torque, providers=self.clouds,
                      state=None if own_state else self.state, clock=self.clock)

    def cloud_state(self, name: str) -> CloudState:
        """A cloud as a snapshot sees it now, from its group."""
        assert self.config is not None
        settings = next(c for c in self.config.clouds if c.name == name)
        group = self.clouds[name].group()
        return settings.state(desired=group.desired, instances=group.instances)

    def snapshot(self) -> Snapshot:
        """What Torque and the clouds say now (the executor's tests need no owned records)."""
        assert self.config is not None
        return Snapshot(now=self.clock(), jobs=tuple(self.torque.jobs_by_id.values()),
                        nodes=tuple(self.torque.nodes_by_name.values()),
                        clouds=tuple(self.cloud_state(c.name) for c in self.config.clouds))
