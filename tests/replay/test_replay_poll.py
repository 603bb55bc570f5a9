"""Poll mode (the original's loop): the policy is evaluated at every ``loop_sleep_secs`` only, and
a change must make the next period count even when a plan's wake-up lies further ahead.

The set-up: one static node with 4 cores, one cloud (4-core instances, at most 2, boot 100 s,
billed per hour), OnDemandPlusPlus, periods of 120 s. Job a (8 cores, 200 s) is submitted at
t=0: the evaluation at the start launches one instance, it boots at 100, the period at 120 joins
it and a starts, ends at 320; the period at 360 sees the instance idle 3,240 s before its next
charge, and wakes up for the period before its drain moment (3,240 s after the launch less the
three periods the original keeps, at 3,240). Job b (12 cores) is submitted at 1,000: the next
period (1,080) must launch the instance it needs, as the daemon's reconciliation would, not the
wake-up at 3,240.
"""

from __future__ import annotations

from phorque.replay import ReplaySettings
from phorque.replay.sim import Simulation
from phorque.replay.trace import Trace, TraceJob
from tests.replay.swfdata import one_cloud

LOOP = 120.0
SUBMIT_B = 1000.0


def _trace() -> Trace:
    jobs = [TraceJob(id="a", submit=0.0, run_secs=200.0, cores=8, walltime_secs=400),
            TraceJob(id="b", submit=SUBMIT_B, run_secs=200.0, cores=12, walltime_secs=400)]
    return Trace(name="poll", jobs=jobs, start=0.0, end=SUBMIT_B, max_cores=4)


class _Recording(Simulation):
    """A simulation that remembers when the policy was evaluated."""

    def __init__(self, *args, **kwargs):
        self.times: list[float] = []
        super().__init__(*args, **kwargs)

    def evaluate(self) -> None:
        self.times.append(self.now)
        super().evaluate()


def _run(skip_idle: bool = True) -> _Recording:
    settings = ReplaySettings(local_nodes=1, local_np=4, clouds=(one_cloud(cores=4, max_instances=2, boot=100),),
                              mode="poll", loop_sleep_secs=LOOP, skip_idle=skip_idle)
    sim = _Recording(_trace(), settings.make_policy("OnDemandPlusPlus"), settings, keep_jobs=True)
    sim.run()
    return sim


def test_a_submit_makes_the_next_period_count_despite_a_later_wake_up():
    sim = _run()
    assert sim.jobs is not None
    # The idle instance's drain wake-up was set before b came (the premise of the test).
    assert [t for t in sim.times if t < SUBMIT_B] == [0.0, 120.0, 240.0, 360.0]
    after = [t for t in sim.times if t > SUBMIT_B]
    assert after[0] == 1080.0
    # Launched at 1,080, booted at 1,180, joined at the period of 1,200, where b starts.
    assert sim.jobs["b"].start == 1200.0
    assert sim.jobs["b"].start - sim.jobs["b"].submit == 200.0


def test_poll_mode_agrees_with_evaluating_every_period():
    fast, full = _run(), _run(skip_idle=False)
    assert fast.jobs is not None and full.jobs is not None
    assert len(full.times) > len(fast.times)
    assert {j.id: (j.start, j.end) for j in fast.jobs.values()} == \
        {j.id: (j.start, j.end) for j in full.jobs.values()}
