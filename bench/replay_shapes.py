"""Right-sized launches in the replay: a mixed workload on heterogeneous clouds, replayed once with
the jobs as they are and once with the policy counting cores only.

    python3 dev.py bench replay_shapes [--start DAY] [--days D] [--every N] [--policy NAME ...]

The workload is a window of the HPC2N log (default: 14 days from day 100), whose jobs keep the
memory they asked for (SWF field 10, per processor). Then, by job number (deterministic, the
same every run):

* number % N == 3 (default N = 20): a GPU job in queue ``gpu``, ``nodes=1:ppn=P:gpus=G:gpu``
  with P = min(cores, 8), G = 1 (P <= 4) or 2, and its per-core memory times P on that node;
* number % N == 11: a big-memory job, ``nodes=1:ppn=P`` with 96 GiB on that node;
* every other job as the trace has it (cores anywhere, its own memory per core).

The cluster: 10 static nodes of 8 cores and 16 GiB, no GPU, and three clouds billed per hour
with a 120 s boot:

* ``small``: 0.10/h, 8 cores, 16 GiB, at most 24;
* ``bigmem``: 0.50/h, 8 cores, 256 GiB, at most 4;
* ``gpu``: 1.20/h, 8 cores, 64 GiB, 2 GPUs, property ``gpu``, serving queue ``gpu`` only, at
  most 4.

The simulated Torque enforces every ask in both runs (a GPU job starts only on a node with a free
GPU and the ``gpu`` property, a big-memory job only where 96 GiB are free). "cores only" hands the
policy a view of every job with its memory, GPU and property asks removed (its cores, parts and
queue kept): the policy sizes launches by cores, as Phorque did before shapes, while the jobs
still need the right nodes. Prints, per policy and run: the cloud cost, mean and p95 wait of the
jobs that started, the jobs never started, and the mean wait of each kind of job.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from phorque.core.model import Chunk, CloudState, Job, Snapshot
from phorque.core.plan import Plan
from phorque.policy.base import Decision, Policy
from phorque.policy.lifecycle import Lifecycle
from phorque.policy.view import View
from phorque.replay import ReplaySettings
from phorque.replay.metrics import ReplayResult
from phorque.replay.report import duration
from phorque.replay.sim import Simulation
from phorque.replay.swf import read_swf
from phorque.replay.trace import Trace, Window

ROOT = Path(__file__).resolve().parent.parent
TRACES = Path(os.environ.get("PHORQUE_TRACES", ROOT.parent.parent / "shared" / "traces"))
if not TRACES.exists():
    TRACES = Path("/work/shared/traces")
HPC2N = TRACES / "HPC2N-2002-2.1-cln.swf.gz"

GIB = 1024
POLICIES = ("CostAware", "OnDemand", "OnDemandPlusPlus")
NODE_CORES = 8
BIG_MEM_MB = 96 * GIB
CLOUDS = (
    CloudState(name="small", price=0.10, instance_cores=8, max_instances=64, instance_memory_mb=16 * GIB),
    CloudState(name="bigmem", price=0.50, instance_cores=8, max_instances=4, instance_memory_mb=256 * GIB),
    CloudState(name="gpu", price=1.20, instance_cores=8, max_instances=4, instance_memory_mb=64 * GIB,
               instance_gpus=2, node_properties=("gpu",), queues=frozenset({"gpu"})),
)
SETTINGS = ReplaySettings(clouds=CLOUDS, local_nodes=10, local_np=8, local_mem_mb=16 * GIB)
KINDS = ("cores", "gpu", "bigmem")


def kind_of(job_id: str, every: int) -> str:
    number = int(job_id.split(".", 1)[0])
    return {3: "gpu", 11: "bigmem"}.get(number % every, "cores")


def mixed(trace: Trace, every: int) -> Trace:
    """The trace with every ``every``-th job (by number) made a GPU job, and as many big-memory."""
    jobs = []
    for tj in trace.jobs:
        kind = kind_of(tj.id, every)
        if kind == "cores":
            jobs.append(tj)
            continue
        ppn = min(tj.cores, NODE_CORES)
        per_core = tj.chunks[0].mem_mb if tj.chunks else 0
        if kind == "gpu":
            part = Chunk(count=1, ppn=ppn, mem_mb=per_core * ppn, gpus=1 if ppn <= 4 else 2,
                         properties=("gpu",))
            jobs.append(replace(tj, cores=ppn, chunks=(part,), queue="gpu"))
        else:
            jobs.append(replace(tj, cores=ppn, chunks=(Chunk(count=1, ppn=ppn, mem_mb=BIG_MEM_MB),)))
    return replace(trace, jobs=jobs, notes=[*trace.notes, f"every {every}th job a GPU job, as many big-memory"])


def cores_only(job: Job) -> Job:
    """The job as a policy that counts cores sees it: no memory, GPU or property asks."""
    chunks = tuple(replace(c, mem_mb=0, gpus=0, properties=()) for c in job.chunks)
    return replace(job, chunks=chunks, gpus=0, mem_mb=0, pmem_mb=0, vmem_mb=0, pvmem_mb=0)


class CoresOnly(Policy):
    """``inner`` planning on a snapshot whose jobs ask for cores only (a bench-side view: the
    simulated cluster still holds every job to its real asks)."""

    def __init__(self, inner: Policy):
        super().__init__(inner.price_per_hour, inner.multiplier, inner.queues, inner.loop_sleep_secs)
        self.inner = inner
        self._seen: dict[tuple[str, str], tuple[Job, Job]] = {}

    @property
    def name(self) -> str:
        return self.inner.name

    def plan(self, snapshot: Snapshot) -> Plan:
        return self.inner.plan(replace(snapshot, jobs=tuple(self._strip(j) for j in snapshot.jobs)))

    def decide(self, view: View, life: Lifecycle) -> Decision:
        return self.inner.decide(view, life)

    def _strip(self, job: Job) -> Job:
        # Snapshots hand the same Job values from one evaluation to the next: strip each once.
        key = (job.id, job.state)
        seen = self._seen.get(key)
        if seen is None or seen[0] is not job:
            seen = self._seen[key] = (job, cores_only(job))
        return seen[1]


def run(trace: Trace, policy: Policy, every: int) -> tuple[ReplayResult, dict[str, tuple[int, int, float]]]:
    """The replay, and per kind of job: (started, jobs, mean wait of those started)."""
    sim = Simulation(trace, policy, SETTINGS, keep_jobs=True)
    result = sim.run()
    assert sim.jobs is not None
    waits: dict[str, list[float]] = {k: [] for k in KINDS}
    totals = dict.fromkeys(KINDS, 0)
    for job in sim.jobs.values():
        kind = kind_of(job.id, every)
        totals[kind] += 1
        if job.start is not None:
            waits[kind].append(job.start - job.submit)
    return result, {k: (len(w), totals[k], sum(w) / len(w) if w else 0.0) for k, w in waits.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="shape matching against counting cores only, on "
                                                 "heterogeneous clouds")
    parser.add_argument("--start", default="100", help="window start, days after the log's start")
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--every", type=int, default=20, help="one GPU and one big-memory job in N")
    parser.add_argument("--policy", nargs="+", default=list(POLICIES))
    args = parser.parse_args(argv)
    if args.every < 12:
        parser.error("--every must be at least 12 (jobs 3 and 11 of every N are changed)")
    trace = mixed(read_swf(HPC2N, Window(args.start, args.days)), args.every)
    counts = {k: sum(1 for j in trace.jobs if kind_of(j.id, args.every) == k) for k in KINDS}
    print(f"{trace.describe()}: {counts['cores']:,} core jobs, {counts['gpu']:,} GPU jobs, "
          f"{counts['bigmem']:,} big-memory jobs")
    print("local 10 x 8 cores, 16 GiB; clouds: " + "; ".join(
        f"{c.name} {c.price:g}/h {c.instance_cores} cores {c.instance_memory_mb // GIB} GiB"
        + (f" {c.instance_gpus} GPUs" if c.instance_gpus else "")
        + (f" properties {','.join(c.node_properties)}" if c.node_properties else "")
        + (f" queues {','.join(sorted(c.queues))}" if c.queues else "")
        + f" max {c.max_instances}" for c in CLOUDS))
    head = (f"{'policy':<18} {'view':<11} {'cost':>9} {'mean wait':>10} {'p95 wait':>9} {'never started':>14}"
            f"   mean wait: {'cores':>9} {'gpu':>9} {'bigmem':>9}  {'run time':>8}")
    print(head)
    print("-" * len(head))
    for name in args.policy:
        for view, policy in (("shapes", SETTINGS.make_policy(name)),
                             ("cores only", CoresOnly(SETTINGS.make_policy(name)))):
            began = time.perf_counter()
            result, kinds = run(trace, policy, args.every)
            never = result.unstarted + result.never_run
            by_kind = " ".join(f"{duration(kinds[k][2]) if kinds[k][0] else '-':>9}" for k in KINDS)
            print(f"{name:<18} {view:<11} {result.cost:>9,.1f} {duration(result.mean_wait_secs):>10} "
                  f"{duration(result.p95_wait_secs):>9} {never:>14,}   mean wait: {by_kind}  "
                  f"{time.perf_counter() - began:>7.1f}s", flush=True)
            unstarted = [f"{k} {n - s:,}" for k, (s, n, _) in kinds.items() if s < n]
            if unstarted:
                print(f"{'':<30} never started: {', '.join(unstarted)}")
    print("never started: still queued when the replay ended (every job that could start had ended), "
          "or no node or instance could ever hold it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
