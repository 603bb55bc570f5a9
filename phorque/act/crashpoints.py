"""Crash points, a testing aid: the process kills itself with SIGKILL at one named step.

Every place where Phorque changes something outside (a cloud, Torque) and records it in its
state in two steps that are not atomic together carries a named point. With the environment
variable ``PHORQUE_CRASHPOINT`` unset, a point costs one comparison. Set to a point's name, the
process dies there, with no chance to clean up, the first time it passes; ``NAME:N`` dies on
the N-th pass. The crash tests and the chaos benchmark use it to prove that a restarted daemon
converges from every such step. Never set it on a production daemon.

    PHORQUE_CRASHPOINT=terminate.after phorque -c phorque.conf
"""

from __future__ import annotations

import os
import signal
import sys
import threading

ENV = "PHORQUE_CRASHPOINT"

#: Every point, in the order a launch -> join -> drain -> terminate -> remove lifecycle passes
#: them, with what has happened outside and what the state holds when the process dies there.
POINTS: dict[str, str] = {
    "observe.saved": "the observed lifecycle records were saved; nothing decided yet",
    "launch.before": "about to raise a group's desired capacity",
    "launch.after": "desired capacity raised; nothing else recorded",
    "cancel.before": "about to lower desired capacity by requests that never started",
    "cancel.after": "desired capacity lowered; the cloud's health not yet recorded",
    "join.before": "about to record the join of a booted instance and create its Torque node",
    "join.recorded": "the join is recorded (intent); the Torque node does not exist yet",
    "join.created": "the Torque node exists (with Phorque's note); the cloud's success not reported",
    "undrain.cleared": "Phorque's offline mark cleared; the state still says draining",
    "drain.recorded": "the drain is recorded (intent); the node is not offline yet",
    "drain.offline": "the node is offline with Phorque's note; not yet read again",
    "terminate.before": "the node is secured and the termination recorded; the instance lives",
    "terminate.after": "the instance is terminated; its Torque node is still there",
    "remove.before": "the instance is gone; about to delete its Torque node",
    "remove.after": "the Torque node is deleted",
}


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, nth = spec.strip().partition(":")
    try:
        count = int(nth) if nth else 1
    except ValueError:
        count = 0
    if name not in POINTS or count < 1:
        # Said once, on standard error: a misspelt point must not pass silently for a survival.
        print(f"phorque: {ENV}={spec!r} names no crash point (known: {', '.join(POINTS)}, "
              "optionally NAME:N); ignored", file=sys.stderr, flush=True)
        return None
    return name, count


_armed = _parse(os.environ.get(ENV))
_passes = 0
# Removals run in parallel threads: each pass is counted once, and only the N-th one kills.
_count_lock = threading.Lock()


def crashpoint(name: str) -> None:
    """Die here, with SIGKILL, if ``PHORQUE_CRASHPOINT`` names this point (and pass)."""
    global _passes
    if _armed is None or _armed[0] != name:
        return
    with _count_lock:
        _passes += 1
        this_pass = _passes
    if this_pass != _armed[1]:
        return
    print(f"phorque: crash point {name} (pass {this_pass}): SIGKILL", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
