"""What a replay simulates: the local cluster, the clouds, the budget, the scheduler and how
often the policy is evaluated. Built from ``phorque.conf`` or from the defaults below.

Without a configuration file a replay uses two clouds with hourly billing and a 120 s boot:
``cheap`` (0.05 per hour, 8 cores, at most 16 instances) and ``dear`` (0.20 per hour, 8 cores,
at most 64), no budget limit, evaluations on events (``event_delay_secs`` 0.2) plus every
``loop_sleep_secs`` (120), and pbs_sched's FIFO.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from phorque.adapters.config import Config
from phorque.core.model import CloudState
from phorque.policy import policy_class
from phorque.policy.base import Policy
from phorque.replay.scheduler import DISCIPLINES

MODES = ("events", "poll")

DEFAULT_CLOUDS = (
    CloudState(name="cheap", price=0.05, instance_cores=8, max_instances=16, charge_time_secs=3600,
               boot_secs=120),
    CloudState(name="dear", price=0.20, instance_cores=8, max_instances=64, charge_time_secs=3600,
               boot_secs=120),
)

#: Node size of the local cluster when only the trace's machine size is known.
DEFAULT_NODE_CORES = 8


@dataclass(frozen=True)
class ReplaySettings:
    """Everything but the trace and the policy. ``clouds`` are kept cheapest first."""

    clouds: tuple[CloudState, ...] = DEFAULT_CLOUDS
    local_nodes: int | None = None
    local_np: int | None = None
    #: Each static node's memory in MiB (0: unknown, never a limit), GPUs and properties.
    local_mem_mb: int = 0
    local_gpus: int = 0
    local_properties: tuple[str, ...] = ()
    scheduler: str = "fifo"
    mode: str = "events"
    loop_sleep_secs: float = 120.0
    event_delay_secs: float = 0.2
    #: Seconds a joined node stays down before its pbs_mom reports (0: free at once).
    mom_delay_secs: float = 0.0
    #: Skip a periodic evaluation when nothing happened since the last one and no wake-up is
    #: due (see the README's Replay section); False evaluates at every period.
    skip_idle: bool = True
    price_per_hour: float | None = None
    multiplier: int = 1
    queues: frozenset[str] | None = None
    #: Options for policies by name (``[Policy]`` options of the configured policy).
    policy_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: After the last submit, the replay stops at the latest this many days later.
    drain_limit_days: float = 30.0
    #: About how many points the queue and instance curves keep.
    samples: int = 2000
    #: Spot interruptions: each running instance of a spot cloud is taken back at an exponential
    #: time of this rate per instance-hour (0: never), drawn from ``seed`` and its id.
    spot_interruptions_per_hour: float = 0.0
    seed: int = 0
    #: The share of the trace's jobs that are rerunnable (``qsub -r y``), chosen by job number
    #: from ``seed``: a job that is not is lost when its spot node is taken back, and never
    #: launches spot capacity.
    rerunnable_fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.scheduler not in DISCIPLINES:
            raise ValueError(f"scheduler {self.scheduler!r}: expected one of {', '.join(DISCIPLINES)}")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.loop_sleep_secs <= 0:
            raise ValueError("loop_sleep_secs must be > 0")
        if self.event_delay_secs < 0 or self.mom_delay_secs < 0:
            raise ValueError("event_delay_secs and mom_delay_secs must be >= 0")
        if self.local_mem_mb < 0 or self.local_gpus < 0:
            raise ValueError("local_mem_mb and local_gpus must be >= 0")
        rate, share = self.spot_interruptions_per_hour, self.rerunnable_fraction
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError(f"spot interruptions per hour {rate!r}: must be a number >= 0")
        if not (math.isfinite(share) and 0 <= share <= 1):
            raise ValueError(f"rerunnable fraction {share!r}: must be between 0 and 1")
        names = [c.name for c in self.clouds]
        if len(set(names)) != len(names):
            raise ValueError(f"cloud names must differ: {', '.join(names)}")
        ordered = tuple(sorted(self.clouds, key=lambda c: c.price))
        if ordered != self.clouds:
            object.__setattr__(self, "clouds", ordered)

    @property
    def spot(self) -> bool:
        """Is any cloud a spot section?"""
        return any(c.spot for c in self.clouds)

    def with_charge(self, secs: int) -> ReplaySettings:
        """Every cloud billed per ``secs`` (0: per second)."""
        return replace(self, clouds=tuple(replace(c, charge_time_secs=secs) for c in self.clouds))

    def with_boot(self, secs: int) -> ReplaySettings:
        return replace(self, clouds=tuple(replace(c, boot_secs=secs) for c in self.clouds))

    def local_cluster(self, max_cores: int | None, trace_nodes: int | None = None,
                      trace_np: int | None = None) -> tuple[int, int]:
        """``(nodes, cores per node)`` of the static cluster. What is not set here comes from the
        trace's machine: its nodes and their size when known (accounting logs), else its size
        ``max_cores`` cut into nodes of up to 8 cores. Raises ValueError when nothing says how
        big it is."""
        nodes, np = self.local_nodes, self.local_np
        if nodes is not None and np is not None:
            return nodes, np
        if trace_nodes and trace_np:
            return (nodes or trace_nodes), (np or trace_np)
        if max_cores is None:
            if nodes is not None:
                return nodes, DEFAULT_NODE_CORES
            raise ValueError("the trace does not say how big its machine was: give --local-nodes "
                             "(and --local-np)")
        if np is not None:
            return max(1, -(-max_cores // np)), np
        if nodes is not None:
            return nodes, max(1, -(-max_cores // nodes))
        size = max(d for d in range(1, DEFAULT_NODE_CORES + 1) if max_cores % d == 0)
        return max_cores // size, size

    def make_policy(self, name: str) -> Policy:
        """The policy called ``name`` with the budget, multiplier, queues and its options."""
        cls = policy_class(name)
        return cls(price_per_hour=self.price_per_hour, multiplier=self.multiplier, queues=self.queues,
                   loop_sleep_secs=int(self.loop_sleep_secs), **dict(self.policy_options.get(name, {})))


def settings_from_config(config: Config, **overrides: Any) -> ReplaySettings:
    """Replay settings from a loaded ``phorque.conf``: its clouds, budget, multiplier, queues,
    the configured policy's options, ``loop_sleep_secs``, ``event_delay_secs`` and
    ``watch_files`` (false: the original's polling)."""
    values: dict[str, Any] = dict(
        clouds=tuple(c.state() for c in config.clouds),
        mode="events" if config.phorque.watch_files else "poll",
        loop_sleep_secs=float(config.phorque.loop_sleep_secs),
        event_delay_secs=config.phorque.event_delay_secs,
        price_per_hour=config.policy.price_per_hour,
        multiplier=config.policy.multiplier,
        queues=config.phorque.queues,
        policy_options={config.policy.name: dict(config.policy.options)},
    )
    values.update(overrides)
    return ReplaySettings(**values)
