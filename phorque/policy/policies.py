"""The policies, one class each; ``[Policy] name`` picks one by class name.

Every policy is pure: it reads a :class:`~phorque.policy.view.View` of the snapshot and returns a
:class:`~phorque.policy.base.Decision`. All of them respect ``price_per_hour`` (through
``View.affordable``) and ``max_instances``, never touch a node Phorque does not own, and retire a
node only through drain -> re-read -> terminate -> remove.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from operator import attrgetter
from typing import Any, NotRequired, TypedDict, cast

from phorque.core import plan as p
from phorque.core.model import CloudState, Job, KindKey, Node, asks_spot
from phorque.core.options import bool_option, int_option
from phorque.policy.base import Decision, Policy
from phorque.policy.common import (
    Fit,
    asks_shape,
    cloud_key,
    cores_to_instances,
    draining_nodes,
    idle_nodes,
    launch_clouds,
    retire,
    runnable_kinds,
)
from phorque.policy.lifecycle import Lifecycle
from phorque.policy.packing import UNLIMITED, BinPool, Key, Opener
from phorque.policy.view import CloudNode, View

#: A node's free cores (a sum over map() with it: OnDemand adds every node's at every evaluation).
_FREE_CORES = attrgetter("free_cores")


def _idle_for(view: View, cn: CloudNode) -> float:
    since = cn.owned.idle_since if cn.owned else None
    return 0.0 if since is None else max(0.0, view.now - since)


class CloudLooks(TypedDict):
    """What OnDemandPlusPlus remembers of one cloud between evaluations, as the state keeps it
    (``memory["odpp"][cloud]``)."""

    #: Looks in a row that found requested instances still missing and no more of them valid.
    stalls: int
    #: Marked failed (its requests were cancelled), and since when.
    failed: bool
    failed_at: NotRequired[float]
    #: Valid instances at the last look, and the time of that look.
    valid: int | None
    checked: float | None


# Written out: with postponed annotations, TypedDict cannot tell NotRequired keys at run time.
_LOOKS_KEYS = frozenset({"stalls", "failed", "valid", "checked"})
_LOOKS_ALL_KEYS = _LOOKS_KEYS | {"failed_at"}


def no_looks() -> CloudLooks:
    return {"stalls": 0, "failed": False, "valid": None, "checked": None}


def cloud_looks(entry: Mapping[str, Any]) -> CloudLooks:
    """A copy of what the state kept for one cloud. Every evaluation reads it, so what Phorque
    wrote is copied as it is; anything else (a hand-edited state) is read field by field, a
    field missing or unreadable taking its default."""
    keys = entry.keys()
    if keys == _LOOKS_KEYS or keys == _LOOKS_ALL_KEYS:
        return cast(CloudLooks, dict(entry))
    looks = no_looks()
    if type(entry.get("stalls")) is int:
        looks["stalls"] = entry["stalls"]
    looks["failed"] = entry.get("failed") is True
    valid, checked, failed_at = entry.get("valid"), entry.get("checked"), entry.get("failed_at")
    if type(valid) is int:
        looks["valid"] = valid
    if isinstance(checked, int | float) and not isinstance(checked, bool):
        looks["checked"] = float(checked)
    if isinstance(failed_at, int | float) and not isinstance(failed_at, bool):
        looks["failed_at"] = float(failed_at)
    return looks


#: Queued jobs of one kind: how many, and one of them (``runnable_kinds``). A policy that only
#: sums what jobs ask for reads the queue by kind, not job by job.
Group = tuple[int, Job]


def _cores(groups: list[Group]) -> int:
    return sum(n * job.cores for n, job in groups)


class OnDemandPlusPlus(Policy):
    """The original Phorque policy, with its known defects fixed.

    Launches ``ceil((queued - free - pending - down) / instance_cores) * multiplier`` instances
    on the cheapest cloud that has not failed and is not at ``max_instances``. A cloud whose
    requested instances do not appear for ``stall_limit`` looks (one look per
    ``loop_sleep_secs``) is marked failed, its requests are cancelled and the next cloud is used;
    any termination on it clears the mark, and so does time: once out of backoff, it is tried
    again after as long as it took to judge it failed (a cloud with no instance left to
    terminate would otherwise never be used again). With nothing to launch, idle nodes within
    ``3 * loop_sleep_secs`` of their next charge are drained and terminated.
    """

    SUMMARY = "the original's arithmetic: launch for queued cores, scale in near charge boundaries"
    OPTIONS = {"stall_limit": int_option(3, minimum=1, help="looks without progress before a cloud fails")}

    def decide(self, view: View, life: Lifecycle) -> Decision:
        d = Decision()
        now = view.now
        memory: dict[str, CloudLooks] = {
            name: cloud_looks(entry)
            for name, entry in view.snapshot.memory.get("odpp", {}).items() if isinstance(entry, Mapping)}
        groups = list(runnable_kinds(view, d.notes)[1].values())
        fit = Fit(view)
        queued = _cores(groups)
        pending = view.pending_cores

        for cloud in view.known_clouds:
            m = memory.setdefault(cloud.name, no_looks())
            judged = self.options["stall_limit"] * self.loop_sleep_secs
            if m["failed"] and cloud.usable and now - m.get("failed_at", 0.0) >= judged:
                m["failed"] = False
            valid = len(cloud.valid_instances)
            if cloud.desired <= valid:
                m["stalls"], m["valid"], m["checked"] = 0, valid, now
                continue
            checked = m["checked"]
            if checked is not None and now - checked < self.loop_sleep_secs:
                continue  # one look per loop, as the original counted
            m["stalls"] = m["stalls"] + 1 if m["valid"] == valid else 0
            m["valid"], m["checked"] = valid, now
            if m["stalls"] >= self.options["stall_limit"]:
                m["failed"], m["stalls"], m["failed_at"] = True, 0, now
                d.actions.append(p.cancel(cloud.name, cloud.desired - valid, cloud.desired,
                                          f"no progress for {self.options['stall_limit']} looks: cloud "
                                          "marked failed, its requests cancelled", fault=True))
        to_launch = self._launch(view, d, memory, groups, fit) if queued > 0 else 0
        if to_launch <= 0 and (queued == 0 or pending == 0):
            # While instances launched for queued jobs still boot, the idle nodes are part of
            # what those jobs wait for: releasing them would only launch them again.
            self._scale_in(view, life, d, memory)
        d.memory["odpp"] = memory
        return d

    def _launch(self, view: View, d: Decision, memory: dict[str, CloudLooks], groups: list[Group],
                fit: Fit) -> int:
        """The original's launch on the cheapest cloud that can take more, counting only the
        queued jobs that cloud can run against the capacity of use to them; returns the cores
        still to launch for (0 when covered). ``groups``: the queued jobs, by kind."""
        candidates = [c for c in launch_clouds(view)
                      if not memory[c.name]["failed"] and len(c.valid_instances) < c.max_instances
                      and c.capacity < c.max_instances]
        to_launch = 0
        for cloud in candidates:
            mine = [(n, j) for n, j in groups if fit.cloud_runs(cloud, j)]
            if not mine:
                continue
            free, pending, down = fit.capacity([j for _, j in mine])
            to_launch = _cores(mine) - (free + pending + down)
            if to_launch <= 0:
                continue
            if cloud.desired > len(cloud.valid_instances):
                d.notes.append(f"waiting for {cloud.desired - len(cloud.valid_instances)} instance(s) "
                               f"on {cloud.name}")
                return to_launch
            count = cores_to_instances(to_launch, cloud.instance_cores) * self.multiplier
            count = min(count, view.affordable(cloud, self.price_per_hour))
            if count <= 0:
                d.notes.append(f"{to_launch} queued cores wait: price_per_hour reached")
                return to_launch
            d.actions.append(p.launch(cloud.name, count, cloud.capacity,
                                      f"{to_launch} queued cores not covered by free, pending or down cores"))
            return to_launch
        free, pending, down = fit.capacity([j for _, j in groups])
        left = _cores(groups) - (free + pending + down)
        if left > 0:
            d.notes.append(f"{left} queued cores wait: no cloud can take more instances")
        return max(0, left)

    def _scale_in(self, view: View, life: Lifecycle, d: Decision, memory: dict[str, CloudLooks]) -> None:
        window = 3 * self.loop_sleep_secs
        for cn in idle_nodes(view, life) + draining_nodes(view, life):
            assert cn.node is not None
            booted = not cn.node.is_down or (cn.owned is not None and cn.owned.joined_at is not None)
            if not booted or not cn.node.is_idle:
                continue
            left = cn.charge_left(view.now)
            if cn.cloud.charge_time_secs <= 0 or left <= window:
                d.actions.extend(retire(cn, f"idle, {left:.0f} s before its next charge"))
                memory[cn.cloud.name]["failed"] = False
            else:
                d.wake(view.now + left - window)


class OnDemand(Policy):
    """On-demand provisioning: launch for the queued cores that free and pending capacity do not
    cover (cheapest cloud first, overflowing to the next), and release an instance as soon as it
    has been idle for ``idle_secs`` and the queue does not need it."""

    SUMMARY = "launch for queued cores; release instances once idle"
    OPTIONS = {"idle_secs": int_option(60, minimum=0, help="idle time before an instance is released")}

    def decide(self, view: View, life: Lifecycle) -> Decision:
        d = Decision()
        groups = list(runnable_kinds(view, d.notes)[1].values())
        queued = _cores(groups)
        free = sum(map(_FREE_CORES, view.snapshot.nodes))
        booting = [cn.node for cn in view.cloud_nodes
                   if cn.node is not None and cn.node.is_down and not cn.admin_offline]
        need = queued - free - view.pending_cores - sum(n.np for n in booting)
        draining = draining_nodes(view, life)
        undrained = []
        for cn in draining:
            assert cn.node is not None
            if need > 0:
                d.actions.append(p.undrain(cn.node.name, "queued work needs it again",
                                           cloud=cn.cloud.name, instance=cn.instance.id))
                need -= cn.node.np
                undrained.append(cn.node)
            elif cn.node.is_idle:
                d.actions.extend(retire(cn, "idle, and the queue does not need it"))
        if need > 0 or any(asks_shape(j) for _, j in groups):
            launched = self._launch(view, d, groups, booting + undrained)
            if launched or need > 0:
                return d
        surplus = free - queued
        idle_secs = self.options["idle_secs"]
        for cn in sorted(idle_nodes(view, life), key=lambda c: -_idle_for(view, c)):
            assert cn.node is not None
            idle_for = _idle_for(view, cn)
            if idle_for < idle_secs:
                d.wake(view.now + idle_secs - idle_for)
                continue
            if surplus >= cn.node.np:
                surplus -= cn.node.np
                d.actions.extend(retire(cn, f"idle for {idle_for:.0f} s"))
        return d

    def _launch(self, view: View, d: Decision, groups: list[Group], extra: list[Node]) -> bool:
        """Launch for what free, pending, booting and put-back capacity of use to them does not
        cover, per class of jobs (the clouds that can run them; the classes in the order the
        queue first has them), cheapest cloud first and on to the next; cores, memory and GPUs
        each count. Returns whether anything was short. ``groups``: the queued jobs, by kind."""
        fit = Fit(view)
        clouds = launch_clouds(view)
        classes: dict[tuple[str, ...], list[Group]] = {}
        for n, job in groups:
            names = tuple(c.name for c in clouds if fit.cloud_runs(c, job))
            classes.setdefault(names, []).append((n, job))
        spent = 0.0
        room = {c.name: view.affordable(c, self.price_per_hour) for c in clouds}
        short = False
        for names, group in classes.items():
            unmet = _unmet(view, group, extra)
            if not any(v > 0 for v in unmet):
                continue
            short = True
            for cloud in (c for c in clouds if c.name in names):
                if not any(v > 0 for v in unmet):
                    break
                count = max(_instances(unmet[0], cloud.instance_cores),
                            _instances(unmet[1], cloud.instance_memory_mb),
                            _instances(unmet[2], cloud.instance_gpus), unmet[3]) * self.multiplier
                count = min(count, room[cloud.name],
                            view.affordable(cloud, self.price_per_hour, spent))
                if count <= 0:
                    continue
                # What is still uncovered when this cloud is asked (after the cheaper ones).
                why = (f"{unmet[0]} queued cores not covered by free or pending cores" if unmet[0] > 0
                       else "queued jobs' memory, GPUs or nodes not covered by free or pending capacity")
                d.actions.append(p.launch(cloud.name, count, cloud.capacity, why))
                room[cloud.name] -= count
                spent += count * cloud.price
                unmet = [unmet[0] - count * cloud.instance_cores,
                         unmet[1] - count * cloud.instance_memory_mb if cloud.instance_memory_mb else 0,
                         unmet[2] - count * cloud.instance_gpus, unmet[3] - count]
            if any(v > 0 for v in unmet):
                what = f"{unmet[0]} queued cores" if unmet[0] > 0 else "queued jobs"
                d.notes.append(f"{what} wait: max_instances or price_per_hour reached")
        return short


def _instances(amount: int, per_instance: int) -> int:
    return math.ceil(amount / per_instance) if amount > 0 and per_instance > 0 else 0


def _unmet(view: View, groups: list[Group], extra: list[Node]) -> list[int]:
    """``[cores, memory MiB, GPUs, nodes]`` that the jobs of ``groups`` ask for beyond the free,
    pending and booting capacity of use to them (memory of nodes that do not say it is not
    counted). Nodes: the most distinct nodes one job needs at once, against the nodes of use to
    it."""
    want = [0, 0, 0, 0]
    for n, job in groups:
        for c in job.shape:
            want[0] += n * c.count * c.ppn
            want[1] += n * c.mem_mb * (c.count * c.ppn if c.spread else c.count)
            want[2] += n * c.gpus * c.count
        want[3] = max(want[3], sum(c.count for c in job.shape if not c.spread))
    of_use = Fit.of_use([j for _, j in groups])
    # Capacity of use whose memory is not known covers any memory (as packing counts it): the
    # memory asked for is then no shortfall, so nothing is launched or kept for it alone.
    unknown_memory = False

    def take(key: Key, count: int = 1) -> None:
        nonlocal unknown_memory
        if of_use(key):
            want[0] -= key[0] * count
            if key[1] < UNLIMITED:
                want[1] -= key[1] * count
            elif count > 0:
                unknown_memory = True
            want[2] -= key[2] * count
            want[3] -= count

    booting = {n.name for n in extra}
    for node in view.snapshot.nodes:
        if node.name not in booting and node.free_cores > 0:
            take(view.free_shape(node, node.free_cores))
    for node in extra:
        take(view.free_shape(node, node.np))
    for cloud in view.known_clouds:
        take(cloud_key(cloud), view.pending_count(cloud))
    if unknown_memory:
        want[1] = min(want[1], 0)
    return want


class CostAware(Policy):
    """Packs queued jobs by shape onto the nodes there are, the nodes that are booting, the cores
    running jobs will free before a new instance could boot, and the paid-for instances it drained;
    launches for the rest on the cheapest clouds first, within ``max_instances`` and the budget.
    An idle instance is kept while its charge period is paid, and drained ``scale_in_margin_secs``
    before its next boundary (per-second billing: after ``idle_secs``, default its cloud's
    ``boot_secs``). Jobs that can never fit are named instead of launched for.
    """

    SUMMARY = "packs job shapes, uses paid time, launches cheapest first, drains before boundaries"
    OPTIONS = {
        "scale_in_margin_secs": int_option(120, minimum=0,
                                           help="drain an idle instance this long before its boundary"),
        "idle_secs": int_option(None, minimum=0, help="per-second billing: idle time before release"),
        "walltime_aware": bool_option(True, help="count cores running jobs free before a boot"),
    }

    def decide(self, view: View, life: Lifecycle) -> Decision:
        d = Decision()
        clouds = launch_clouds(view)
        expendable = self._expendable(view, life, d)
        draining = draining_nodes(view, life)
        jobs, kinds = runnable_kinds(view, d.notes)
        # Without a job to place the pool would stay unused (nothing wanted, nothing opened):
        # most evaluations come after the scheduler has started every job that fits.
        pool = self._pool(view, life, clouds, expendable, draining) if jobs else BinPool()
        # Cheapest first; a job may take instances from several clouds. Without a job nothing
        # is opened: no openers either.
        openers = tuple(cloud_opener(c) for c in clouds) if jobs else ()
        serving = _Serving(clouds, openers) if jobs else None
        budget = self.price_per_hour
        spent = 0.0
        # A job like one that found no room, while the pool is as it was then, finds none either
        # (a failed placement changes nothing; money and openers change only with a success).
        # Alike: the same request (one tuple for jobs of one request: jobs_request's cache) and
        # the same clouds.
        hopeless: dict[tuple[int, int, int], int] = {}
        # How many jobs of each kind are still to come: once every kind still to come is
        # hopeless, the rest of the queue changes nothing (behind a full cluster the pass ends
        # after the jobs that found room, not at the queue's end). A short queue is passed over
        # whole: counting costs more there than it saves.
        left = _Left(kinds, serving) if serving is not None and len(jobs) > _LONG_QUEUE else None
        for job in jobs:
            assert serving is not None
            offered = serving.openers(job)
            alike = (id(job.chunks), job.cores, id(offered))
            if left is not None:
                left.take(alike, hopeless, pool.version)
            if hopeless.get(alike) != pool.version:
                if pool.place(job.shape) is not None:
                    continue
                money = None if budget is None else budget - view.spend_rate - spent
                opened_now = pool.place(job.shape, offered, money)
                if opened_now:
                    spent += sum(n * view.snapshot.cloud(name).price for name, n in opened_now.items())
                elif opened_now is None:
                    hopeless[alike] = pool.version
                    if left is not None:
                        left.blocked(alike, pool.version)
            if left is not None and left.all_blocked(pool.version):
                break
        if hopeless and budget is not None:
            self._note_budget(view, clouds, budget, spent, d)
        wanted = pool.used_names()
        spent = 0.0
        for cloud, opener in zip(clouds if jobs else (), openers, strict=True):
            count = opener.opened
            if count:
                count = min(count * self.multiplier, view.affordable(cloud, self.price_per_hour, spent))
                spent += count * cloud.price
                d.actions.append(p.launch(cloud.name, count, cloud.capacity,
                                          "queued jobs packed onto new instances of this cloud"))
        for cn in expendable:
            assert cn.node is not None
            if cn.node.name not in wanted:
                d.actions.extend(retire(cn, self._retire_reason(view, cn)))
        for cn in draining:
            assert cn.node is not None
            if cn.node.name in wanted:
                d.actions.append(p.undrain(cn.node.name, "queued jobs fit on it and its time is paid",
                                           cloud=cn.cloud.name, instance=cn.instance.id))
            elif cn.node.is_idle:
                d.actions.extend(retire(cn, "drained and still idle"))
        return d

    @staticmethod
    def _note_budget(view: View, clouds: list[CloudState], budget: float, asked: float, d: Decision) -> None:
        """Jobs found no room, and every cloud that could still take an instance costs more an
        hour than the budget has left: say that the budget holds them."""
        left = budget - view.spend_rate - asked
        open_clouds = [c for c in clouds if c.headroom > 0]
        if open_clouds and all(c.price > left + 1e-9 for c in open_clouds):
            d.notes.append(f"queued jobs wait: price_per_hour {budget:g} reached "
                           f"({view.spend_rate + asked:g} an hour spent or asked for)")

    def _margin(self, charge: int) -> float:
        return min(float(self.options["scale_in_margin_secs"]), charge / 4)

    def _retire_reason(self, view: View, cn: CloudNode) -> str:
        if cn.cloud.charge_time_secs > 0:
            return f"idle, {cn.charge_left(view.now):.0f} s before its next charge boundary"
        return f"idle for {_idle_for(view, cn):.0f} s (per-second billing)"

    def _expendable(self, view: View, life: Lifecycle, d: Decision) -> list[CloudNode]:
        """Idle instances at their drain moment; wake up for the others' drain moments."""
        out = []
        for cn in idle_nodes(view, life):
            charge = cn.cloud.charge_time_secs
            if charge > 0:
                margin = self._margin(charge)
                left = cn.charge_left(view.now)
                if left <= margin:
                    out.append(cn)
                else:
                    d.wake(view.now + left - margin)
            else:
                grace = self.options["idle_secs"]
                grace = cn.cloud.boot_secs if grace is None else grace
                idle_for = _idle_for(view, cn)
                if idle_for >= grace:
                    out.append(cn)
                else:
                    d.wake(view.now + grace - idle_for)
        return out

    def _pool(self, view: View, life: Lifecycle, clouds: list[CloudState], expendable: list[CloudNode],
              draining: list[CloudNode]) -> BinPool:
        """Capacity queued jobs can use without a launch."""
        pool = BinPool()
        named = {cn.node.name for cn in expendable + draining if cn.node is not None}
        free = {n.name: n.free_cores for n in view.snapshot.nodes if n.is_usable and n.name not in named}
        if self.options["walltime_aware"] and clouds:
            horizon = min(c.boot_secs for c in clouds)
            now = view.now
            for job in view.running:
                left: float | None = job.remaining_secs
                if left is None and job.walltime_secs is not None and job.started_at is not None:
                    left = job.walltime_secs - (now - job.started_at)
                if left is None or left > horizon:
                    continue  # most running jobs: not ending before a boot
                hosts = [h for h in job.exec_hosts if h in free]
                if not hosts:
                    continue
                share = max(1, job.cores // max(1, len(job.exec_hosts)))
                for host in hosts:
                    free[host] = min(view.nodes_by_name[host].np, free[host] + share)
        for name, cores in free.items():
            if cores > 0:  # the pool takes no bin without a free core
                pool.add(*view.free_shape(view.nodes_by_name[name], cores))
        for cloud in view.known_clouds:
            pending = view.pending_count(cloud)
            if pending:
                pool.add_many(cloud_key(cloud), pending)
        for cn in view.cloud_nodes:
            if cn.node is not None and cn.node.is_down and not cn.admin_offline and \
                    cn.node.name not in life.handled:
                pool.add(*view.free_shape(cn.node, cn.node.np))
        for cn in sorted(expendable + draining, key=lambda c: -c.charge_left(view.now)):
            assert cn.node is not None
            pool.add_named(cn.node.name, *view.free_shape(cn.node, max(0, cn.node.np - cn.node.used_slots)))
        return pool


def cloud_opener(cloud: CloudState) -> Opener:
    """New instances of ``cloud`` as packing bins: its headroom, shape and price."""
    return Opener(cloud.name, cloud.headroom, cloud.instance_cores, cloud.price,
                  mem_mb=cloud.instance_memory_mb, gpus=cloud.instance_gpus,
                  properties=cloud.node_properties)


#: Queued jobs above which CostAware counts them by kind to end its pass early.
_LONG_QUEUE = 200


class _Left:
    """The jobs still to come in CostAware's pass over the queue, counted by kind as that pass
    names them (the request's identity, the cores and the clouds that take the job), and how
    many of those kinds are hopeless at the pool's version: when all of them are, no job still
    to come can change the plan. The counts must be exact: a kind counted and never reached
    would only keep the pass going to the end, but one reached and not counted must not be."""

    __slots__ = ("_count", "_version", "_blocked")

    def __init__(self, kinds: Mapping[KindKey, tuple[int, Job]], serving: _Serving):
        self._count: dict[tuple[int, int, int], int] = {}
        for (chunks, cores, _queue, _rerunnable), (n, one) in kinds.items():
            alike = (chunks, cores, id(serving.openers(one)))
            self._count[alike] = self._count.get(alike, 0) + n
        self._version = -1
        self._blocked = 0  # kinds still to come that are hopeless at _version

    def take(self, alike: tuple[int, int, int], hopeless: dict[tuple[int, int, int], int], version: int) -> None:
        """A job of ``alike`` is reached."""
        n = self._count[alike] - 1
        if n:
            self._count[alike] = n
            return
        del self._count[alike]
        if self._version == version and hopeless.get(alike) == version:
            self._blocked -= 1

    def blocked(self, alike: tuple[int, int, int], version: int) -> None:
        """``alike`` was found hopeless at ``version``."""
        if self._version != version:
            self._version, self._blocked = version, 0
        if alike in self._count:
            self._blocked += 1

    def all_blocked(self, version: int) -> bool:
        return self._version == version and self._blocked == len(self._count)


class _Serving:
    """The openers of the clouds that take each kind of job: its queue, and for spot clouds
    whether it is rerunnable and asks for spot (the same objects: what one job opens counts
    against every other job's room)."""

    def __init__(self, clouds: list[CloudState], openers: tuple[Opener, ...]):
        self._pairs = list(zip(clouds, openers, strict=True))
        self._spot = any(c.spot for c in clouds)
        self._by_kind: dict[tuple[str | bool, ...], tuple[Opener, ...]] = {}

    def openers(self, job: Job) -> tuple[Opener, ...]:
        kind = (job.queue, job.rerunnable is True, asks_spot(job)) if self._spot else (job.queue,)
        found = self._by_kind.get(kind)
        if found is None:
            found = self._by_kind[kind] = tuple(o for c, o in self._pairs if c.takes(job))
        return found


class LocalOnly(Policy):
    """Never launches: the cluster as it is (a replay baseline). Instances already running are
    still joined, and released when idle at their charge boundary."""

    SUMMARY = "no cloud at all (a baseline)"

    def decide(self, view: View, life: Lifecycle) -> Decision:
        d = Decision()
        for cn in idle_nodes(view, life) + [c for c in draining_nodes(view, life) if not c.busy]:
            d.actions.extend(retire(cn, "LocalOnly: no cloud instances are kept"))
        return d


class LaunchMax(Policy):
    """Keeps every cloud at ``max_instances`` (within the budget) from the start and never scales
    in: the "provision the maximum up front" baseline of the cloud-bursting literature."""

    SUMMARY = "every cloud at max_instances all the time (a baseline)"

    def decide(self, view: View, life: Lifecycle) -> Decision:
        d = Decision()
        for cn in draining_nodes(view, life):
            assert cn.node is not None
            d.actions.append(p.undrain(cn.node.name, "LaunchMax keeps every instance",
                                       cloud=cn.cloud.name, instance=cn.instance.id))
        spent = 0.0
        for cloud in launch_clouds(view):
            count = view.affordable(cloud, self.price_per_hour, spent)
            if count > 0:
                d.actions.append(p.launch(cloud.name, count, cloud.capacity, "LaunchMax: fill to max_instances"))
                spent += count * cloud.price
        return d


POLICIES: tuple[type[Policy], ...] = (OnDemandPlusPlus, OnDemand, CostAware, LocalOnly, LaunchMax)
