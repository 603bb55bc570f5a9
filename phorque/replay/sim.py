"""The discrete-event simulator: a virtual clock driving the cluster, the clouds and the policy.

One replay is one :class:`Simulation` of one policy over one trace. Events (a job submitted, a job
ending, an instance finishing its boot, a pbs_mom reporting) change the simulated world in time
order; after the events of an instant the scheduler starts what it can. The policy is evaluated
as the daemon evaluates it:

* ``events`` mode (the daemon's loop, :mod:`phorque.runtime.daemon`): a submit, a job end and
  a spot interruption are triggers (a finished boot is none: the daemon has nothing that tells
  it, and finds the instance at the lifecycle's next look while it boots). When each
  evaluation comes is the daemon's own schedule (:class:`phorque.core.schedule.Schedule`):
  the first trigger after a quiet moment is answered at once; triggers within
  ``event_delay_secs`` after an evaluation triggers asked for are gathered into the next one,
  and the rate limit (three back to back, then one per 0.5 s) bounds a flood; the latest
  plan's ``wake_at`` asks for one then (each plan replaces the previous wake-up, which is never
  less than a second ahead); and the periodic reconciliation comes ``loop_sleep_secs`` after
  the previous one. An evaluation takes no simulated time;
* ``poll`` mode (the original): only the periodic evaluation, every ``loop_sleep_secs``.

Both evaluate once when the replay starts (at the window's start), as the daemon does when it
starts.

A periodic evaluation is skipped when nothing has changed since the previous evaluation and no
instance boots: the policy would see the same snapshot with a later clock, and policies say
through ``wake_at`` when the clock alone would change their mind. While an instance boots (or a
cloud node is down) none is skipped: the lifecycle's "look again in 15 s" counts from each
evaluation, so each one moves the next look (:meth:`World.booting`). ``skip_idle=False``
evaluates at every period instead; the tests check that every figure but the number of
evaluations is the same.

Spot clouds (``market = spot``) lose instances: at a time drawn from the seed
(:mod:`phorque.replay.spot`) the cloud takes a running instance back. Its node goes down at once
and the jobs on it stop (the work they had done is lost and counted), though Torque lists them
as running until Phorque requeues them; the interruption is an event for the daemon (its spot
watch). The plan's REQUEUE puts the rerunnable ones back in the queue (they keep their submit
time, so their wait runs to their next start) and loses the others.

Each evaluation builds a :class:`~phorque.core.model.Snapshot` exactly as the engine does (clouds,
nodes, jobs, lifecycle records brought up to date by :func:`phorque.core.observe.observe`, and the
previous plan's memory), runs the real policy, and applies its plan with the daemon's own
executor (:class:`phorque.act.executor.Executor`) on the simulated Torque, groups and records
(:mod:`phorque.replay.ports`).
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from phorque.act.executor import Executor
from phorque.core.errors import TorqueError
from phorque.core.model import QUEUED, RUNNING, Chunk, Job, JobId
from phorque.core.plan import Status
from phorque.core.schedule import Schedule
from phorque.policy.base import Policy
from phorque.replay.clouds import SimInstance
from phorque.replay.cluster import Possible
from phorque.replay.metrics import ReplayResult, Tally, percentile
from phorque.replay.ports import SimGroup, SimRecords, SimTorque
from phorque.replay.scheduler import Scheduler, SimJob
from phorque.replay.settings import ReplaySettings
from phorque.replay.spot import rerunnable
from phorque.replay.trace import DAY, Trace
from phorque.replay.world import BOOT, END, World

INF = math.inf

#: ``progress(fraction of the trace submitted, simulated time, events handled)``
Progress = Callable[[float, float, int], None]


class Simulation:
    """One policy over one trace."""

    def __init__(self, trace: Trace, policy: Policy, settings: ReplaySettings | None = None,
                 progress: Progress | None = None, progress_secs: float = 2.0, keep_jobs: bool = False,
                 incremental_observe: bool = True):
        self.trace = trace
        #: Every job of the replay by id, when ``keep_jobs`` (for comparisons job by job).
        self.jobs: dict[str, SimJob] | None = {} if keep_jobs else None
        self.policy = policy
        self.settings = settings = settings or ReplaySettings()
        self.progress = progress
        self.progress_secs = progress_secs
        self.local_nodes, self.local_np = settings.local_cluster(trace.max_cores, trace.nodes,
                                                                 trace.node_cores)
        self.tally = Tally()
        self._heap: list[tuple[float, int, int, Any]] = []
        self.world = World(settings, self.local_nodes, self.local_np, trace.start, self._push, self.tally,
                           observe_everything=not incremental_observe)
        self.cluster = self.world.cluster
        self.clouds = self.world.clouds
        self.owned = self.world.owned
        self.counters = self.world.counters
        self.scheduler = Scheduler(self.cluster, settings.scheduler)
        self.memory: Any = {}
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self._seq = 0
        self._state_events = 0
        self.events = 0
        self.evaluations = 0
        # Jobs as snapshots list them: queued (in submit order), then running.
        self._queued: dict[str, Job] = {}
        self._running: dict[str, Job] = {}
        self._jobs_cache: tuple[Job, ...] | None = None
        self.running: dict[str, SimJob] = {}
        self.never: list[SimJob] = []
        # Jobs whose spot node was taken back, until Phorque requeues them; jobs it lost.
        self.stalled: dict[str, SimJob] = {}
        self.lost: list[SimJob] = []
        # The daemon's executor applies the plans, on the simulated Torque, groups and records.
        self._torque = SimTorque(self.world, self)
        self._groups = {name: SimGroup(self.world, cloud) for name, cloud in self.clouds.items()}
        self._records = SimRecords(self.world)
        # When to evaluate: the daemon's own schedule. It starts with an evaluation (a full
        # reconciliation, so nothing is "unchanged" yet); in poll mode a plan's wake-up only
        # keeps the reconciliation after it from being skipped.
        self.poll = settings.mode == "poll"
        self.schedule = Schedule.starting(trace.start, settings.loop_sleep_secs, settings.event_delay_secs,
                                          wake_ups=not self.poll)
        #: Something changed since the last evaluation: the next reconciliation is not skipped.
        self.dirty = True
        #: When the first trigger since the last evaluation fired (the daemon's wait takes it).
        self.trigger_at: float | None = None
        #: When the next evaluation is due, until the schedule, a trigger or a change moves it.
        self._look: float | None = None
        # What can never run: judged on the whole possible cluster (by cores as the policies'
        # limits count them, and by the shapes of the static nodes and the clouds' instances).
        self._possible = Possible(self.cluster.nodes.values(), (c.spec for c in self.clouds.values()))
        self._never_memo: dict[tuple, bool] = {}
        span = max(trace.end - trace.start, 3600.0)
        self.tally.curves(trace.start, span / max(1, settings.samples))

    @property
    def now(self) -> float:
        return self.world.now

    @now.setter
    def now(self, value: float) -> None:
        self.world.now = value

    # -- the event queue ---------------------------------------------------------------------------
    def _push(self, at: float, kind: int, item: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, kind, self._seq, item))
        self._state_events += 1

    def mark_dirty(self) -> None:
        """Something changed: the next periodic reconciliation must not be skipped.

        The reconciliations skipped while nothing changed are counted as made at their times,
        so the next one is the daemon's next one (even when a plan's wake-up, in poll mode, is
        further ahead: the earlier wins)."""
        if not self.dirty:
            self.dirty = True
            self._look = None
            if self.settings.skip_idle:
                self.schedule.skip_sweeps_until(self.now)

    def _event(self) -> None:
        """A change the daemon is told about (accounting log, jobs directory, spot watch): a trigger."""
        self.mark_dirty()
        if not self.poll and self.trigger_at is None:
            self.trigger_at = self.now
            self._look = None

    def _look_at(self) -> float:
        """When the daemon's loop evaluates next (``inf``: not until something happens).

        A reconciliation when nothing changed since the last evaluation is left out (the
        policy would see the same snapshot with a later clock, and says through ``wake_at``
        when the clock alone would change its mind). Kept until a trigger, a change or an
        evaluation moves it."""
        if self._look is None:
            self._look = self._next_look()
        return self._look

    def _next_look(self) -> float:
        """``_look_at`` worked out: the schedule's next look, reconciliations left out while
        nothing changed and no instance boots; in poll mode, the reconciliation after the
        plan's wake-up."""
        s = self.schedule
        sweeps = self.dirty or not self.settings.skip_idle or self.world.booting()
        if not self.poll:
            return s.look_at(self.now, self.trigger_at, sweeps)
        if sweeps:
            return s.next_sweep
        return s.sweep_at_or_after(s.wake_at) if s.wake_at is not None else INF

    # -- jobs ----------------------------------------------------------------------------------------
    def _never_runs(self, job: SimJob) -> bool:
        key = (job.cores, job.chunks)
        known = self._never_memo.get(key)
        if known is None:
            known = self._never_memo[key] = self._possible.never(job.cores, job.chunks, job.asks)
        return known

    def _submit(self, seq: int) -> None:
        tj = self.trace.jobs[seq]
        settings = self.settings
        job = SimJob(JobId(tj.id), self.now, tj.cores, tj.chunks, tj.walltime_secs, tj.run_secs, tj.queue, seq,
                     rerunnable(settings.seed, tj.id, settings.rerunnable_fraction))
        model = Job(id=job.id, state=QUEUED, queue=job.queue, cores=job.cores, chunks=job.chunks,
                    walltime_secs=job.walltime, queued_at=job.submit, gpus=job_gpus(job.chunks),
                    rerunnable=job.rerunnable)
        self._queued[job.id] = model
        self._jobs_cache = None
        if self.jobs is not None:
            self.jobs[job.id] = job
        if self._never_runs(job):
            self.never.append(job)  # stays queued, as Torque would keep it; never scheduled
        else:
            self.scheduler.add(job)
            self.world.sched_due = True
        self._event()

    def _schedule(self) -> None:
        self.world.sched_due = False
        now = self.now
        started = self.scheduler.cycle(now)
        if not started:
            return
        for job in started:
            job.start = now
            model = self._queued.pop(job.id)
            hosts = tuple(share[0].name for share in job.alloc)
            self._running[job.id] = Job(id=job.id, state=RUNNING, queue=job.queue, cores=job.cores,
                                        chunks=job.chunks, walltime_secs=job.walltime,
                                        queued_at=model.queued_at, started_at=now, exec_hosts=hosts,
                                        gpus=model.gpus, rerunnable=model.rerunnable)
            self.running[job.id] = job
            self.scheduler.started(job, now)
            job.end_at = now + job.run
            self._push(job.end_at, END, job)
            self.tally.started(job)
            for share in job.alloc:
                node = share[0]
                if node.instance and len(node.jobs) == 1:
                    self.world.touched.add(node.instance)  # a cloud node turned busy
        self._jobs_cache = None
        self.mark_dirty()

    def _end(self, job: SimJob) -> None:
        if job.end_at != self.now or self.running.get(job.id) is not job:
            return  # the end of a run a spot interruption cut short
        job.end = self.now
        job.end_at = None
        self.cluster.release(job.id, job.alloc)
        self.scheduler.ended(job)
        del self._running[job.id]
        del self.running[job.id]
        self._jobs_cache = None
        self.tally.ended(job)
        for share in job.alloc:
            node = share[0]
            if node.instance and not node.jobs:
                self.world.touched.add(node.instance)  # a cloud node turned idle
        self.world.sched_due = True
        self._event()

    def _boot(self, inst: SimInstance) -> None:
        cloud = self.clouds[inst.cloud]
        if inst.id not in cloud.live:
            return  # terminated before it booted
        self.world.boot(inst)
        # No trigger: nothing Torque writes says that an instance booted, so the daemon finds
        # it at its next look (the lifecycle looks again every few seconds while one boots).
        self.mark_dirty()

    def _interrupt(self, inst: SimInstance) -> None:
        """The cloud takes a spot instance back: its node goes down and the jobs on it stop
        (Torque still lists them as running, on a node whose mom is gone)."""
        node = self.world.interrupt(inst)
        self.tally.interruptions += 1
        if node is not None:
            for job_id in list(node.jobs):
                job = self.running.get(job_id)
                if job is not None:
                    self._stall(job)
        self._event()

    def _stall(self, job: SimJob) -> None:
        """A running job's work is lost: it no longer progresses and will not end."""
        now = self.now
        assert job.start is not None
        self.tally.lost_core_secs += job.cores * (now - job.start)
        self.tally.ended(job, until=now)  # its cores were busy until now
        del self.running[job.id]
        job.end_at = None
        self.stalled[job.id] = job

    # -- jobs as Torque is asked to change them (replay.ports.JobControl) --------------------------
    def listed_jobs(self) -> tuple[Job, ...]:
        return self._jobs()

    def _stopped(self, job_id: JobId) -> SimJob:
        """A job on a node whose instance is gone; TorqueError if pbs_server would not know it."""
        job = self.stalled.get(job_id) or self.running.get(job_id)
        if job is None:
            raise TorqueError(f"qrerun: Unknown Job Id {job_id}")
        return job

    def _take_off(self, job: SimJob) -> None:
        """The job leaves its nodes, its work lost (``qrerun -f`` and ``qdel -p`` both)."""
        if job.id in self.running:
            self._stall(job)
        del self.stalled[job.id]
        self.cluster.release(job.id, job.alloc)
        self.scheduler.ended(job)
        del self._running[job.id]
        for share in job.alloc:
            if share[0].instance:
                self.world.touched.add(share[0].instance)
        self._jobs_cache = None
        self.world.sched_due = True

    def rerun_job(self, job_id: JobId) -> bool:
        """``qrerun -f``: a rerunnable job goes back to the queue with its submit time; pbs_server
        refuses the others (False, nothing changed)."""
        job = self._stopped(job_id)
        if not job.rerunnable:
            return False
        self._take_off(job)
        job.start = None
        job.alloc = []
        self.scheduler.requeue(job)
        self._queued[job.id] = Job(id=job.id, state=QUEUED, queue=job.queue, cores=job.cores,
                                   chunks=job.chunks, walltime_secs=job.walltime,
                                   queued_at=job.submit, gpus=job_gpus(job.chunks), rerunnable=True)
        self.tally.requeued += 1
        return True

    def purge_job(self, job_id: JobId) -> None:
        """``qdel -p`` of a job that died with its instance: its work is lost."""
        job = self._stopped(job_id)
        self._take_off(job)
        job.end = self.now
        self.lost.append(job)
        self.tally.lost_jobs += 1

    def _mom(self, name: str) -> None:
        node = self.cluster.nodes.get(name)
        if node is None or not node.down:
            return
        inst = self.clouds[node.cloud].live.get(node.instance) if node.cloud and node.instance else None
        if inst is None:
            return  # its instance is gone: the node stays down
        self.world.set_down(node, False)
        self.world.touched.add(inst.id)
        self.world.sched_due = True
        self.mark_dirty()

    # -- evaluation ----------------------------------------------------------------------------------
    def _jobs(self) -> tuple[Job, ...]:
        if self._jobs_cache is None:
            self._jobs_cache = tuple(self._queued.values()) + tuple(self._running.values())
        return self._jobs_cache

    def evaluate(self) -> None:
        now = self.now
        schedule = self.schedule
        if not self.dirty and self.settings.skip_idle:
            schedule.skip_sweeps_until(now)  # those left out while nothing changed
        triggered = self.trigger_at is not None
        due = schedule.due(now, now, triggered)
        assert due is not None, "an evaluation when none is due"
        self.trigger_at = None  # the daemon's wait takes every trigger so far
        self.dirty = False
        changed = False
        # As the engine: a cloud that fails while the plan is applied is backed off, and the
        # policy plans again at once (Executor.fallen), at most 1 + clouds passes.
        for _ in range(1 + len(self.clouds)):
            snap = self.world.snapshot(self._jobs(), self.memory)
            plan = self.policy.plan(snap)
            self.memory = plan.memory
            if not plan.actions:
                break
            for group in self._groups.values():
                group.terminated = False
            executor = Executor(self._torque, self._groups, {}, self._records, now, self.world.cloud_result,
                                remove_workers=1)
            outcomes = executor.apply(plan, snap)
            for outcome in outcomes:
                self.outcomes[(outcome.action.kind.value, outcome.status.value)] += 1
            changed = changed or any(o.status == Status.DONE for o in outcomes)
            if self.world.interrupted:
                self.world.forget_handled()
            if self.world.requeued:  # jobs were requeued or purged (SimTorque)
                self.world.requeued = False
                # Back in submit order, as the queue lists them.
                self._queued = dict(sorted(self._queued.items(), key=lambda item: item[1].queued_at or 0.0))
                self._jobs_cache = None
                self._event()  # the requeued jobs changed in the jobs directory
            if not executor.fallen():
                break
        self.evaluations += 1
        if changed:
            self.mark_dirty()
        if plan.wake_at is not None and plan.wake_at <= now:
            self.counters["wake_at not after the evaluation"] += 1
        schedule.evaluated(now, now, due, triggered, completed=True, wake_at=plan.wake_at)
        self._look = None

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> ReplayResult:
        """Replay the whole trace; returns the figures."""
        wall, cpu = time.perf_counter(), time.process_time()
        jobs = self.trace.jobs
        total = len(jobs)
        heap = self._heap
        nxt = 0
        deadline = (jobs[-1].submit if jobs else self.trace.start) + self.settings.drain_limit_days * DAY
        report_at = time.monotonic() + self.progress_secs
        loops = 0
        truncated = False
        tail_end: float | None = None
        work_end = self.trace.start
        while True:
            t_submit = jobs[nxt].submit if nxt < total else INF
            t_heap = heap[0][0] if heap else INF
            look = self._look
            if look is None:
                look = self._look_at()
            t = min(t_submit, t_heap, look)
            if t == INF:
                break  # nothing will ever happen again but interruptions of idle instances
            t_spot = self.world.next_interruption() if self.world.interrupts else INF
            if t_spot < t:
                t = t_spot
            if tail_end is not None and (t > tail_end or self.world.live == 0):
                break
            if nxt >= total and t > deadline and tail_end is None:
                truncated = True
                self.now = work_end = max(self.now, deadline)
                break
            self.now = t
            while nxt < total and jobs[nxt].submit <= t:
                self._submit(nxt)
                nxt += 1
                self.events += 1
            while heap and heap[0][0] <= t:
                _, kind, _, item = heapq.heappop(heap)
                self._state_events -= 1
                self.events += 1
                if kind == END:
                    self._end(item)
                elif kind == BOOT:
                    self._boot(item)
                else:
                    self._mom(item)
            while self.world.interrupts and self.world.next_interruption() <= t:
                _, _, inst = heapq.heappop(self.world.interrupts)
                self.events += 1
                self._interrupt(inst)
            if self.world.sched_due:
                self._schedule()
            look = self._look
            if look is None:
                look = self._look_at()
            if look <= t:
                self.evaluate()
                if self.world.sched_due:
                    self._schedule()
            self.tally.advance(t, len(self._queued), self.world.live)
            if tail_end is None and nxt >= total and not self.running and not self.stalled and (
                    not self.scheduler.queue
                    or (self._state_events == 0 and not self.dirty and self.trigger_at is None)):
                # Every job that can start has ended: let the policy release its instances.
                work_end = t
                if self.world.live == 0:
                    break
                tail_end = t + self._tail_secs()
            loops += 1
            if self.progress is not None and loops % 2048 == 0 and time.monotonic() >= report_at:
                report_at = time.monotonic() + self.progress_secs
                self.progress(nxt / total if total else 1.0, self.now, self.events)
        # Instances a policy keeps past the tail (LaunchMax keeps them all) are billed up to the
        # end of the work, as if released then.
        end = work_end
        for cloud in self.clouds.values():
            cloud.stop_all(end)
        self.tally.advance(max(end, self.now), len(self._queued), 0, last=True)
        if self.progress is not None:
            self.progress(1.0, end, self.events)
        return replay_result(self, end, truncated, time.perf_counter() - wall,
                                  time.process_time() - cpu)

    def _tail_secs(self) -> float:
        """How long the replay goes on after the work, for the policy to release instances."""
        charge = max((c.spec.charge_time_secs for c in self.clouds.values()), default=0)
        return max(3600.0, float(charge)) + self.settings.loop_sleep_secs


def job_gpus(chunks: tuple[Chunk, ...]) -> int:
    """The GPUs of the whole job (per node of a part, per core of a spread part)."""
    return sum(c.gpus * (c.cores if c.spread else c.count) for c in chunks)


def replay(trace: Trace, policy: Policy | str, settings: ReplaySettings | None = None,
           progress: Progress | None = None) -> ReplayResult:
    """Replay ``trace`` under ``policy`` (a policy or its name)."""
    settings = settings or ReplaySettings()
    if isinstance(policy, str):
        policy = settings.make_policy(policy)
    return Simulation(trace, policy, settings, progress).run()


def replay_result(sim: Simulation, end: float, truncated: bool, sim_secs: float,
                  cpu_secs: float) -> ReplayResult:
    """What a finished replay found."""
    tally = sim.tally
    for job in sim.running.values():  # only when the drain limit cut the replay short
        tally.ended(job, until=end)
    waits = sorted(tally.waits)
    started = len(waits)
    paid = sum(c.paid_secs for c in sim.clouds.values())
    paid_core_secs = sum(c.paid_secs * c.spec.instance_cores for c in sim.clouds.values())
    span = max(0.0, end - sim.trace.start)
    local_cores = sim.local_nodes * sim.local_np
    clouds: dict[str, dict[str, float]] = {
        name: {"cost": round(c.cost, 6), "instance_hours": round(c.paid_secs / 3600, 6),
               "launched": c.launched} for name, c in sim.clouds.items()}
    for name, c in sim.clouds.items():
        if c.spec.spot:
            clouds[name]["interruptions"] = len(c.interruptions)
    actions = Counter({f"{kind} {status}": n for (kind, status), n in sim.outcomes.items()})
    return ReplayResult(
        policy=sim.policy.name, trace=sim.trace.name, jobs=len(sim.trace.jobs), started=started,
        unstarted=len(sim.scheduler.queue), never_run=len(sim.never),
        killed_at_walltime=tally.killed,
        mean_wait_secs=sum(waits) / started if started else 0.0,
        p95_wait_secs=percentile(waits, 0.95), max_wait_secs=waits[-1] if waits else 0.0,
        mean_bounded_slowdown=tally.bsld_sum / started if started else 0.0,
        cost=sum(c.cost for c in sim.clouds.values()), instance_hours=paid / 3600.0,
        paid_utilization=tally.cloud_core_secs / paid_core_secs if paid_core_secs else 0.0,
        peak_instances=tally.peak_instances, peak_rate=tally.peak_rate,
        launched=sum(c.launched for c in sim.clouds.values()),
        local_utilization=tally.local_core_secs / (local_cores * span) if local_cores and span else 0.0,
        evaluations=sim.evaluations, events=sim.events, start=sim.trace.start, end=end,
        truncated=truncated, sim_secs=sim_secs, cpu_secs=cpu_secs, clouds=clouds, counters=dict(sim.counters),
        actions=dict(sorted(actions.items())),
        series=(tally.times, tally.queued, tally.live),
        spot=sim.settings.spot, interruptions=tally.interruptions, requeued=tally.requeued,
        lost_jobs=tally.lost_jobs, lost_core_hours=tally.lost_core_secs / 3600.0)
