"""Trigger coalescing and UDP nudges (real sockets on 127.0.0.1)."""

from __future__ import annotations

import socket
import threading
import time

from phorque.runtime.nudge import NudgeListener, ask_daemon, send
from phorque.runtime.triggers import Trigger


def test_a_burst_becomes_one_wake_up():
    trigger = Trigger()
    for _ in range(1000):
        trigger.fire("accounting Q")
    fired = trigger.wait(timeout=1, gather=0.05)
    assert fired.reasons["accounting Q"] == 1000
    assert not trigger.wait(timeout=0.05)


def test_gathering_merges_signals_arriving_just_after_the_first():
    trigger = Trigger()

    def late():
        time.sleep(0.05)
        trigger.fire("job file queued")

    threading.Thread(target=late).start()
    trigger.fire("accounting Q")
    fired = trigger.wait(timeout=1, gather=0.3)
    assert set(fired.reasons) == {"accounting Q", "job file queued"}


def test_wait_times_out_empty():
    started = time.monotonic()
    assert not Trigger().wait(timeout=0.2)
    assert time.monotonic() - started >= 0.19  # it waited its timeout (a busy machine only adds)


def test_nudges_fire_the_trigger_and_evaluate_gets_acknowledged():
    trigger = Trigger()
    listener = NudgeListener(("127.0.0.1", 0), trigger)
    listener.start()
    try:
        address = ("127.0.0.1", listener.port)
        send(address, "submit")
        fired = trigger.wait(timeout=2)
        assert fired.reasons["submit filter"] == 1
        assert ask_daemon(address, wait=False) == "ack"
        fired = trigger.wait(timeout=2)
        assert fired.reasons["phorque-evaluate"] == 1 and len(fired.waiters) == 1

        result = {}

        def ask():
            result["answer"] = ask_daemon(address, wait=True, done_timeout=5)

        asker = threading.Thread(target=ask)
        asker.start()
        fired = trigger.wait(timeout=2)
        (nonce, sender), = fired.waiters
        listener.reply(sender, f"done {nonce}")
        asker.join(5)
        assert result["answer"] == "done"
    finally:
        listener.stop()


def test_garbage_datagrams_are_ignored():
    trigger = Trigger()
    listener = NudgeListener(("127.0.0.1", 0), trigger)
    listener.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for payload in (b"", b"hello", b"phorque evaluate ../../etc", b"\xff" * 600, b"phorque"):
                sock.sendto(payload, ("127.0.0.1", listener.port))
        assert not trigger.wait(timeout=0.3)
    finally:
        listener.stop()


def test_no_daemon_means_no_answer():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert ask_daemon(("127.0.0.1", port), ack_timeout=0.3) is None
