"""Lifecycle rules every policy shares: joining booted instances, giving up on instances that
never join, finishing terminations, and removing Torque nodes whose instance is gone.

These are not choices a policy makes: an instance with a DNS name joins, an instance that has not
joined within ``boot_timeout_secs`` is terminated (and counts as a fault of its cloud), a request
that never becomes an instance is cancelled (at once when the cloud says its launch failed, e.g.
no capacity; a fault of the cloud too). Policies decide launches and scale-in on top.

The boot timeout runs from the launch while the instance is the cloud's to deliver (no DNS name
yet); once it runs with a DNS name, Phorque's own join starts the node's clock. A running instance
Phorque has not tried to join yet (Torque or Phorque was down while it booted) is joined whatever
its age: an outage of Torque is not a fault of the cloud.

A node that joined and is missing from one read of Torque is not a vanished node (a truncated or
partial ``pbsnodes`` answer): nothing is done about it until it has been missing for
``boot_timeout_secs``. A backed-off cloud is named in the notes, and the plan wakes up when its
backoff ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phorque.core import plan as p
from phorque.core.model import CloudState, Health, InstanceState, NodeName, Stage
from phorque.policy.view import CloudNode, View, is_drain_note


@dataclass
class Lifecycle:
    """What the shared rules decided, and what they already took care of."""

    actions: list[p.Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    handled: set[str] = field(default_factory=set)  # instance ids and node names acted on
    wake_at: float | None = None

    def wake(self, at: float) -> None:
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)

    def add(self, action: p.Action) -> None:
        self.actions.append(action)
        for key in (action.instance, action.node):
            if key:
                self.handled.add(key)


def _give_up(life: Lifecycle, cn: CloudNode, reason: str, fault: bool) -> None:
    node = cn.node.name if cn.node else None
    life.add(p.terminate(cn.cloud.name, cn.instance.id, reason, node=node, fault=fault))
    if node:
        life.add(p.remove(node, reason, cloud=cn.cloud.name, instance=cn.instance.id))


def _instance_rules(view: View, life: Lifecycle, cn: CloudNode) -> None:
    now, inst, cloud = view.now, cn.instance, cn.cloud
    stage = cn.owned.stage if cn.owned else None
    if not inst.id:
        return  # a request with no VM yet: nothing to join or terminate
    if cn.admin_offline:
        life.notes.append(f"{cn.name} was set offline by an administrator; left alone")
        return
    if stage == Stage.TERMINATING and inst.state.is_valid:
        if cn.busy:
            life.notes.append(f"{cn.name} runs jobs; its termination waits")
            return
        _give_up(life, cn, "finishing an interrupted termination", fault=False)
        return
    if inst.state == InstanceState.FAILED:
        if not cn.busy:
            _give_up(life, cn, f"instance failed ({inst.lifecycle or 'unhealthy'})", fault=True)
        return
    node = cn.node
    if node is None and cn.owned is not None and cn.owned.joined_at is not None:
        _missing_node(view, life, cn)
        return
    tried = _join_tried_at(cn)
    if node is None:
        age = cn.age(now)
        joinable = inst.state == InstanceState.RUNNING and bool(inst.node_name)
        if joinable and (tried is None or now - tried <= cloud.boot_timeout_secs):
            life.add(p.join(cloud.name, inst.id, inst.node_name or NodeName(""), cloud.instance_cores,
                            f"instance running with DNS name {inst.node_name}"))
        elif age > cloud.boot_timeout_secs:
            _give_up(life, cn, f"did not join Torque within boot_timeout_secs={cloud.boot_timeout_secs} "
                               f"(age {age:.0f} s)", fault=True)
        return
    if not node.is_down or not node.is_idle:
        return
    # Joined but down: pbs_mom never came up, or went away.
    joined = cn.owned.joined_at if cn.owned else None
    if joined is None:
        waited = now - tried if tried is not None else cn.age(now)
        if waited > cloud.boot_timeout_secs:
            _give_up(life, cn, f"node never came up within boot_timeout_secs={cloud.boot_timeout_secs}",
                     fault=True)
        return
    down_since = cn.owned.down_since if cn.owned else None
    if down_since is not None and now - down_since > cloud.boot_timeout_secs:
        _give_up(life, cn, f"node down for {now - down_since:.0f} s", fault=False)


def _join_tried_at(cn: CloudNode) -> float | None:
    """When Phorque first tried to join an instance that never came up (None: not yet)."""
    owned = cn.owned
    if owned is None or owned.joined_at is not None or owned.node is None:
        return None
    return owned.down_since


def _missing_node(view: View, life: Lifecycle, cn: CloudNode) -> None:
    """A node that joined Torque and is not in this read of it."""
    assert cn.owned is not None
    name = cn.owned.node or cn.instance.node_name or cn.instance.id
    since = cn.owned.down_since
    missing = 0.0 if since is None else view.now - since
    running = [j.id for j in view.running if name in j.exec_hosts]
    if running:
        # qstat shows jobs on it: the node list is what is wrong.
        life.notes.append(f"node {name} is missing from Torque's node list, but runs "
                          f"{', '.join(running[:3])}; left alone")
        life.wake(view.now + boot_poll_secs(cn.cloud))
        return
    if missing > cn.cloud.boot_timeout_secs:
        _give_up(life, cn, f"its Torque node {name} has been missing for {missing:.0f} s", fault=False)
        return
    life.notes.append(f"node {name} ({cn.instance.id}) is missing from Torque's node list; "
                      "nothing is done about it while it may be a bad read")
    life.wake(view.now + boot_poll_secs(cn.cloud))


def _stalled_requests(view: View, life: Lifecycle) -> None:
    """Cancel requests that never became instances: at once when the cloud says its launch
    failed (no capacity for any of its instance types), else once the boot timeout runs out.
    Either is a fault of the cloud, so it is backed off and the work goes to the next one."""
    previous = view.snapshot.memory.get("short_since", {})
    # Failures acted on, by cloud: a failed launch stays the group's latest activity after its
    # requests are cancelled, and must not cancel the next launch there before it is tried.
    failures = view.snapshot.memory.get("launch_failures")
    acted: dict[str, object] = {}
    if failures:
        configured = {c.name for c in view.snapshot.clouds}
        acted = {name: fid for name, fid in failures.items() if name in configured}
    short_since: dict[str, float] = {}
    for cloud in view.known_clouds:
        missing = cloud.desired - len(cloud.valid_instances)
        if missing <= 0:
            continue
        failure = cloud.launch_failure
        if failure is not None and acted.get(cloud.name) != failure.id:
            acted[cloud.name] = failure.id
            what = "has no capacity" if failure.no_capacity else "could not launch"
            life.add(p.cancel(cloud.name, missing, cloud.desired,
                              f"cloud {cloud.name} {what} ({failure.code}: {failure.message}); "
                              f"{missing} requested instance(s) cancelled", fault=True))
            continue
        since = float(previous.get(cloud.name, view.now))
        short_since[cloud.name] = since
        if view.now - since > cloud.boot_timeout_secs:
            life.add(p.cancel(cloud.name, missing, cloud.desired,
                              f"{missing} requested instance(s) never started within "
                              f"boot_timeout_secs={cloud.boot_timeout_secs}", fault=True))
            short_since.pop(cloud.name)
    life.memory["short_since"] = short_since
    if acted:
        life.memory["launch_failures"] = acted


#: Bounds of the look-again interval while instances boot (a quarter of the cloud's boot_secs).
BOOT_POLL_MIN, BOOT_POLL_MAX = 2.0, 15.0


def boot_poll_secs(cloud: CloudState) -> float:
    """How soon to look again while an instance of ``cloud`` boots."""
    return min(BOOT_POLL_MAX, max(BOOT_POLL_MIN, cloud.boot_secs / 4))


def _boot_poll(view: View, life: Lifecycle) -> None:
    """Look again soon while instances boot: no Torque event says that one is ready to join."""
    down = view.clouds_with_down_nodes
    for cloud in view.known_clouds:
        if view.pending_count(cloud) > 0 or cloud.name in down:
            life.wake(view.now + boot_poll_secs(cloud))


def _cloud_health(view: View, life: Lifecycle) -> None:
    """Say which clouds are out of use, and look again when a backoff ends."""
    for cloud in view.snapshot.clouds:
        if cloud.health == Health.UNREACHABLE:
            life.notes.append(f"cloud {cloud.name} could not be read: its instances are left as "
                              f"they are ({cloud.capacity} counted against the budget)")
        elif cloud.health in (Health.BACKOFF, Health.FAILED) and cloud.backoff_until is not None:
            life.notes.append(f"cloud {cloud.name} is backed off for {cloud.backoff_until - view.now:.0f} s"
                              f" more ({cloud.error or 'failures'}): no launch there")
            life.wake(cloud.backoff_until)


def _interruptions(view: View, life: Lifecycle) -> None:
    """Instances the cloud took back (spot): at once their node is offlined and its rerunnable
    jobs requeued, then it is removed; each interruption backs its cloud off once (repeated
    interruptions move the work to another cloud) and cancels the replacement the group would
    launch, so that an instance that is gone is never paid for nor counted against the budget."""
    if not view.interrupted:
        # Nothing taken back is listed: nothing to requeue or cancel, and nothing seen to keep.
        return
    seen = set(view.snapshot.memory.get("interrupted", ()))
    listed = set()
    new: dict[str, int] = {}
    for cloud, inst, node in view.interrupted:
        listed.add(inst.id)
        first = inst.id not in seen
        reason = f"the cloud took instance {inst.id} back ({inst.interruption})"
        if node is not None and node.name not in life.handled:
            life.add(p.requeue(cloud.name, inst.id, reason, node=node.name, fault=first))
            life.add(p.remove(node.name, reason, cloud=cloud.name, instance=inst.id))
        elif first:
            life.add(p.requeue(cloud.name, inst.id, reason))
        if first:
            new[cloud.name] = new.get(cloud.name, 0) + 1
            seen.add(inst.id)
    for cloud in view.known_clouds:
        missing = cloud.desired - len(cloud.valid_instances)
        count = min(new.get(cloud.name, 0), missing)
        if count > 0:
            life.add(p.cancel(cloud.name, count, cloud.desired,
                              f"{count} instance(s) taken back by the cloud: not replaced"))
    if seen & listed:
        life.memory["interrupted"] = sorted(seen & listed)


def lifecycle(view: View) -> Lifecycle:
    """The shared rules' actions for one snapshot."""
    life = Lifecycle()
    _interruptions(view, life)
    for cn in view.cloud_nodes:
        if not cn.settled:  # joined, up or busy, not offline: none of the rules has anything to do
            _instance_rules(view, life, cn)
    _boot_poll(view, life)
    _cloud_health(view, life)
    for node in view.orphan_nodes:
        if node.name in life.handled:
            continue
        if node.is_offline and not node.is_new and not is_drain_note(node.note):
            life.notes.append(f"node {node.name} lost its instance; offline by an administrator, left alone")
            continue
        if node.is_idle:
            life.add(p.remove(node.name, "its instance is no longer in any Phorque group"))
        else:
            life.notes.append(f"node {node.name} runs {', '.join(node.jobs)} but its instance is gone; "
                              "left for the administrator")
    for node in view.unowned_marked:
        life.notes.append(f"node {node.name} has a phorque: note, but Phorque has no record of "
                          "creating it and it is no instance of its groups; left alone")
    _stalled_requests(view, life)
    return life
