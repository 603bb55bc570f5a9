"""Do the configured queues name the trace's jobs?

A configuration copied from production says ``queue_name = batch``; an SWF trace's queues are
numbers, and HPC2N's and KTH-SP2's jobs have none. Replayed as it is, no job would count, no
policy would launch, and every policy would look like LocalOnly at no cost. :func:`check_queues`
finds that before the replay: a refusal when no job could ever make a policy launch (by
``queue_name``, or because no cloud's ``queues`` serves a job that counts), a warning for each
configured queue that matches no job while others do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from phorque.core.model import CloudState

#: How a job without a queue is shown (SWF queue number -1).
NO_QUEUE = "(none)"


@dataclass
class QueueCheck:
    """What :func:`check_queues` found: lines to warn with, and the refusal, if any."""

    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def trace_queues(queues: Iterable[str], most: int = 5) -> str:
    """The queues of a trace with their job counts, the most common first, ``most`` at most:
    ``1 (12,004 jobs), 2 (310 jobs) and 3 more``."""
    counts = Counter(queues)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{name or NO_QUEUE} ({n:,} job{'s' if n != 1 else ''})" for name, n in ranked[:most])
    if len(ranked) > most:
        shown += f" and {len(ranked) - most} more"
    return shown or "none"


def _names(queues: Iterable[str]) -> str:
    return ", ".join(sorted(queues))


def check_queues(job_queues: Iterable[str], queues: frozenset[str] | None,
                 clouds: Iterable[CloudState], default_queue_hint: bool = True) -> QueueCheck:
    """Check ``queue_name`` (``queues``, None: every queue) and each cloud's ``queues`` against
    the queues of the trace's jobs (``job_queues``, one per job). ``default_queue_hint``: say
    that ``--default-queue`` names the jobs without a queue."""
    counts = Counter(job_queues)
    out = QueueCheck()
    if not counts:
        return out
    have = trace_queues(counts.elements())
    hint = ""
    if "" in counts and default_queue_hint:
        hint = f"; --default-queue NAME gives the {counts['']:,} jobs without one a queue"
    counted = set(counts) if queues is None else set(counts) & queues
    if queues is not None:
        missing = queues - set(counts)
        if not counted:
            out.error = (f"queue_name {_names(queues)} matches no job of the trace (its queues: {have}): "
                         f"no policy would launch an instance. Give --queue-name with the trace's "
                         f"queues, or '*' for every queue{hint}")
            return out
        if missing:
            out.warnings.append(f"queue_name: {_names(missing)} matches no job of the trace (its queues: "
                                f"{have}); only the jobs of {_names(counted)} count")
    clouds = list(clouds)
    serving = []
    for cloud in clouds:
        if cloud.queues is None:
            serving.append(cloud.name)
            continue
        served = cloud.queues & counted
        missing = cloud.queues - counted
        if missing:
            where = "the trace" if queues is None else "the trace that counts (queue_name)"
            also = (f"; it serves only {_names(served)}" if served else
                    ": it will never launch")
            out.warnings.append(f"[Cloud-{cloud.name}] queues: {_names(missing)} matches no job of "
                                f"{where} (its queues: {have}){also}")
        if served:
            serving.append(cloud.name)
    if clouds and not serving:
        out.error = (f"no cloud's queues match a job of the trace (its queues: {have}): no policy "
                     f"would launch an instance. Set the sections' queues to the trace's, or leave them empty "
                     f"for every queue{hint}")
        out.warnings = [w for w in out.warnings if not w.startswith("[Cloud-")]
    return out
