"""The live view of Torque against an in-memory Torque: reads by id and by name, drift, and
property tests with random event streams (lost, duplicated and reordered records, a restart)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phorque.act.clusterview import ClusterView, job_id_of_file
from phorque.core.model import COMPLETED, QUEUED, RUNNING, Job, Node
from phorque.core.queue_index import index_of

SERVER = "srv"


class MemoryTorque:
    """A Torque server held in memory, answering as the real commands do: ``qstat`` keeps an
    ended job as ``C`` until it is purged, an id it does not know is left out, ``pbsnodes``
    given an unknown node answers nothing (None). It counts what it was asked."""

    def __init__(self, nodes: int = 4, np: int = 4):
        self.jobs: dict[str, Job] = {}
        self.nodes: dict[str, Node] = {f"n{i}": Node(f"n{i}", np=np) for i in range(nodes)}
        self.records: list[tuple] = []   # what the accounting log says, in order
        self.calls = {"jobs": 0, "nodes": 0, "jobs_named": 0, "nodes_named": 0}
        self.asked_ids: list[str] = []
        self.asked_nodes: list[str] = []
        self.seq = 0

    # -- the reader the view uses --------------------------------------------------------
    def jobs_all(self) -> list[Job]:
        self.calls["jobs"] += 1
        return list(self.jobs.values())

    def jobs_named(self, ids: Sequence[str]) -> list[Job]:
        self.calls["jobs_named"] += 1
        self.asked_ids += list(ids)
        out = []
        for i in ids:
            if i.endswith("[]." + SERVER):
                prefix = i.split("[", 1)[0] + "["
                out += [j for k, j in self.jobs.items() if k.startswith(prefix)]
            elif i in self.jobs:
                out.append(self.jobs[i])
        return out

    def nodes_all(self) -> list[Node]:
        self.calls["nodes"] += 1
        return list(self.nodes.values())

    def nodes_named(self, names: Sequence[str]) -> list[Node] | None:
        self.calls["nodes_named"] += 1
        self.asked_nodes += list(names)
        if any(n not in self.nodes for n in names):
            return None
        return [self.nodes[n] for n in names]

    # -- what happens in the cluster -----------------------------------------------------
    def submit(self, cores: int = 1, array: int = 0) -> str:
        self.seq += 1
        if array:
            for k in range(array):
                jid = f"{self.seq}[{k}].{SERVER}"
                self.jobs[jid] = Job(jid, QUEUED, "batch", cores)
                self.records.append(("Q", jid))
            return f"{self.seq}[].{SERVER}"
        jid = f"{self.seq}.{SERVER}"
        # (Queue times out of id order: the scheduler's order is not the ids'.)
        self.jobs[jid] = Job(jid, QUEUED, "batch", cores, walltime_secs=3600, queued_at=float(self.seq % 7))
        self.records.append(("Q", jid))
        return jid

    def start(self, jid: str, host: str) -> None:
        job = self.jobs[jid]
        self.jobs[jid] = dataclasses.replace(job, state=RUNNING, exec_hosts=(host,), started_at=100.0,
                                             remaining_secs=job.walltime_secs)
        node = self.nodes[host]
        self.nodes[host] = dataclasses.replace(node, jobs=node.jobs + (jid,),
                                               used_slots=node.used_slots + job.cores)
        self.records.append(("S", jid, f"{host}/0", 100.0))

    def end(self, jid: str) -> None:
        job = self.jobs[jid]
        self.jobs[jid] = dataclasses.replace(job, state=COMPLETED)
        for host in job.exec_hosts:
            node = self.nodes[host]
            self.nodes[host] = dataclasses.replace(
                node, jobs=tuple(j for j in node.jobs if j != jid),
                used_slots=max(0, node.used_slots - job.cores))
        self.records.append(("E", jid))

    def purge(self, jid: str) -> None:
        """keep_completed has passed: qstat forgets the job."""
        self.jobs.pop(jid, None)

    def live(self) -> dict[str, Job]:
        return {k: j for k, j in self.jobs.items() if j.state != COMPLETED}


class Reader:
    """The MemoryTorque as the view's reader (``jobs()``/``nodes()`` are its full reads)."""

    def __init__(self, torque: MemoryTorque):
        self.t = torque

    def jobs(self) -> list[Job]:
        return self.t.jobs_all()

    def nodes(self) -> list[Node]:
        return self.t.nodes_all()

    def jobs_named(self, ids):
        return self.t.jobs_named(ids)

    def nodes_named(self, names):
        return self.t.nodes_named(names)


def deliver(view: ClusterView, record: tuple) -> None:
    kind, jid, *rest = record
    if kind == "S":
        view.record("S", jid, rest[0], rest[1])
    else:
        view.record(kind, jid)


def by_id(jobs) -> dict[str, tuple]:
    return {j.id: (j.state, j.exec_hosts) for j in jobs}


def truth(t: MemoryTorque) -> dict[str, tuple]:
    return by_id(t.live().values())


def started_view(t: MemoryTorque) -> tuple[ClusterView, Reader]:
    view, reader = ClusterView(), Reader(t)
    first = view.refresh(reader, 0.0)
    assert first.full and view.valid
    return view, reader


# -- reading what changed ---------------------------------------------------------------------
def test_a_burst_of_submits_is_read_with_one_qstat_and_no_node_read():
    t = MemoryTorque()
    view, reader = started_view(t)
    ids = [t.submit() for _ in range(50)]
    for rec in t.records:
        deliver(view, rec)
    got = view.refresh(reader, 1.0)
    assert not got.full and got.changed
    assert t.calls["jobs"] == 1 and t.calls["jobs_named"] == 1       # the start's read, one by id
    assert sorted(t.asked_ids) == sorted(ids)
    assert t.calls["nodes_named"] == 0 and t.calls["nodes"] == 1     # nothing ran anywhere
    assert by_id(got.jobs) == truth(t)
    assert got.jobs_read == 50


def test_a_start_and_an_end_update_the_job_from_the_record_and_reread_its_node_only():
    t = MemoryTorque(nodes=50)
    jid = t.submit(cores=2)
    view, reader = started_view(t)
    t.records.clear()
    t.start(jid, "n7")
    for rec in t.records:
        deliver(view, rec)
    got = view.refresh(reader, 10.0)
    job = {j.id: j for j in got.jobs}[jid]
    assert job.state == RUNNING and job.exec_hosts == ("n7",) and job.started_at == 100.0
    assert t.calls["jobs_named"] == 0                 # the S record says all that is needed
    assert t.asked_nodes == ["n7"]
    assert {n.name: n for n in got.nodes}["n7"].jobs == (jid,)
    t.records.clear()
    t.end(jid)
    for rec in t.records:
        deliver(view, rec)
    got = view.refresh(reader, 20.0)
    assert jid not in by_id(got.jobs)
    assert {n.name: n for n in got.nodes}["n7"].jobs == ()
    assert t.asked_nodes == ["n7", "n7"]


def test_a_running_jobs_remaining_walltime_counts_down_between_reads():
    t = MemoryTorque()
    jid = t.submit()
    t.start(jid, "n0")
    view, reader = started_view(t)  # read at 0.0 with 3600 s left
    got = view.refresh(reader, 600.0)
    assert {j.id: j for j in got.jobs}[jid].remaining_secs == 3000
    assert not got.changed  # the countdown is not news


def test_an_array_id_reads_its_sub_jobs_and_an_id_torque_forgot_has_ended():
    t = MemoryTorque()
    view, reader = started_view(t)
    parent = t.submit(array=3)
    gone = t.submit()
    t.purge(gone)  # ended and purged before the view asked
    view.record("Q", parent)
    view.record("Q", gone)
    got = view.refresh(reader, 1.0)
    assert sorted(by_id(got.jobs)) == sorted(f"{parent.split('[')[0]}[{k}].{SERVER}" for k in range(3))
    # Every sub-job ends, and qstat forgets them: the array's id answers nothing.
    for k in range(3):
        t.purge(f"{parent.split('[')[0]}[{k}].{SERVER}")
    view.job_file(f"/spool/server_priv/jobs/{parent.split('[')[0]}.{SERVER}.TA", True)
    got = view.refresh(reader, 2.0)
    assert by_id(got.jobs) == {}
    assert got.queue_index is not None and got.queue_index.queued == ()
    assert_index_kept(got)


def test_a_queued_job_read_again_after_its_end_leaves_the_queue_the_policies_read():
    t = MemoryTorque()
    done, forgotten, waiting = t.submit(), t.submit(), t.submit()
    view, reader = started_view(t)
    assert [j.id for j in view.refresh(reader, 1.0).queue_index.queued] == sorted(
        [done, forgotten, waiting], key=lambda i: (float(int(i.split(".")[0]) % 7), i))
    # Their end records are lost; their job files say they changed.
    t.jobs[done] = dataclasses.replace(t.jobs[done], state=COMPLETED)
    t.purge(forgotten)
    for jid in (done, forgotten):
        view.job_file(f"/spool/server_priv/jobs/{jid}.JB", False)
    got = view.refresh(reader, 2.0)
    assert not got.full and [j.id for j in got.queue_index.queued] == [waiting]
    assert_index_kept(got)


def test_a_trigger_that_changes_nothing_is_told_apart():
    t = MemoryTorque()
    jid = t.submit()
    view, reader = started_view(t)
    view.record("Q", jid)  # a duplicate: the job is known and unchanged
    got = view.refresh(reader, 1.0)
    assert not got.full and not got.changed


def test_many_nodes_changed_read_every_node_and_an_unknown_one_falls_back_to_all():
    t = MemoryTorque(nodes=10)
    view, reader = started_view(t)
    view.named_nodes = 3
    view.nodes_changed(["n1", "n2", "n3", "n4"])
    view.refresh(reader, 1.0)
    assert t.calls["nodes"] == 2 and t.calls["nodes_named"] == 0
    view.nodes_changed(["n1", "gone-node"])
    view.refresh(reader, 2.0)
    assert t.calls["nodes_named"] == 1 and t.calls["nodes"] == 3


def test_a_failed_read_keeps_what_was_pending_for_the_next_refresh():
    t = MemoryTorque()
    view, reader = started_view(t)
    jid = t.submit()
    view.record("Q", jid)

    class Failing(Reader):
        def jobs_named(self, ids):
            raise RuntimeError("qstat timed out")

    with pytest.raises(RuntimeError):
        view.refresh(Failing(t), 1.0)
    got = view.refresh(reader, 2.0)
    assert jid in by_id(got.jobs)


def test_the_full_read_reports_each_difference_with_what_the_view_believed():
    t = MemoryTorque()
    a, b = t.submit(), t.submit()
    view, reader = started_view(t)
    t.start(a, "n1")     # its S record is lost
    t.end(b)             # and so is this E
    t.nodes["n3"] = dataclasses.replace(t.nodes["n3"], state=frozenset({"down"}))  # a mom died
    got = view.refresh(reader, 5.0, full=True)
    assert got.full and got.drift_total == 4   # a started, b ended, n1 busy, n3 down
    text = {d.name: d.describe() for d in got.drift}
    assert "the view had Q in batch, 1 core(s), Torque has R in batch, 1 core(s) on n1" in text[a]
    assert text[b].endswith("Torque has absent")
    assert "Torque has down np=4" in text["n3"]
    assert by_id(got.jobs) == truth(t)
    again = view.refresh(reader, 6.0, full=True)
    assert again.drift_total == 0


@pytest.mark.parametrize(("path", "expected"), [
    ("/s/server_priv/jobs/12.srv.JB", "12.srv"),
    ("/s/server_priv/jobs/3/4-1.vm.JB", "4[1].vm"),
    ("/s/server_priv/jobs/4[1].vm.JB", "4[1].vm"),
    ("/s/server_priv/jobs/4.vm.SC", "4.vm"),
    ("/s/server_priv/jobs/4[].vm.TA", "4[].vm"),
    ("/s/server_priv/jobs/4.vm.TA", "4[].vm"),
])
def test_job_ids_of_real_and_sandbox_job_files(path, expected):
    assert job_id_of_file(path) == expected


# -- random event streams ------------------------------------------------------------------
@st.composite
def streams(draw):
    """A random life of a cluster: submits, starts, ends, purges; then a delivery of its
    records with some lost, some duplicated, some reordered, in random batches, with
    refreshes (and possibly a restarted daemon) between batches."""
    seed = draw(st.integers(0, 2**31))
    steps = draw(st.integers(5, 60))
    lose = draw(st.sampled_from([0.0, 0.0, 0.1, 0.3]))
    dup = draw(st.sampled_from([0.0, 0.2]))
    shuffle = draw(st.booleans())
    restart = draw(st.booleans())
    return seed, steps, lose, dup, shuffle, restart


def _live_cluster(rng: random.Random, t: MemoryTorque, view: ClusterView, reader: Reader,
                  steps: int, lose: float, dup: float, shuffle: bool, restart: bool,
                  check_ended: bool) -> ClusterView:
    now = 1.0
    for step in range(steps):
        t.records.clear()
        for _ in range(rng.randint(1, 4)):
            action = rng.random()
            queued = [j for j in t.live().values() if j.state == QUEUED]
            running = [j for j in t.live().values() if j.state == RUNNING]
            if action < 0.4 or not (queued or running):
                t.submit(cores=rng.randint(1, 2), array=rng.choice([0, 0, 0, 2]))
            elif action < 0.7 and queued:
                t.start(rng.choice(queued).id, rng.choice(sorted(t.nodes)))
            elif running:
                t.end(rng.choice(running).id)
            done = [k for k, j in t.jobs.items() if j.state == COMPLETED]
            if done and rng.random() < 0.3:
                t.purge(rng.choice(done))
        batch = [r for r in t.records if rng.random() >= lose]
        batch += [r for r in batch if rng.random() < dup]
        if shuffle:
            rng.shuffle(batch)
        for rec in batch:
            deliver(view, rec)
        if restart and step == steps // 2:
            view = ClusterView()  # a restarted daemon: nothing kept but what Torque says
        now += 1.0
        got = view.refresh(reader, now)
        assert_index_kept(got)
        if check_ended:
            # Every record was delivered: a job the view has queued is queued in Torque.
            live = t.live()
            for job in got.jobs:
                if job.state == QUEUED:
                    assert job.id in live and live[job.id].state == QUEUED, job.id
    return view


def assert_index_kept(got) -> None:
    """The index the view kept job by job is the one the snapshot's jobs give."""
    assert got.queue_index is not None
    assert got.queue_index.same_as(index_of(got.jobs, got.nodes))


def live_cluster(stream, keep_every_record: bool) -> tuple[MemoryTorque, ClusterView, Reader]:
    seed, steps, lose, dup, shuffle, restart = stream
    t = MemoryTorque()
    view, reader = started_view(t)
    view = _live_cluster(random.Random(seed), t, view, reader, steps, 0.0 if keep_every_record else lose,
                         dup, shuffle, restart, check_ended=keep_every_record)
    return t, view, reader


@settings(max_examples=60, deadline=None)
@given(streams())
def test_the_view_equals_a_full_read_after_reconciliation(stream):
    t, view, reader = live_cluster(stream, keep_every_record=False)
    got = view.refresh(reader, 10_000.0, full=True)
    assert_index_kept(got)
    assert by_id(got.jobs) == truth(t)
    assert {n.name: n for n in got.nodes} == t.nodes
    # And a later incremental look with nothing new agrees with it.
    assert by_id(view.refresh(reader, 10_001.0).jobs) == truth(t)


@settings(max_examples=60, deadline=None)
@given(streams())
def test_with_every_record_delivered_the_view_never_holds_an_ended_job_as_queued(stream):
    t, view, reader = live_cluster(stream, keep_every_record=True)
    # Nothing lost: the incremental view alone already equals Torque.
    assert by_id(view.refresh(reader, 10_000.0).jobs) == truth(t)
