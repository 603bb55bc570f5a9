"""One scenario on the sandbox and on the real server, and what Phorque sees of each compared.

The real server is the ground truth; where the two differ in anything Phorque reads, the sandbox
is what must change."""

from __future__ import annotations

from dataclasses import dataclass

from phorque.adapters.torque.commands import Torque
from phorque.core.model import Job, Node
from tests import waiting

# Job kinds submitted on both, as (name, qsub arguments). Two 2-core blockers come first so that
# everything after them waits in the queue on both clusters of two np=2 nodes.
KINDS = (
    ("serial", ("-l", "walltime=90")),
    ("wide", ("-l", "nodes=2:ppn=2,walltime=5:30")),
    ("procs", ("-l", "procs=3")),
    ("ncpus", ("-l", "ncpus=2")),
    ("held", ("-h",)),
    ("long", ("-q", "long", "-l", "walltime=2:00:00:00")),
    ("array", ("-t", "0-3%2")),
)


@dataclass(frozen=True)
class Seen:
    """What Phorque's adapter makes of one job, without ids and times."""

    state: str
    queue: str
    cores: int
    chunks: tuple
    walltime: int | None
    refused: str | None

    @classmethod
    def of(cls, job: Job) -> Seen:
        return cls(job.state, job.queue, job.cores, job.chunks, job.walltime_secs, job.refused_by_server)


def _node_view(node: Node) -> tuple:
    return (node.np, tuple(sorted(node.state)), len(node.jobs), node.is_idle)


def _scenario(submit, qmgr, wait_running, comment_of) -> dict[str, str]:
    for directive in ("create queue long", "set queue long queue_type = execution",
                      "set queue long started = true", "set queue long enabled = true"):
        qmgr(directive)
    blockers = [submit("-l", "nodes=1:ppn=2") for _ in range(2)]
    wait_running(blockers)
    ids = {name: submit(*args) for name, args in KINDS}
    waiting.wait_for(lambda: "Unknown node-attribute" in (comment_of(ids["procs"]) or ""), 60,
                     "the scheduler's comment on the procs job", interval=0.3)
    ids["blocker"] = blockers[0]
    return ids


def _seen(torque: Torque, ids: dict[str, str]) -> tuple[dict[str, Seen], list[Seen], list[tuple]]:
    jobs = {j.id: j for j in torque.jobs()}
    by_kind = {name: Seen.of(jobs[i]) for name, i in ids.items() if name != "array"}
    base = ids["array"].split("[", 1)[0]
    array = sorted((Seen.of(j) for i, j in jobs.items() if i.startswith(base + "[")),
                   key=lambda s: s.state)
    nodes = sorted(_node_view(n) for n in torque.nodes())
    return by_kind, array, nodes


def test_phorque_sees_the_same_on_the_sandbox_and_the_real_server(real_torque, make_sandbox):
    sandbox = make_sandbox(nodes=2, np=2, keep_completed=300)

    def sandbox_comment(job_id: str) -> str | None:
        return next((j.comment for j in Torque(sandbox.root).jobs() if j.id == job_id), None)

    sandbox_ids = _scenario(
        lambda *a: sandbox.qsub(*a, runtime=600),
        lambda d: sandbox.run("qmgr", "-c", d),
        lambda ids: sandbox.wait_for(lambda: all(j.state == "R" for j in Torque(sandbox.root).jobs()
                                                 if j.id in ids), 60),
        sandbox_comment)
    real_ids = _scenario(
        lambda *a: real_torque.qsub(*a, script="sleep 600\n"),
        real_torque.qmgr,
        lambda ids: real_torque.wait_jobs(ids, "R"),
        lambda job_id: real_torque.job_attr(job_id, "comment"))
    sandbox_seen = _seen(Torque(sandbox.root), sandbox_ids)
    real_seen = _seen(Torque(real_torque.cluster_directory, timeout=60), real_ids)
    assert sandbox_seen[0] == real_seen[0]   # every job kind, read the same
    assert sandbox_seen[1] == real_seen[1]   # the array's sub-jobs, %-limited the same
    assert sandbox_seen[2] == real_seen[2]   # the nodes, each with its blocker
