"""Why a queued job waits: one sentence per job on what Phorque is doing about it.

Pure, like the policies: it takes the snapshot a plan was made from and the plan, and tells for
each queued job, in the order Torque's FIFO considers them (the first jobs take the free cores),
whether it is covered by free cores of existing nodes, by an instance that is booting or asked
for, by an instance this plan launches, or why nothing is launched for it: every cloud that
could run it is backed off, unreachable, at ``max_instances`` or over ``price_per_hour``; the
policy waits for running jobs' cores; or no node or instance can ever hold it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from phorque.core.model import Chunk, CloudState, Health, Job, Snapshot
from phorque.core.plan import Kind, Plan
from phorque.policy.common import Limits, cloud_key, never_reason, runs_on
from phorque.policy.packing import BinPool, Opener
from phorque.policy.view import View


class WhyKind(StrEnum):
    FREE = "free"                    # free cores of existing nodes: the scheduler's turn
    BOOTING = "booting"              # an instance of Phorque's that is starting or joining
    REQUESTED = "requested"          # capacity asked of a group, not yet an instance
    LAUNCHING = "launching"          # an instance the plan launches for it
    WAITING = "waiting"              # the policy waits for running jobs' cores
    BUDGET = "budget"                # one more instance would exceed price_per_hour
    MAX_INSTANCES = "max_instances"  # every cloud that could run it is full
    BACKED_OFF = "backed_off"        # ... backed off after failures, or unreachable
    NEVER = "never"                  # no node or instance there can be holds it
    REFUSED = "refused"              # pbs_server refuses to start it
    NOT_COUNTED = "not_counted"      # a queue Phorque does not serve


@dataclass(frozen=True)
class Why:
    job: str
    kind: WhyKind
    text: str
    cloud: str | None = None
    instance: str | None = None
    node: str | None = None
    ready_at: float | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind.value, "text": self.text}
        for key in ("cloud", "instance", "node", "ready_at"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def clock_text(at: float, now: float) -> str:
    """``13:05:10 UTC (in 90 s)``: a moment as the status shows it."""
    # Arithmetic, not the datetime module: the policy core does no I/O and reads no clock.
    of_day = int(at) % 86400
    shown = f"{of_day // 3600:02d}:{of_day // 60 % 60:02d}:{of_day % 60:02d} UTC"
    delta = at - now
    if delta >= 0.5:
        return f"{shown} (in {delta:.0f} s)"
    if delta <= -0.5:
        return f"{shown} ({-delta:.0f} s ago)"
    return shown


def _names(names: Iterable[str], limit: int = 3) -> str:
    items = sorted(names)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def explain(snapshot: Snapshot, plan: Plan | None, budget: float | None,
            queues: frozenset[str] | None = None, launches_only: bool = False) -> dict[str, Why]:
    """One :class:`Why` per queued job of ``snapshot`` (``queues``: the ones Phorque serves,
    None for all), for the ``plan`` made from it (None: as if it launched nothing).

    With ``launches_only`` the walk stops once the plan's new instances are taken: the jobs
    after that are left out (what the daemon needs to time its reactions, on a long queue)."""
    view = View(snapshot, queues)
    limits = Limits.of(view)
    out: dict[str, Why] = {}
    for job in snapshot.jobs:
        if job.is_queued and queues is not None and job.queue not in queues:
            out[job.id] = Why(job.id, WhyKind.NOT_COUNTED,
                              f"it is in queue {job.queue}, which Phorque does not serve (queue_name)")
    for job in view.refused:
        out[job.id] = Why(job.id, WhyKind.REFUSED,
                          f"pbs_server refuses to start it ({job.refused_by_server}); "
                          "no instance is launched for it")
    tiers = _Tiers(view, plan, budget)
    for job in view.queued:
        if launches_only and not any(o.room for o in tiers.openers.values()):
            break
        never = never_reason(job, limits)
        if never is not None:
            out[job.id] = Why(job.id, WhyKind.NEVER, f"it can never run: {never}")
            continue
        out[job.id] = tiers.place(job)
    return out


def _frees(pool: BinPool) -> list[int]:
    return [bin_.free for bin_ in pool.named]


def _taken(pool: BinPool, before: list[int]) -> set[str]:
    """The named bins a placement took cores of."""
    return {bin_.name for bin_, free in zip(pool.named, before, strict=False) if bin_.free < free}


class _Tiers:
    """Capacity in the order it serves queued jobs: free cores, booting and requested
    instances, the plan's new instances."""

    def __init__(self, view: View, plan: Plan | None, budget: float | None):
        self.view = view
        self.budget = budget
        self.now = view.now
        self.free = BinPool()
        for node in view.snapshot.nodes:
            if node.is_usable and node.free_cores > 0:
                cores, mem, gpus, props = view.free_shape(node, node.free_cores)
                self.free.add_named(node.name, cores, mem, gpus, props)
        # Booting and requested capacity, per cloud: a cloud that serves only some queues
        # takes only their jobs.
        self.coming: dict[str, BinPool] = {}
        self.ready: dict[str, tuple[str, WhyKind, float | None]] = {}
        for cloud in view.known_clouds:
            pool = self.coming[cloud.name] = BinPool()
            key = cloud_key(cloud)
            starting = [cn for cn in view.cloud_nodes if cn.cloud.name == cloud.name
                        and cn.instance.state.is_valid and not cn.is_up and not cn.admin_offline]
            for cn in starting:
                name = f"instance {cn.instance.id}"
                pool.add_named(name, *key)
                launched_at = cn.instance.launch_time or (cn.owned.launch_time if cn.owned else None)
                self.ready[name] = (cn.instance.id, WhyKind.BOOTING,
                                    None if launched_at is None else launched_at + cloud.boot_secs)
            valid = sum(1 for i in cloud.instances if i.state.is_valid)
            for n in range(max(0, cloud.capacity - valid)):
                name = f"requested {cloud.name} {n}"
                pool.add_named(name, *key)
                self.ready[name] = ("", WhyKind.REQUESTED, None)
        launched: dict[str, int] = {}
        for action in (plan.ordered() if plan is not None else ()):
            if action.kind == Kind.LAUNCH and action.cloud:
                launched[action.cloud] = launched.get(action.cloud, 0) + (action.count or 0)
        self.launched = launched
        self.openers: dict[str, Opener] = {}
        for cloud in view.snapshot.clouds:
            if launched.get(cloud.name):
                self.openers[cloud.name] = Opener(cloud.name, launched[cloud.name], cloud.instance_cores,
                                                  cloud.price, mem_mb=cloud.instance_memory_mb,
                                                  gpus=cloud.instance_gpus,
                                                  properties=cloud.node_properties)
        self.extra_spend = sum(c.price * launched.get(c.name, 0) for c in view.snapshot.clouds)
        self._held_memo: dict[tuple[str, tuple[Chunk, ...], bool | None], Why] = {}

    def place(self, job: Job) -> Why:
        shape = job.shape
        before = _frees(self.free)
        if self.free.place(shape) is not None:
            nodes = _names(_taken(self.free, before)) or "existing nodes"
            return Why(job.id, WhyKind.FREE, f"covered by free cores on {nodes}; it starts when "
                       "the scheduler places it", node=nodes)
        for cloud in self.view.known_clouds:
            if not cloud.takes(job):
                continue
            pool = self.coming[cloud.name]
            before = _frees(pool)
            if pool.place(shape) is None:
                continue
            used = sorted(_taken(pool, before))
            instance, kind, ready = self.ready[used[0]]
            if kind == WhyKind.BOOTING:
                when = f"; it should be ready about {clock_text(ready, self.now)}" if ready else ""
                ids = _names(self.ready[u][0] for u in used)
                return Why(job.id, kind, f"covered by instance {ids} of cloud {cloud.name}, "
                           f"booting{when}", cloud=cloud.name, instance=instance, ready_at=ready)
            return Why(job.id, kind, f"covered by {len(used)} instance(s) already asked of cloud "
                       f"{cloud.name}, not started yet", cloud=cloud.name)
        openers = tuple(o for name, o in self.openers.items()
                        if self.view.snapshot.cloud(name).takes(job))
        opened = BinPool().place(shape, openers) if openers else None
        if opened:
            # The openers count what they opened: the next job gets what is left.
            name = next(iter(opened))
            cloud = self.view.snapshot.cloud(name)
            ready = self.now + cloud.boot_secs
            return Why(job.id, WhyKind.LAUNCHING, f"an instance of cloud {name} is launched for it "
                       f"now; it should be ready about {clock_text(ready, self.now)}",
                       cloud=name, ready_at=ready)
        # The same for every job of one queue and shape (the clouds' limits do not change while
        # the queue is walked): worked out once.
        key = (job.queue, shape, job.rerunnable)
        held = self._held_memo.get(key)
        if held is None:
            held = self._held_memo[key] = self._held(job)
        return dataclasses.replace(held, job=job.id)

    def _held(self, job: Job) -> Why:
        """Nothing covers the job: why no instance is launched for it."""
        able = [c for c in self.view.snapshot.clouds if c.max_instances > 0
                and c.takes(job) and runs_on(job.shape, cloud_key(c))]
        if not able:
            spot_only = any(c.spot and c.serves(job.queue) and runs_on(job.shape, cloud_key(c))
                            for c in self.view.snapshot.clouds if c.max_instances > 0)
            if spot_only and job.rerunnable is not True:
                return Why(job.id, WhyKind.WAITING, "waiting for cores of the cluster's own nodes: "
                           "only spot capacity could run it, and it is not rerunnable (qsub -r y)")
            return Why(job.id, WhyKind.WAITING, "waiting for cores of the cluster's own nodes: no "
                       "cloud runs it (its queue or shape)")
        blocks = [(c, self._block(c)) for c in able]
        held = [(c, block) for c, block in blocks if block is not None]
        if len(held) == len(blocks):
            first_cloud, (kind, _text) = held[0]
            text = "; ".join(t for _, (_, t) in held)
            return Why(job.id, kind, f"held back: {text}", cloud=first_cloud.name)
        open_cloud = next(c for c, block in blocks if block is None)
        ends = [j.started_at + j.walltime_secs for j in self.view.running
                if j.started_at is not None and j.walltime_secs]
        ends += [self.now + j.remaining_secs for j in self.view.running if j.remaining_secs is not None]
        if ends:
            first = min(ends)
            return Why(job.id, WhyKind.WAITING, "waiting for running jobs' cores: the first running "
                       f"job should end by {clock_text(first, self.now)}, before a new instance of "
                       f"cloud {open_cloud.name} would be ready ({open_cloud.boot_secs} s to boot)",
                       cloud=open_cloud.name, ready_at=first)
        return Why(job.id, WhyKind.WAITING, "waiting: the policy launches nothing for it now "
                   f"(cloud {open_cloud.name} could run it)", cloud=open_cloud.name)

    def _block(self, cloud: CloudState) -> tuple[WhyKind, str] | None:
        if cloud.health == Health.UNREACHABLE:
            error = f" ({cloud.error})" if cloud.error else ""
            return WhyKind.BACKED_OFF, f"cloud {cloud.name} cannot be read{error}"
        if cloud.health in (Health.BACKOFF, Health.FAILED) or (
                cloud.backoff_until is not None and cloud.backoff_until > self.now):
            until = f" until {clock_text(cloud.backoff_until, self.now)}" if cloud.backoff_until else ""
            error = f" after: {cloud.error}" if cloud.error else ""
            return WhyKind.BACKED_OFF, f"cloud {cloud.name} is backed off{until}{error}"
        if cloud.capacity + self.launched.get(cloud.name, 0) >= cloud.max_instances:
            return WhyKind.MAX_INSTANCES, (f"cloud {cloud.name} is at max_instances "
                                           f"({cloud.max_instances})")
        if self.budget is not None and cloud.price > 0 and \
                self.view.affordable(cloud, self.budget, self.extra_spend) == 0:
            spend = self.view.spend_rate + self.extra_spend
            return WhyKind.BUDGET, (f"price_per_hour {self.budget:g} would be exceeded by one more "
                                    f"instance of cloud {cloud.name} ({cloud.price:g}/h; spending "
                                    f"{spend:g}/h)")
        return None
