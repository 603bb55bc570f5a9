"""Phorque's Torque adapter against a real pbs_server: every read, every change, every error as
the real commands print it and with their real exit codes."""

from __future__ import annotations

import pytest

from phorque.adapters.torque.commands import NodeNotReady, Torque
from phorque.core.errors import CommandError
from phorque.core.model import MOM_LIST_NOT_SENT, OFFLINE
from tests import waiting


@pytest.fixture
def torque(real_torque) -> Torque:
    return Torque(real_torque.cluster_directory, timeout=60)


def test_jobs_of_every_kind_read_as_submitted(real_torque, torque):
    real_torque.qmgr("create queue long")
    for directive in ("set queue long queue_type = execution", "set queue long started = true",
                      "set queue long enabled = true"):
        real_torque.qmgr(directive)
    # Two 60 s jobs fill the two np=2 nodes, so everything after them waits in the queue.
    blockers = [real_torque.qsub("-l", "nodes=1:ppn=2", script="sleep 60\n") for _ in range(2)]
    ids = {
        "serial": real_torque.qsub("-l", "walltime=90"),
        "wide": real_torque.qsub("-l", "nodes=2:ppn=2,walltime=5:30"),
        "procs": real_torque.qsub("-l", "procs=3"),
        "ncpus": real_torque.qsub("-l", "ncpus=2"),
        "held": real_torque.qsub("-h"),
        "long": real_torque.qsub("-q", "long", "-l", "walltime=2:00:00:00"),
        "array": real_torque.qsub("-t", "0-3%2"),
    }
    deleted = real_torque.qsub()
    real_torque.run("qdel", deleted)
    real_torque.wait_jobs(blockers, "R")
    # The scheduler's cycle after the submissions has left its comment on the procs job.
    waiting.wait_for(lambda: "Unknown node-attribute" in (real_torque.job_attr(ids["procs"], "comment") or ""),
                     60, "pbs_sched's comment on the procs job", interval=0.3)
    jobs = {j.id: j for j in torque.jobs()}
    assert jobs[ids["serial"]].is_queued and jobs[ids["serial"]].cores == 1
    assert jobs[ids["serial"]].walltime_secs == 90
    assert jobs[ids["wide"]].cores == 4 and jobs[ids["wide"]].walltime_secs == 330
    assert jobs[ids["procs"]].cores == 3
    assert jobs[ids["procs"]].refused_by_server == "Unknown node-attribute"
    assert jobs[ids["ncpus"]].cores == 2
    assert jobs[ids["held"]].state == "H"
    assert jobs[ids["long"]].queue == "long" and jobs[ids["long"]].walltime_secs == 2 * 86400
    base = ids["array"].split("[", 1)[0]
    subjobs = sorted(i for i in jobs if i.startswith(base + "["))
    assert len(subjobs) == 4
    # The %2 limit: two sub-jobs queued, the rest held by the limit (Hold_Types l).
    assert sorted(jobs[i].state for i in subjobs) == ["H", "H", "Q", "Q"]
    assert jobs[deleted].state == "C"
    for blocker in blockers:
        assert jobs[blocker].is_running and jobs[blocker].exec_hosts


def test_nodes_read_and_change(real_torque, torque):
    nodes = {n.name: n for n in torque.nodes()}
    assert set(nodes) == {"torque-mom1", "torque-mom2"}
    assert all(n.np == 2 and n.is_usable and n.is_idle for n in nodes.values())
    assert torque.node("torque-mom1").name == "torque-mom1"
    assert torque.node("no-such-node") is None
    torque.offline("torque-mom1", "phorque: draining: test")
    node = torque.node("torque-mom1")
    assert node.is_offline and node.note == "phorque: draining: test" and node.marked_by_phorque
    torque.clear_offline("torque-mom1", "phorque: back")
    node = torque.node("torque-mom1")
    assert not node.is_offline and node.note == "phorque: back"
    torque.set_note("torque-mom1", "")


def test_pbsnodes_failures_that_exit_0_are_failures(real_torque, torque):
    # The real pbsnodes exits 0 here and says so only on stderr.
    raw = real_torque.run("pbsnodes", "-o", "-N", "x", "--", "no-such-node")
    assert raw.returncode == 0 and "Unknown node" in raw.stderr
    for change in (lambda: torque.offline("no-such-node", "phorque: x"),
                   lambda: torque.clear_offline("no-such-node", "phorque: x"),
                   lambda: torque.set_note("no-such-node", "phorque: x")):
        with pytest.raises(CommandError, match="Unknown node"):
            change()


def test_a_new_node_is_offline_by_torque_until_its_moms_know_it(real_torque, torque):
    real_torque.cluster.add_alias("cloud-a.example")
    assert torque.add_node("cloud-a.example", 2, note="phorque: joined i-1 (local)") is True
    node = torque.node("cloud-a.example")
    assert MOM_LIST_NOT_SENT in node.state and OFFLINE in node.state and node.is_new
    # A note alone is taken in that window; an offline (a state change) is refused, exit 0.
    assert node.note == "phorque: joined i-1 (local)"
    with pytest.raises(NodeNotReady):
        torque.offline("cloud-a.example", "phorque: draining: x")
    assert torque.node("cloud-a.example").note == "phorque: joined i-1 (local)"
    # Then Torque's own offline goes and the node is down until a mom reports.
    waiting.wait_for(lambda: torque.node("cloud-a.example").state == frozenset({"down"}), 60,
                     "MOM-list-not-sent to pass", interval=0.3)
    torque.set_note("cloud-a.example", "phorque: joined i-1 (local)")
    assert torque.node("cloud-a.example").note == "phorque: joined i-1 (local)"
    assert torque.add_node("cloud-a.example", 2) is False  # exists: not an error
    assert torque.delete_node("cloud-a.example") is True
    assert torque.node("cloud-a.example") is None
    assert torque.delete_node("cloud-a.example") is False  # gone: not an error


def test_a_name_that_does_not_resolve_cannot_be_created(real_torque, torque):
    with pytest.raises(CommandError) as failed:
        torque.add_node("no-such-host.invalid", 2)
    assert failed.value.returncode == 2 and "Unknown node" in failed.value.stderr


def test_created_node_carries_np_and_properties(real_torque, torque):
    real_torque.cluster.add_alias("cloud-b.example")
    torque.add_node("cloud-b.example", 4, properties=("cloud", "ib"))
    node = torque.node("cloud-b.example")
    assert node.np == 4 and set(node.properties) == {"cloud", "ib"}
    torque.delete_node("cloud-b.example")
