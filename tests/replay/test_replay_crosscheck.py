"""``phorque-replay``'s mean wait, cost and instance-hours agree with an independent simulator.

:mod:`tests.replay.reference_sim` shares no code with the replay or the policies; it implements
the replay's documented model (FIFO over static and cloud nodes, boot and join, evaluations on
events, hourly or per-second billing) for LocalOnly, OnDemand, OnDemandPlusPlus and LaunchMax. On windows of three
real traces (:mod:`tests.replay.crosscheck`) the replay's figures must be within 1% of it, and
the same jobs must have started. The last tests show that the 1% is tight enough: a replay given
a boot time, a charge period or a scheduler other than the reference's fails the comparison.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from phorque.core.model import CloudState
from tests.replay import crosscheck as x
from tests.replay import reference_sim as ref

TOLERANCE = 0.01

pytestmark = pytest.mark.skipif(not all((x.TRACES / w.file).exists() for w in x.WINDOWS),
                                reason=f"the workload traces are not in {x.TRACES}")


def disagreements(row: x.Row) -> list[str]:
    """What the replay gets wrong against the reference, beyond the tolerance."""
    out = []
    if row.replay.started != row.reference.started:
        out.append(f"started {row.replay.started} != {row.reference.started}")
    figures = [("mean wait", row.replay.mean_wait_secs, row.reference.mean_wait, row.wait_rel)]
    if row.case.policy != ref.LOCAL_ONLY:
        figures += [("cost", row.replay.cost, row.reference.cost, row.cost_rel),
                    ("instance-hours", row.replay.instance_hours, row.reference.instance_hours,
                     row.hours_rel)]
    for name, ours, theirs, rel in figures:
        if rel > TOLERANCE:
            out.append(f"{name} {ours:.2f} vs {theirs:.2f} ({rel:.2%})")
    return out


@pytest.mark.parametrize("case", x.cases(), ids=lambda c: c.id)
def test_replay_agrees_with_the_reference(case: x.Case) -> None:
    row = x.compare(case)
    # Both read the same jobs from the file, and the window is one where the figure means
    # something: jobs wait, and the cloud policies spend.
    assert row.jobs_replay == row.reference.jobs > 2000
    assert row.reference.mean_wait > 0
    if case.policy != ref.LOCAL_ONLY:
        assert row.reference.cost > 0 and row.reference.launched > 0
    assert disagreements(row) == []


def _default(window: int, policy: str = ref.ON_DEMAND) -> x.Case:
    return x.Case(x.WINDOWS[window], policy)


def _clouds(**changes: int) -> tuple[CloudState, ...]:
    return tuple(replace(c, **changes) for c in x.DEFAULT.states())


@pytest.mark.parametrize(("case", "clouds", "changes", "wrong"), [
    (_default(1), _clouds(boot_secs=150), None, "mean wait"),         # a boot 30 s slower
    (_default(0), _clouds(charge_time_secs=3000), None, "cost"),      # another billing period
    (_default(0), _clouds(charge_time_secs=0), None, "cost"),         # per second, not per hour
    (_default(2, ref.LOCAL_ONLY), None, {"scheduler": "strict"}, "mean wait"),  # strict FIFO
    (_default(0, ref.ODPP), None, {"multiplier": 2}, "cost"),          # twice the instances asked for
], ids=["boot-150s", "charge-3000s", "per-second", "strict-fifo", "odpp-multiplier-2"])
def test_the_comparison_notices_a_wrong_model(case: x.Case, clouds: tuple[CloudState, ...] | None,
                                              changes: dict | None, wrong: str) -> None:
    row = x.compare(case, replay_clouds=clouds, replay_changes=changes)
    assert any(d.startswith(wrong) for d in disagreements(row)), disagreements(row)
