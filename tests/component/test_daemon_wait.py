"""When the daemon's loop answers a trigger: the first after a quiet moment at once, those
during or just after an evaluation gathered into the next one."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from pytest import approx

from phorque.adapters.config import load_config
from phorque.core.ratelimit import EvaluationBucket
from phorque.core.schedule import Schedule
from phorque.runtime.clock import Clock
from phorque.runtime.daemon import Daemon
from tests.integration.kit import conf_text


def daemon(tmp_path, delay: float) -> Daemon:
    conf = tmp_path / "phorque.conf"
    sandbox = SimpleNamespace(root=tmp_path / "cluster")
    conf.write_text(conf_text(tmp_path, sandbox, "http://127.0.0.1:9").replace(
        "event_delay_secs = 0.1", f"event_delay_secs = {delay:g}"))
    return Daemon(load_config(str(conf)))


def wait_in_thread(d: Daemon, settled: float):
    done = threading.Event()
    box = {}

    def run():
        schedule = Schedule(3600.0, d.config.phorque.event_delay_secs, next_sweep=time.monotonic() + 3600,
                            settled=settled, bucket=EvaluationBucket(1.0, 3))
        box["fired"] = d._wait(schedule)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, box


def test_the_first_trigger_after_a_quiet_moment_is_answered_at_once(tmp_path):
    d = daemon(tmp_path, delay=600)  # gathering would hold the trigger for ten minutes
    done, box = wait_in_thread(d, settled=time.monotonic() - 3600)
    d.trigger.fire("accounting Q")
    assert done.wait(60), "the trigger was held although nothing had been evaluated for an hour"
    assert box["fired"].reasons["accounting Q"] == 1


def test_triggers_just_after_an_evaluation_are_gathered_into_one(tmp_path):
    d = daemon(tmp_path, delay=10)
    done, box = wait_in_thread(d, settled=time.monotonic())
    d.trigger.fire("accounting Q")
    d.trigger.fire("accounting Q")
    d.trigger.fire("job file queued")
    assert done.wait(60)
    fired = box["fired"]
    # All three came within event_delay_secs of the evaluation's end: one answer for them all.
    assert fired.reasons["accounting Q"] == 2 and fired.reasons["job file queued"] == 1


def test_a_trigger_that_came_during_an_evaluation_waits_event_delay_from_its_arrival(tmp_path):
    conf = tmp_path / "phorque.conf"
    sandbox = SimpleNamespace(root=tmp_path / "cluster")
    conf.write_text(conf_text(tmp_path, sandbox, "http://127.0.0.1:9").replace(
        "event_delay_secs = 0.1", "event_delay_secs = 600"))
    shift = [0.0]
    clock = Clock(monotonic=lambda: time.monotonic() + shift[0])
    d = Daemon(load_config(str(conf)), clock=clock)
    d.trigger.fire("accounting Q")  # a qsub while an evaluation runs ...
    shift[0] += 900  # ... that runs for 15 minutes and has just ended
    schedule = Schedule(3600.0, 600.0, next_sweep=clock.monotonic() + 3600, settled=clock.monotonic(),
                        bucket=EvaluationBucket(1.0, 3))
    done, box = threading.Event(), {}

    def run():
        box["fired"] = d._wait(schedule)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    # It has waited 900 s, more than event_delay_secs: answered now, not 600 s after the
    # evaluation's end.
    assert done.wait(60), "the trigger was held event_delay_secs after the evaluation's end"
    assert box["fired"].reasons["accounting Q"] == 1


def test_gathering_counts_from_the_earlier_of_the_evaluations_end_and_the_first_trigger():
    s = Schedule(3600.0, 0.2, next_sweep=1e9, settled=100.0, bucket=EvaluationBucket(0.5, 3))
    assert s.gather_until(100.05) == approx(100.2)  # nothing waiting: event_delay after the end
    assert s.gather_until(100.05, first=100.1) == approx(100.2)  # came after the end: gathered until then
    assert s.gather_until(100.0, first=99.9) == approx(100.1)  # came during it: 0.2 s after it came
    assert s.gather_until(100.0, first=99.0) == 100.0  # waited longer than that: at once
    for _ in range(3):
        s.bucket.take(100.0)
    assert s.gather_until(100.0, first=99.0) == s.bucket.not_before(100.0) > 100.0  # the rate limit holds
