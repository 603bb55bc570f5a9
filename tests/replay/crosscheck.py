"""The cross-check's cases, and one comparison: ``phorque-replay`` (through
:func:`phorque.replay.replay`) against the independent :mod:`tests.replay.reference_sim` on the
same window of a trace, each reading the SWF file itself.

Used by ``tests/replay/test_replay_crosscheck.py`` and ``bench/replay_crosscheck.py``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from phorque.core.model import CloudState
from phorque.replay import ReplaySettings, Simulation
from phorque.replay.metrics import ReplayResult
from phorque.replay.swf import read_swf
from phorque.replay.trace import Window
from tests.replay import reference_sim as ref

TRACES = Path(os.environ.get("PHORQUE_TRACES", "/work/shared/traces"))


@dataclass(frozen=True)
class TraceWindow:
    """A window of a trace, on a static cluster of ``nodes`` x 8 cores."""

    label: str
    file: str
    start_days: float
    days: float
    nodes: int


WINDOWS = (
    TraceWindow("KTH-SP2 d0+45", "KTH-SP2-1996-2.1-cln.swf.gz", 0, 45, 8),      # 64 local cores
    TraceWindow("HPC2N d588+7", "HPC2N-2002-2.1-cln.swf.gz", 588, 7, 15),       # 120 local cores
    TraceWindow("lublin_256 d0+25", "lublin_256.swf.gz", 0, 25, 32),            # 256 local cores
)
NP = 8


@dataclass(frozen=True)
class Clouds:
    """A set of clouds, as both simulators are told about them."""

    label: str
    clouds: tuple[ref.Cloud, ...]

    def states(self) -> tuple[CloudState, ...]:
        return tuple(CloudState(name=c.name, price=c.price, instance_cores=c.cores,
                                max_instances=c.max_instances, charge_time_secs=c.charge_secs,
                                boot_secs=int(c.boot_secs)) for c in self.clouds)

    def with_charge(self, secs: int, label: str) -> Clouds:
        return Clouds(label, tuple(replace(c, charge_secs=secs) for c in self.clouds))


DEFAULT = Clouds("default clouds, hourly", ref.DEFAULT_CLOUDS)
PER_SECOND = DEFAULT.with_charge(0, "default clouds, per second")
#: Two small clouds (16 + 16 cores): LaunchMax's instances do not cover the queue, so its waits
#: depend on when the cloud nodes join and on the scheduler using them.
SMALL = Clouds("2+2 instances, hourly", (ref.Cloud("cheap", 0.05, 8, 2), ref.Cloud("dear", 0.20, 8, 2)))


@dataclass(frozen=True)
class Case:
    window: TraceWindow
    policy: str
    clouds: Clouds = DEFAULT

    @property
    def id(self) -> str:
        return f"{self.window.label}/{self.policy}/{self.clouds.label}"


def cases() -> list[Case]:
    """What the test checks: every window under LocalOnly, OnDemand and OnDemandPlusPlus
    billed hourly and per second, and LaunchMax on the small clouds."""
    out = []
    for w in WINDOWS:
        out += [Case(w, ref.LOCAL_ONLY), Case(w, ref.ON_DEMAND), Case(w, ref.ON_DEMAND, PER_SECOND),
                Case(w, ref.ODPP), Case(w, ref.ODPP, PER_SECOND), Case(w, ref.LAUNCH_MAX, SMALL)]
    return out


@dataclass
class Row:
    case: Case
    replay: ReplayResult
    reference: ref.Figures
    jobs_replay: int
    #: Wall-clock seconds: reading the window of the trace, and simulating it.
    replay_read_secs: float
    replay_secs: float
    reference_read_secs: float
    reference_secs: float
    #: Jobs that started at another moment (or only in one of the two), by job number.
    moved: list[int] = field(default_factory=list)

    def rel(self, ours: float, theirs: float) -> float:
        """Relative difference of the replay's figure against the reference's (0 when both are 0)."""
        if theirs == 0:
            return 0.0 if ours == 0 else float("inf")
        return abs(ours - theirs) / abs(theirs)

    @property
    def wait_rel(self) -> float:
        return self.rel(self.replay.mean_wait_secs, self.reference.mean_wait)

    @property
    def cost_rel(self) -> float:
        return self.rel(self.replay.cost, self.reference.cost)

    @property
    def hours_rel(self) -> float:
        return self.rel(self.replay.instance_hours, self.reference.instance_hours)


def compare(case: Case, *, replay_clouds: tuple[CloudState, ...] | None = None,
            replay_changes: dict[str, Any] | None = None) -> Row:
    """Run both on ``case``. ``replay_clouds`` and ``replay_changes`` (fields of
    :class:`ReplaySettings`) give the replay a set-up other than the reference's: a deliberate
    mistake, to show that the check notices it."""
    w = case.window
    path = TRACES / w.file
    t0 = time.perf_counter()
    trace = read_swf(path, Window(f"{w.start_days:g}", w.days))
    t1 = time.perf_counter()
    settings = ReplaySettings(local_nodes=w.nodes, local_np=NP,
                              clouds=replay_clouds or case.clouds.states())
    if replay_changes:
        settings = replace(settings, **replay_changes)
    sim = Simulation(trace, settings.make_policy(case.policy), settings, keep_jobs=True)
    result = sim.run()
    t2 = time.perf_counter()
    workload = ref.read_swf(str(path), w.start_days, w.days)
    t3 = time.perf_counter()
    figures = ref.simulate(workload, ref.Setup(w.nodes, NP, case.clouds.clouds), case.policy)
    t4 = time.perf_counter()
    row = Row(case, result, figures, len(trace.jobs), t1 - t0, t2 - t1, t3 - t2, t4 - t3)
    starts = {int(job.id.split(".")[0]): job.start for job in (sim.jobs or {}).values()}
    theirs = figures.starts
    row.moved = sorted(n for n in starts.keys() | theirs.keys() if _moved(starts.get(n), theirs.get(n)))
    return row


def _moved(ours: float | None, theirs: float | None) -> bool:
    if ours is None or theirs is None:
        return (ours is None) != (theirs is None)
    return abs(ours - theirs) > 1e-6
