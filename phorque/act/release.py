"""Taking Phorque out of service: drain and release every instance it owns, never killing a job.

``phorque --release`` runs evaluations whose plan launches nothing and retires everything:
requests not yet started are cancelled, instances that are no Torque node are terminated, idle
nodes go through the usual drain, re-read, terminate, remove, and a node that runs jobs is
marked offline with Phorque's draining note (no new job starts there) and released once its jobs
have ended. An administrator's offline still wins: such a node is named and waited for. It
returns when no instance of Phorque's groups is left and the state owns nothing, and says so.

The daemon must be stopped first: it would launch again for the queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from phorque.act.engine import Engine, Evaluation
from phorque.adapters.cloud.lock import cloud_lock
from phorque.adapters.config import Config
from phorque.core import plan as p
from phorque.core.errors import PhorqueError, TransientError
from phorque.core.model import Snapshot, Stage
from phorque.core.plan import Kind, Plan, Status
from phorque.policy.base import Decision, Policy
from phorque.policy.common import retire
from phorque.policy.lifecycle import Lifecycle, lifecycle
from phorque.policy.view import View, drain_note

log = logging.getLogger("phorque.release")

#: Seconds between evaluations while jobs on Phorque's nodes run to their end.
RELEASE_POLL_SECS = 5.0
REASON = "releasing: Phorque is taken out of service"


class Release(Policy):
    """Launch nothing, join nothing, retire everything Phorque owns."""

    SUMMARY = "take Phorque out of service"

    def decide(self, view: View, life: Lifecycle) -> Decision:  # pragma: no cover - plan() is used
        return Decision()

    def plan(self, snapshot: Snapshot) -> Plan:
        view = View(snapshot, self.queues)
        life = lifecycle(view)
        # A booted instance is not joined now: it would only take jobs it must then finish.
        actions = [a for a in life.actions if a.kind != Kind.JOIN]
        handled = {k for a in actions for k in (a.instance, a.node) if k}
        notes = list(life.notes)
        for cloud in view.known_clouds:
            missing = cloud.desired - len(cloud.valid_instances)
            if missing > 0 and not any(a.kind == Kind.CANCEL and a.cloud == cloud.name for a in actions):
                actions.append(p.cancel(cloud.name, missing, cloud.desired, f"{REASON}: never started"))
        for cn in view.cloud_nodes:
            inst = cn.instance
            if not inst.id or inst.id in handled or (cn.name and cn.name in handled):
                continue
            if cn.admin_offline:
                continue  # the lifecycle's note names it: it waits for the administrator
            if cn.node is None:
                actions.append(p.terminate(cn.cloud.name, inst.id, f"{REASON}: not a Torque node"))
            elif cn.node.is_idle:
                actions.extend(retire(cn, REASON))
            else:
                notes.append(f"{cn.node.name} runs {', '.join(cn.node.jobs)}: offline, released "
                             "when they end")
        return Plan(actions=tuple(actions), notes=tuple(notes), memory=life.memory)


def _hold_busy(engine: Engine, ev: Evaluation) -> None:
    """Mark Phorque's busy nodes offline with its draining note: no new job starts there, and the
    jobs running go on. (The executor would put a busy node back in service.)"""
    for cn in View(ev.snapshot).cloud_nodes:
        node = cn.node
        if node is None or node.is_idle or node.is_offline:
            continue
        with cloud_lock(engine.config.phorque.lock_path):
            fresh = engine.torque.node(node.name)
            if fresh is None or fresh.is_offline:
                continue  # gone, or offlined meanwhile (maybe by an administrator): left alone
            engine.torque.offline(node.name, drain_note(REASON))
            engine.state.set_stage(cn.instance.id, cn.cloud.name, Stage.DRAINING, time.time(),
                                   drain_started=time.time())
        log.info("node %s runs %s: offline until its jobs end", node.name, ", ".join(node.jobs))


def left(ev: Evaluation) -> dict[str, int]:
    """Instances (or requests) each cloud still has, and what the state still owns there; a cloud
    that could not be read counts -1."""
    out: dict[str, int] = {}
    for cloud in ev.snapshot.clouds:
        owned = sum(1 for o in ev.snapshot.owned if o.cloud == cloud.name)
        out[cloud.name] = -1 if cloud.health.value == "unreachable" else max(cloud.capacity, owned)
    return out


def release(config: Config, say: Callable[[str], None] = print,
            poll_secs: float = RELEASE_POLL_SECS, stop: Callable[[], bool] = lambda: False) -> int:
    """Release everything; 0 when nothing is left, 1 when stopped before."""
    engine = Engine(config, policy=Release(queues=config.phorque.queues,
                                           loop_sleep_secs=config.phorque.loop_sleep_secs))
    shown = ""
    terminated = 0
    while not stop():
        try:
            ev = engine.evaluate()
        except TransientError as exc:
            say(f"releasing: waiting: {exc}")
            time.sleep(poll_secs)
            continue
        except PhorqueError as exc:
            say(f"releasing: evaluation failed, trying again: {exc}")
            time.sleep(poll_secs)
            continue
        terminated += sum(1 for o in ev.outcomes if o.action.kind == Kind.TERMINATE and o.status == Status.DONE)
        counts = left(ev)
        if not any(counts.values()):
            say(f"released: no instance of Phorque's groups is left ({terminated} terminated now); "
                "nothing Phorque started runs or is billed any more")
            return 0
        try:
            _hold_busy(engine, ev)
        except PhorqueError as exc:
            say(f"releasing: could not offline a busy node, trying again: {exc}")
        text = "releasing: " + ", ".join(
            f"{name}: {'unreadable' if n < 0 else f'{n} instance(s) left'}" for name, n in counts.items())
        if ev.plan.notes:
            text += "; " + "; ".join(ev.plan.notes)
        if text != shown:
            say(text)
            shown = text
        time.sleep(poll_secs)
    say("release stopped before it was complete: instances are left (see phorque-status)")
    return 1
