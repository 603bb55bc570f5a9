"""Replaying several policies at once, one process each (``phorque-replay --jobs N``).

A replay is deterministic and shares nothing with another one, so the policies of one command can
run in separate processes: each worker gets the trace, the settings and a policy's name, builds the
policy as one process would and returns its :class:`~phorque.replay.metrics.ReplayResult`. The
results come back in the order the policies were given, so the tables and the JSON are those of
one process; only the ``run time`` column (each replay's own wall-clock time) may differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TextIO

from phorque.replay.metrics import ReplayResult
from phorque.replay.settings import ReplaySettings
from phorque.replay.sim import Progress, Simulation
from phorque.replay.trace import Trace


def replay_one(trace: Trace, settings: ReplaySettings, policy: str,
               progress: Progress | None = None) -> ReplayResult:
    """One policy over the trace (in this process)."""
    return Simulation(trace, settings.make_policy(policy), settings, progress).run()


def replay_all(trace: Trace, settings: ReplaySettings, policies: Sequence[str], jobs: int = 1,
               progress: Callable[[str], Progress | None] | None = None,
               stream: TextIO | None = None) -> list[ReplayResult]:
    """Every policy over the trace, in order. ``jobs`` > 1 replays up to that many at once in
    worker processes; then ``stream`` (if given) is told as each one ends, instead of the
    per-policy ``progress`` of a single process."""
    if jobs <= 1 or len(policies) <= 1:
        return [replay_one(trace, settings, name, progress(name) if progress else None) for name in policies]
    results: list[ReplayResult | None] = [None] * len(policies)
    began = time.monotonic()
    with ProcessPoolExecutor(max_workers=min(jobs, len(policies))) as pool:
        futures = {pool.submit(replay_one, trace, settings, name): k for k, name in enumerate(policies)}
        for done, future in enumerate(as_completed(futures), 1):
            k = futures[future]
            results[k] = future.result()
            if stream is not None:
                stream.write(f"{policies[k]}: replayed ({done} of {len(policies)}, "
                             f"{time.monotonic() - began:.1f} s)\n")
                stream.flush()
    return [r for r in results if r is not None]
