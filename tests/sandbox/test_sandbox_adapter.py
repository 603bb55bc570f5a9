"""Phorque's Torque adapter reads and changes a sandbox cluster through the same code path it
uses for a real pbs_server (phorque.adapters.torque.commands.Torque with cluster_directory=DIR)."""

from __future__ import annotations

import pytest

from phorque.adapters.torque.commands import Torque, phorque_note
from phorque.core.errors import CommandError
from phorque.core.model import Chunk


@pytest.fixture
def torque(sandbox):
    return sandbox, Torque(cluster_directory=str(sandbox.root), timeout=20)


def test_jobs_and_nodes(torque):
    sb, t = torque
    running = sb.qsub("-l", "nodes=2:ppn=3,walltime=00:30:00", runtime=300)
    waiting = sb.qsub("-l", "procs=4", runtime=10)
    array = sb.qsub("-t", "0-2", "-l", "nodes=1:ppn=1", runtime=300)
    sb.wait_for(lambda: len([j for j in t.jobs() if j.state == "R"]) == 3, what="two sub-jobs")
    jobs = {j.id: j for j in t.jobs()}
    number = array.split("[")[0]
    assert set(jobs) == {running, waiting, *(f"{number}[{i}].srv.test" for i in range(3))}
    job = jobs[running]
    assert (job.state, job.cores, job.walltime_secs, job.exec_hosts) == ("R", 6, 1800,
                                                                           ("node01", "node02"))
    assert job.chunks == (Chunk(count=2, ppn=3),)
    assert 1700 < job.remaining_secs <= 1800 and job.started_at is not None
    assert jobs[waiting].state == "Q" and jobs[waiting].cores == 4
    nodes = {n.name: n for n in t.nodes()}
    assert nodes["node01"].used_slots + nodes["node02"].used_slots == 8
    assert running in nodes["node01"].jobs and running in nodes["node02"].jobs
    assert {n.np for n in nodes.values()} == {4}


def test_node_lookup_and_marks(torque):
    sb, t = torque
    assert t.node("node01").state == frozenset({"free"})
    assert t.node("no-such-node") is None
    t.offline("node01", phorque_note("draining"))
    node = t.node("node01")
    assert node.is_offline and node.marked_by_phorque and node.note == "phorque: draining"
    t.clear_offline("node01", "")
    node = t.node("node01")
    assert not node.is_offline and node.note == ""
    t.set_note("node02", "admin: keep")
    assert t.node("node02").note == "admin: keep"
    with pytest.raises(CommandError, match="Unknown node"):
        t.offline("no-such-node", "x")


def test_add_and_delete_nodes(torque):
    sb, t = torque
    assert t.add_node("cloud-1.example.com", 8, ["cloud", "spot"], note=phorque_note("joined"))
    assert not t.add_node("cloud-1.example.com", 8)  # already exists: not an error
    node = t.node("cloud-1.example.com")
    assert node.np == 8 and node.properties == ("cloud", "spot") and node.is_down
    assert node.note == "phorque: joined"
    assert "cloud-1.example.com np=8 cloud spot" in (sb.root / "server_priv/nodes").read_text()
    t.schedule()
    assert t.delete_node("cloud-1.example.com")
    assert not t.delete_node("cloud-1.example.com")  # already gone: not an error
    assert t.node("cloud-1.example.com") is None
    assert "cloud-1" not in (sb.root / "server_priv/nodes").read_text()


def test_cloud_node_boots_after_the_delay(make_sandbox):
    sb = make_sandbox(boot_delay=2, speed=2)
    t = Torque(cluster_directory=str(sb.root), timeout=20)
    t.add_node("cloud-2", 4)
    assert t.node("cloud-2").is_down
    sb.wait_for(lambda: t.node("cloud-2").state == frozenset({"free"}), timeout=10,
                what="the boot")
