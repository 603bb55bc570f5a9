"""The daemon's loop on in-memory ports and a clock that moves only when told to: when it
evaluates (start, triggers, reconciliation, retry, policy wake-up), with which read, and that
it goes on after a failed evaluation.

The loop's waits block on a condition variable for real; the clock decides what is due. A test
moves the clock, then wakes the loop (``look``) with a ``stop`` that does not stop it (the loop
takes ``stop`` and ``reload`` out of what fired, as it does for the signals' wake-ups), so that
the loop looks at the clock again, exactly as it would when a real timeout ran out.
"""

from __future__ import annotations

import logging
import re
import threading

import pytest

from phorque.core.schedule import RETRY_FIRST_SECS
from phorque.runtime.daemon import Daemon
from tests.component.bed import Bed
from tests.waiting import wait_for

DEADLINE = 60.0
EVALUATION = re.compile(r"evaluation #(\d+) \(([^)]*)\): (\d+ action.*)")


class Running:
    """A daemon's loop in a thread, on the bed's ports and clock."""

    def __init__(self, bed: Bed, caplog: pytest.LogCaptureFixture):
        assert bed.config is not None
        self.bed = bed
        self.caplog = caplog
        config_path = str(bed.tmp_path / "phorque.conf")
        self.daemon = Daemon(bed.config, engine=bed.engine(own_state=True), clock=bed.clock.clocks())
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(config_path,), daemon=True)

    def _run(self, path: str) -> None:
        try:
            self.daemon.run(path)
        except BaseException as exc:  # shown by the test, not lost in the thread
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.stopping = True
        self.daemon.trigger.fire("stop")
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), "the daemon did not stop"
        assert self.error is None, repr(self.error)

    def evaluations(self) -> list[tuple[str, str]]:
        """(reason, what it did) of every evaluation the daemon completed, in order."""
        out = []
        for record in self.caplog.records:
            if record.name == "phorque.daemon" and (m := EVALUATION.match(record.getMessage())):
                out.append((m.group(2), m.group(3)))
        return out

    def wait_evaluations(self, count: int) -> list[tuple[str, str]]:
        # Logged when the evaluation is over: from then on the loop touches no port until it
        # is woken again, so the test may change them.
        wait_for(lambda: len(self.evaluations()) >= count, DEADLINE, f"evaluation #{count}")
        return self.evaluations()

    def look(self, after_secs: float) -> None:
        """Move the clock on, then make the loop look at it."""
        self.bed.clock.advance(after_secs)
        self.daemon.trigger.fire("stop")


@pytest.fixture
def bed(tmp_path) -> Bed:
    bed = Bed(tmp_path)
    bed.configure({"hotel": {"price": 0.1, "max_instances": 2, "boot_secs": 60}},
                  policy="CostAware")
    return bed


@pytest.fixture(autouse=True)
def _log_evaluations(caplog):
    caplog.set_level(logging.INFO, logger="phorque")


def test_the_start_is_a_full_read_and_a_nudge_is_answered_at_once(bed, caplog):
    bed.torque.submit("1.server", cores=4)
    with Running(bed, caplog) as run:
        assert run.wait_evaluations(1)[0][0] == "start"
        assert bed.torque.called("jobs"), "the start reads the whole queue"
        assert bed.clouds["hotel"].desired == 1

        bed.torque.submit("2.server", cores=4)
        bed.clock.advance(1)
        run.daemon.trigger.fire("submit filter")
        assert run.wait_evaluations(2)[1][0] == "submit filter"
        assert bed.clouds["hotel"].desired == 2


def test_a_skipped_evaluation_is_retried_and_the_retry_launches(bed, caplog):
    bed.torque.submit("1.server", cores=4)
    bed.torque.fail("jobs")
    with Running(bed, caplog) as run:
        wait_for(lambda: any("skipped" in r.getMessage() for r in caplog.records), DEADLINE,
                 "the first evaluation to be skipped")
        assert bed.clouds["hotel"].calls == [], "a failed Torque read asks no cloud"

        run.look(RETRY_FIRST_SECS)
        ((reason, _),) = run.wait_evaluations(1)
        assert reason == "retry"
        assert bed.clouds["hotel"].desired == 1


def test_the_reconciliation_comes_every_loop_sleep_secs(bed, caplog):
    assert bed.config is not None
    every = bed.config.phorque.loop_sleep_secs
    with Running(bed, caplog) as run:
        run.wait_evaluations(1)
        reads = len(bed.torque.called("jobs"))
        run.look(every)
        assert run.wait_evaluations(2)[1][0] == "periodic reconciliation"
        assert len(bed.torque.called("jobs")) == reads + 1, "a reconciliation reads the whole queue"


def test_the_policy_wake_up_joins_a_booted_instance_with_no_trigger(bed, caplog):
    bed.torque.submit("1.server", cores=4)
    with Running(bed, caplog) as run:
        run.wait_evaluations(1)
        hotel = bed.clouds["hotel"]
        (iid,) = hotel.live()
        # Nothing Torque writes says an instance booted: the policy's own wake-up finds it.
        run.look(hotel.boot_secs + 1)
        wait_for(lambda: hotel.dns_of(iid) in bed.torque.nodes_by_name, DEADLINE, "the join")
        assert {reason for reason, _ in run.evaluations()[1:]} == {"policy wake-up"}
