"""An independent reference simulator, to cross-check ``phorque-replay``'s figures.

It shares no code with :mod:`phorque.replay` or :mod:`phorque.policy` and imports nothing from
``phorque``: it reads the SWF file itself and implements, from the README's description, the
model the replay documents ("Replay", "Inputs", "What is simulated", "Figures"), so that a wrong
scheduler, boot delay, join time or billing rule in the replay shows up as a different mean wait
or cost here.

The model
---------
* **Jobs** (SWF, gzip or plain, 18 whitespace columns): field 2 the submit time after the
  header's ``UnixStartTime``, field 4 the run time, field 5 (else 8) the processors, taken anywhere
  on the cluster, field 9 the walltime (without one: 2 x the run time, at least 60 s). A job runs
  for its run time, or is killed at its walltime. Lines with a negative run time or no processors
  are left out. A window keeps the jobs submitted in ``[start, start + days)``, and the replay
  starts at the window's start on an empty cluster.
* **The cluster**: static nodes of ``np`` cores, then cloud nodes in the order they joined
  (within one evaluation: cheapest cloud first, then launch order). A job takes its cores from
  the first nodes with free cores, in that order, several per node. Memory asks are not limits
  (no node says its memory), so they are ignored.
* **The scheduler**: pbs_sched's FIFO (not strict): after the events of an instant, the queue is
  walked in submit order (ties: trace order) and every job whose cores are free starts; the others
  are skipped. A job wider than the static cores plus every cloud at ``max_instances`` is never
  scheduled (``never_run``); one that only this policy never gave room stays queued
  (``unstarted``). Both are left out of the mean wait.
* **Evaluations** (the daemon in ``events`` mode): one at the start. A submit and a job end
  are triggers (a finished boot is none, see below): the first after a quiet moment is answered
  at once; one that comes within ``event_delay`` after an evaluation that triggers asked for
  waits until then (those in that window share it); and after three back to back, one each
  0.5 s at most (a token bucket). A plan's wake-up (at least a second ahead; each plan replaces
  the previous one). A reconciliation ``loop`` seconds after the previous one, every one of them
  as the daemon makes them (the replay skips those that would see nothing new, and this checks
  that it may). A trigger heard before a wake-up or a reconciliation that waits past it is
  answered with it, in one evaluation. A plan made from a look that shows instances not joined
  yet (those it joins now included), or that launches, looks again ``min(15, max(2, boot / 4))``
  s later: nothing announces a finished boot.
* **Instances**: asked for at ``t``, they boot at ``t + boot`` and join Torque at the first
  evaluation at or after that (free at once: no mom delay). Each is billed from its request to
  its termination in whole started charge periods (``charge`` 0: per second); cost = billed
  hours x price, instance-hours = billed seconds / 3600. When the last job that can start has
  ended, the policy may still release instances for ``max(3600, charge) + loop`` seconds; those
  still alive then are billed up to the end of the work.
* **Policies**:

  - ``LocalOnly``: never launches.
  - ``LaunchMax``: at every evaluation, each cloud is raised to ``max_instances`` (no budget).
  - ``OnDemand``: ``need`` = queued cores (of jobs that can ever run) - free cores of every node -
    cores of the instances not joined yet. With ``need > 0`` it launches ``ceil(need / cores)``
    instances, cheapest cloud first up to its ``max_instances``, the rest on the next, and does
    nothing else. Otherwise, each joined, idle node idle for ``idle_secs`` (60) is released
    (terminated at once) while ``free - queued`` cores still covers its cores (longest idle
    first); a node idle for less asks to be looked at again when it reaches ``idle_secs``.
    A node's idleness starts at the first evaluation that sees it empty.
  - ``OnDemandPlusPlus`` (the original's arithmetic): ``need`` = queued cores (of jobs that can
    ever run) - every core of each node with a free core - cores of the instances not joined
    yet. With ``need > 0`` it launches ``ceil(need / cores)`` instances on the cheapest cloud
    below its ``max_instances`` (up to it; the next cloud only at a later evaluation). With
    nothing queued, or nothing needed and no instance unjoined, each joined, empty node within
    ``3 x loop`` of its next charge boundary (counted from its request) is released, and at
    once with per-second billing; an empty node further from it asks to be looked at again
    when it gets that close.

Left out (the windows checked here do not need them): node shapes (memory, GPUs, properties,
``nodes=`` parts), accounting logs, budgets (``price_per_hour``), ``multiplier``, queues, the
``strict`` and ``easy`` schedulers, ``poll`` mode, mom delays, spot instances and interruptions,
boot timeouts and cloud faults (OnDemandPlusPlus's stalled clouds), every policy but the four above, and the figures other than the
waits, job counts, cost and instance-hours.
"""

from __future__ import annotations

import gzip
import heapq
import math
import time
from dataclasses import dataclass, field

DAY = 86400.0
LOCAL_ONLY, LAUNCH_MAX, ON_DEMAND, ODPP = "LocalOnly", "LaunchMax", "OnDemand", "OnDemandPlusPlus"
POLICIES = (LOCAL_ONLY, LAUNCH_MAX, ON_DEMAND, ODPP)


# -- the trace ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    number: int
    submit: float
    run: float        # what it really runs here: its run time, cut at its walltime
    cores: int


@dataclass
class Workload:
    jobs: list[Job]
    start: float
    max_procs: int | None


def _int(text: str) -> int:
    return int(float(text))


def read_swf(path: str, start_days: float = 0.0, days: float | None = None,
             walltime_factor: float = 2.0) -> Workload:
    """The jobs of the SWF file ``path`` submitted in the window."""
    opener = gzip.open if path.endswith(".gz") else open
    origin = 0.0
    max_procs: int | None = None
    raw: list[Job] = []
    with opener(path, "rt", encoding="utf-8", errors="replace") as stream:
        for line in stream:
            if line.startswith(";"):
                key, _, value = line[1:].partition(":")
                key, value = key.strip(), value.strip()
                if key == "UnixStartTime" and value:
                    origin = float(_int(value.split()[0]))
                elif key in ("MaxProcs", "MaxNodes") and value and max_procs is None:
                    max_procs = _int(value.split()[0]) or None
                continue
            cols = line.split()
            if len(cols) != 18:
                continue
            number, submit, run = _int(cols[0]), _int(cols[1]), _int(cols[3])
            cores = _int(cols[4]) if _int(cols[4]) > 0 else _int(cols[7])
            requested = _int(cols[8])
            if run < 0 or cores <= 0:
                continue
            walltime = requested if requested > 0 else max(60, math.ceil(run * walltime_factor))
            raw.append(Job(number, origin + submit, float(min(run, walltime)), cores))
    begin = origin + start_days * DAY
    end = math.inf if days is None else begin + days * DAY
    jobs = sorted((j for j in raw if begin <= j.submit < end), key=lambda j: j.submit)
    return Workload(jobs, begin, max_procs)


# -- the set-up ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cloud:
    name: str
    price: float          # per instance-hour
    cores: int
    max_instances: int
    boot_secs: float = 120.0
    charge_secs: int = 3600


#: The replay's default clouds (README, "Replay").
DEFAULT_CLOUDS = (Cloud("cheap", 0.05, 8, 16), Cloud("dear", 0.20, 8, 64))


@dataclass(frozen=True)
class Setup:
    static_nodes: int
    static_np: int
    clouds: tuple[Cloud, ...] = DEFAULT_CLOUDS
    event_delay: float = 0.2
    #: The rate limit of triggered evaluations: ``burst`` back to back, then one per
    #: ``rate_interval`` seconds.
    burst: int = 3
    rate_interval: float = 0.5
    loop: float = 120.0
    idle_secs: float = 60.0
    wake_guard: float = 1.0


# -- the simulated world ---------------------------------------------------------------------------------
@dataclass(eq=False)
class Node:
    np: int
    free: int
    instance: Instance | None = None
    jobs: set[int] = field(default_factory=set)
    idle_since: float | None = None


@dataclass(eq=False)
class Instance:
    cloud: int            # index in Setup.clouds (cheapest first)
    seq: int
    launch: float
    boot_at: float
    booted: bool = False
    node: Node | None = None


@dataclass
class Figures:
    policy: str
    jobs: int
    started: int
    unstarted: int
    never_run: int
    mean_wait: float
    cost: float
    instance_hours: float
    launched: int
    work_end: float
    run_secs: float
    by_cloud: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (cost, hours)
    #: Each started job's start time by job number, and each instance's (cloud, launch, end).
    starts: dict[int, float] = field(default_factory=dict, repr=False)
    instances: list[tuple[str, float, float]] = field(default_factory=list, repr=False)


def billed_secs(lived: float, charge: int) -> float:
    """Whole started charge periods (at least one); per second with ``charge`` 0. A microsecond
    of slack keeps float noise from paying an extra period."""
    if charge <= 0:
        return max(0.0, lived)
    return charge * max(1, math.ceil(lived / charge - 1e-9))


class Reference:
    """One policy over one workload."""

    def __init__(self, workload: Workload, setup: Setup, policy: str):
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}")
        self.w, self.s, self.policy = workload, setup, policy
        self.now = workload.start
        self.nodes = [Node(setup.static_np, setup.static_np) for _ in range(setup.static_nodes)]
        self.possible = setup.static_nodes * setup.static_np + sum(c.cores * c.max_instances
                                                                  for c in setup.clouds)
        self.queue: list[Job] = []          # in submit order
        self.never = 0
        self.waits: list[float] = []
        self.starts: dict[int, float] = {}
        self.lives: list[tuple[str, float, float]] = []
        self.running: dict[int, tuple[Job, list[tuple[Node, int]]]] = {}
        self.live: list[list[Instance]] = [[] for _ in setup.clouds]
        self.launched = [0] * len(setup.clouds)
        self.paid = [0.0] * len(setup.clouds)
        self.timeline: list[tuple[float, int, int, object]] = []   # (t, kind, seq, item)
        self._n = 0
        self.wake_at: float | None = None
        # The reconciliations: the first at the start, then every ``loop`` after the previous.
        self.next_rec = workload.start
        self.dirty = False
        # Triggers: when the first one since the last evaluation came; the end of the window
        # in which triggers wait for the next evaluation; the rate limit's tokens.
        self.heard: float | None = None
        self.quiet_at = -math.inf
        self.tokens, self.tokens_at = float(setup.burst), workload.start
        self.sched_due = False

    # -- time --------------------------------------------------------------------------------------------
    def _at(self, t: float, kind: int, item: object) -> None:
        self._n += 1
        heapq.heappush(self.timeline, (t, kind, self._n, item))

    def _changed(self) -> None:
        """Something changed since the last evaluation (the end of the work waits for it)."""
        self.dirty = True

    def _event(self) -> None:
        """A submit or a job end: a trigger for the daemon."""
        self._changed()
        if self.heard is None:
            self.heard = self.now

    def _tokens(self, t: float) -> float:
        return min(float(self.s.burst), self.tokens + max(0.0, t - self.tokens_at) / self.s.rate_interval)

    def _next_evaluation(self) -> float:
        """The reconciliation or the wake-up; a trigger heard before
        them is answered at once, unless it came within ``event_delay`` of an evaluation that
        triggers asked for or the tokens ran out: then when those allow."""
        due = min(self.next_rec,
                  self.wake_at if self.wake_at is not None else math.inf)
        if self.heard is None or self.heard > due:
            return due
        at = max(self.heard, self.quiet_at)
        short = 1.0 - self._tokens(at)
        return at + short * self.s.rate_interval if short > 0 else at

    # -- the scheduler -----------------------------------------------------------------------------------
    def _schedule(self) -> None:
        self.sched_due = False
        free = sum(n.free for n in self.nodes)
        started = []
        for job in self.queue:
            if free == 0:
                break
            if job.cores > free:
                continue
            left, shares = job.cores, []
            for node in self.nodes:
                if node.free:
                    take = min(node.free, left)
                    node.free -= take
                    node.jobs.add(job.number)
                    shares.append((node, take))
                    left -= take
                    if not left:
                        break
            free -= job.cores
            started.append(job)
            self.running[job.number] = (job, shares)
            self.waits.append(self.now - job.submit)
            self.starts[job.number] = self.now
            self._at(self.now + job.run, END, job.number)
        if started:
            done = {j.number for j in started}
            self.queue = [j for j in self.queue if j.number not in done]
            self._changed()

    def _end(self, number: int) -> None:
        _job, shares = self.running.pop(number)
        for node, cores in shares:
            node.free += cores
            node.jobs.discard(number)
        self.sched_due = True
        self._event()

    # -- the clouds ----------------------------------------------------------------------------------------
    def _launch(self, k: int, count: int) -> None:
        cloud = self.s.clouds[k]
        for _ in range(count):
            self.launched[k] += 1
            inst = Instance(k, self.launched[k], self.now, self.now + cloud.boot_secs)
            self.live[k].append(inst)
            self._at(inst.boot_at, BOOT, inst)

    def _bill(self, inst: Instance, until: float) -> None:
        self.lives.append((self.s.clouds[inst.cloud].name, inst.launch, until))
        self.paid[inst.cloud] += billed_secs(until - inst.launch, self.s.clouds[inst.cloud].charge_secs)

    def _terminate(self, inst: Instance) -> None:
        assert inst.node is not None and not inst.node.jobs
        self.nodes.remove(inst.node)
        self.live[inst.cloud].remove(inst)
        self._bill(inst, self.now)

    # -- an evaluation -----------------------------------------------------------------------------------
    def _evaluate(self) -> None:
        now = self.now
        reconciliation = now >= self.next_rec
        triggered = self.heard is not None
        self.heard = None
        self.dirty = False
        joined = [i for k in self.live for i in k if i.node is not None]
        for inst in joined:       # what this look at Torque shows: which nodes are idle since when
            node = inst.node
            if node.jobs:
                node.idle_since = None
            elif node.idle_since is None:
                node.idle_since = now
        to_join = [i for k in self.live for i in k if i.node is None and i.booted]
        unjoined_at_start = {i.cloud for k in self.live for i in k if i.node is None}
        unjoined_cores = sum(self.s.clouds[i.cloud].cores for k in self.live for i in k if i.node is None)
        acted = bool(to_join)
        wake: float | None = None
        launches: list[tuple[int, int]] = []
        retire: list[Instance] = []
        if self.policy == LAUNCH_MAX:
            launches = [(k, c.max_instances - len(self.live[k])) for k, c in enumerate(self.s.clouds)
                        if len(self.live[k]) < c.max_instances]
        elif self.policy == ON_DEMAND:
            queued = sum(j.cores for j in self.queue)
            free = sum(n.free for n in self.nodes)
            need = queued - free - unjoined_cores
            if need > 0:
                for k, cloud in enumerate(self.s.clouds):
                    count = min(math.ceil(need / cloud.cores), cloud.max_instances - len(self.live[k]))
                    if count <= 0:
                        continue
                    launches.append((k, count))
                    need -= count * cloud.cores
                    if need <= 0:
                        break
            else:
                surplus = free - queued
                idle = sorted((i for i in joined if not i.node.jobs),
                              key=lambda i: -(now - i.node.idle_since))
                for inst in idle:
                    idle_for = max(0.0, now - inst.node.idle_since)
                    if idle_for < self.s.idle_secs:
                        at = now + self.s.idle_secs - idle_for
                        wake = at if wake is None else min(wake, at)
                        continue
                    if surplus >= inst.node.np:
                        surplus -= inst.node.np
                        retire.append(inst)
        elif self.policy == ODPP:
            # The original's arithmetic: a node with any free core counts all its cores.
            queued = sum(j.cores for j in self.queue)
            need = queued - sum(n.np for n in self.nodes if n.free) - unjoined_cores
            if queued and need > 0:
                for k, cloud in enumerate(self.s.clouds):
                    room = cloud.max_instances - len(self.live[k])
                    if room > 0:
                        launches.append((k, min(math.ceil(need / cloud.cores), room)))
                        break
            if not queued or (need <= 0 and not unjoined_cores):
                window = 3 * self.s.loop
                for inst in joined:
                    if inst.node.jobs:
                        continue
                    charge = self.s.clouds[inst.cloud].charge_secs
                    left = charge - (now - inst.launch) % charge if charge > 0 else 0.0
                    if left <= window:
                        retire.append(inst)
                    else:
                        at = now + left - window
                        wake = at if wake is None else min(wake, at)
        # Apply: joins, terminations, launches.
        for inst in to_join:
            inst.node = Node(self.s.clouds[inst.cloud].cores, self.s.clouds[inst.cloud].cores, inst)
            self.nodes.append(inst.node)
            self.sched_due = True
        for inst in retire:
            self._terminate(inst)
        for k, count in launches:
            if count > 0:
                self._launch(k, count)
        acted = acted or bool(retire) or any(c > 0 for _, c in launches)
        # Nothing announces a finished boot to Phorque: while the snapshot this plan was made
        # from shows instances not joined yet (those it joins now included), or it launches,
        # it looks again soon.
        for k, cloud in enumerate(self.s.clouds):
            if k in unjoined_at_start or any(kk == k and c > 0 for kk, c in launches):
                at = now + min(15.0, max(2.0, cloud.boot_secs / 4))
                wake = at if wake is None else min(wake, at)
        if acted:
            self._changed()
        self.wake_at = None if wake is None else max(wake, now + self.s.wake_guard)
        if triggered:
            self.quiet_at = now + self.s.event_delay
            self.tokens, self.tokens_at = max(0.0, self._tokens(now) - 1.0), now
        if reconciliation:
            self.next_rec = now + self.s.loop

    # -- the run -------------------------------------------------------------------------------------------
    def run(self) -> Figures:
        wall = time.perf_counter()
        jobs, total, nxt = self.w.jobs, len(self.w.jobs), 0
        inf = math.inf
        work_end: float | None = None
        tail_end = inf
        while True:
            t = min(jobs[nxt].submit if nxt < total else inf,
                    self.timeline[0][0] if self.timeline else inf,
                    self._next_evaluation())
            if t == inf:
                break
            if work_end is not None and (t > tail_end or not any(self.live)):
                break
            self.now = t
            while nxt < total and jobs[nxt].submit <= t:
                job = jobs[nxt]
                nxt += 1
                if job.cores > self.possible:
                    self.never += 1
                else:
                    self.queue.append(job)
                    self.sched_due = True
                self._event()
            while self.timeline and self.timeline[0][0] <= t:
                _, kind, _, item = heapq.heappop(self.timeline)
                if kind == END:
                    self._end(item)  # type: ignore[arg-type]
                elif kind == BOOT:
                    inst: Instance = item  # type: ignore[assignment]
                    if inst in self.live[inst.cloud]:
                        inst.booted = True
                        self._changed()
            if self.sched_due:
                self._schedule()
            if self._next_evaluation() <= t:
                self._evaluate()
                if self.sched_due:
                    self._schedule()
            if work_end is None and nxt >= total and not self.running and (
                    not self.queue or (not self.timeline and not self.dirty and self.heard is None)):
                work_end = t
                if not any(self.live):
                    break
                charge = max((c.charge_secs for c in self.s.clouds), default=0)
                tail_end = t + max(3600.0, float(charge)) + self.s.loop
        end = work_end if work_end is not None else self.now
        for instances in self.live:
            for inst in instances:
                self._bill(inst, end)
        by_cloud = {c.name: (self.paid[k] / 3600 * c.price, self.paid[k] / 3600)
                    for k, c in enumerate(self.s.clouds)}
        waits = self.waits
        return Figures(
            policy=self.policy, jobs=total, started=len(waits), unstarted=len(self.queue),
            never_run=self.never, mean_wait=sum(waits) / len(waits) if waits else 0.0,
            cost=sum(v[0] for v in by_cloud.values()), instance_hours=sum(self.paid) / 3600,
            launched=sum(self.launched), work_end=end, run_secs=time.perf_counter() - wall,
            by_cloud=by_cloud, starts=self.starts, instances=self.lives)



END, BOOT = 0, 1


def simulate(workload: Workload, setup: Setup, policy: str) -> Figures:
    """The reference figures of ``policy`` on ``workload``."""
    return Reference(workload, setup, policy).run()
