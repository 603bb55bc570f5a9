"""Nudges: a datagram that asks the running daemon to evaluate now.

The daemon listens on ``trigger_address`` (UDP, 127.0.0.1:15099 by default). Messages:

* ``phorque submit`` — from the submit filter: a job is being submitted. Fire and forget.
* ``phorque evaluate NONCE`` — from ``phorque-evaluate``: the daemon answers ``phorque ack NONCE``
  at once, and ``phorque done NONCE`` after the evaluation that covers it, or ``phorque skipped
  NONCE`` when that evaluation was skipped or failed (Torque unreadable, an error).

A nudge only triggers an evaluation (which the daemon coalesces with other triggers), so it
grants nothing; anything else received is ignored.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time

from phorque.runtime.triggers import Trigger

log = logging.getLogger("phorque.nudge")

PREFIX = b"phorque "
MAX_DATAGRAM = 512


class NudgeListener:
    """Receives nudges in a thread and fires the trigger."""

    def __init__(self, address: tuple[str, int], trigger: Trigger):
        self.address = address
        self.trigger = trigger
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="phorque-nudges", daemon=True)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()

    def reply(self, to: tuple[str, int], message: str) -> None:
        try:
            self.sock.sendto(PREFIX + message.encode("ascii", "replace"), to)
        except OSError as exc:
            log.debug("cannot answer %s: %s", to, exc)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stop.is_set():
                    return
                log.warning("nudge socket error: %s", exc)
                time.sleep(0.5)
                continue
            if not data.startswith(PREFIX):
                continue
            words = data[len(PREFIX):].decode("ascii", "replace").split()
            if words[:1] == ["submit"]:
                self.trigger.fire("submit filter")
            elif words[:1] == ["evaluate"] and len(words) == 2 and words[1].isalnum():
                self.reply(sender, f"ack {words[1]}")
                self.trigger.fire("phorque-evaluate", waiter=(words[1], sender))


def send(address: tuple[str, int], message: str) -> None:
    """Fire and forget."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.sendto(PREFIX + message.encode("ascii"), address)


def ask_daemon(address: tuple[str, int], ack_timeout: float = 1.0, done_timeout: float = 300.0,
               wait: bool = True) -> str | None:
    """Ask the daemon to evaluate. Returns "done" (evaluated), "skipped" (the evaluation was
    skipped or failed), "ack" (accepted, not waited for), or None when no daemon answered."""
    nonce = secrets.token_hex(8)
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(PREFIX + f"evaluate {nonce}".encode("ascii"), address)
        except OSError:
            return None
        deadline = time.monotonic() + ack_timeout
        acked = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "ack" if acked else None
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(MAX_DATAGRAM)
            except (TimeoutError, OSError):
                return "ack" if acked else None
            words = data[len(PREFIX):].decode("ascii", "replace").split()
            if words[1:2] != [nonce]:
                continue
            if words[0] in ("done", "skipped"):
                return words[0]
            if words[0] == "ack":
                acked = True
                if not wait:
                    return "ack"
                deadline = time.monotonic() + done_timeout
