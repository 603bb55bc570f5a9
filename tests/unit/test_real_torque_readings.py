"""What real Torque servers print, read right: the captures of tests/fixtures/real-torque/ (our
Torque 6.1.3) and output collected from other sites (Torque 2.x job-exclusive nodes, Torque 6
NUMA placement)."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from phorque.adapters.torque.accounting import AccountingParser
from phorque.adapters.torque.commands import NodeNotReady, Torque
from phorque.adapters.torque.resources import Asks
from phorque.adapters.torque.xmlparse import jobs_from_bytes, nodes_from_bytes
from phorque.core.errors import CommandError
from phorque.core.model import JOB_EXCLUSIVE, Chunk, Job
from phorque.core.plan import Kind
from phorque.policy.policies import CostAware, OnDemand, OnDemandPlusPlus
from phorque.policy.view import View
from tests.builders import cloud, cloud_node, inst, job, node, owned, snapshot

REAL = Path(__file__).parents[1] / "fixtures" / "real-torque"
POLICIES = (CostAware, OnDemand, OnDemandPlusPlus)


def _ids() -> dict[str, str]:
    return dict(line.split() for line in (REAL / "job_ids.txt").read_text().splitlines())


def test_every_captured_job_reads_as_submitted():
    ids = _ids()
    jobs = {j.id: j for j in jobs_from_bytes((REAL / "qstat_f_x_t.out").read_bytes())}
    assert jobs[ids["nodes2x2"]].cores == 4
    assert jobs[ids["ncpus2"]].cores == 2  # ncpus alone: N cores, as the schedulers treat it
    procs = jobs[ids["procs3"]]
    assert procs.cores == 3 and procs.refused_by_server == "Unknown node-attribute"
    assert jobs[ids["held"]].state == "H"
    assert jobs[ids["long"]].queue == "long" and jobs[ids["long"]].walltime_secs == 2 * 86400
    base = ids["array"].split("[", 1)[0]
    assert sorted(j.state for i, j in jobs.items() if i.startswith(base + "[")) == ["H", "H", "R", "R"]
    assert jobs[ids["deleted"]].state == "C"
    # The -v value with & < > ' " comes back unharmed through Torque's escaping.
    assert ids["env"] in jobs


def test_a_new_node_as_the_real_server_prints_it_is_booting_not_held_by_an_administrator():
    (new,) = nodes_from_bytes((REAL / "pbsnodes_x_new_node.out").read_bytes())
    assert new.is_new and new.is_offline and new.is_down
    instance = inst("i-1", new.name, age=20)
    snap = snapshot(jobs=[job("1.s", nodes=((1, 4),))], nodes=[new],
                    clouds=[cloud(cores=4, instances=(instance,))],
                    owned=[owned("i-1", node_name=new.name, joined=False, age=20)])
    (cn,) = View(snap).cloud_nodes
    assert not cn.admin_offline
    for policy in POLICIES:
        plan = policy().plan(snap)
        assert not [a for a in plan.actions if a.kind == Kind.LAUNCH], (policy.__name__, plan)
        assert not any("administrator" in n for n in plan.notes), plan.notes


@pytest.mark.parametrize("comment, refused", [
    ("Not Running - PBS Error: Unknown node-attribute ", True),
    ("Not Running - PBS Error: Job exceeds queue resource limits", True),
    ("Not Running: Not enough of the right type of nodes are available", False),
    ("Not Running - PBS Error: Execution server rejected request", False),
    ("", False),
])
def test_only_jobs_the_server_refuses_to_start_are_not_demand(comment, refused):
    waiting = Job(id="5.s", state="Q", queue="batch", cores=4, comment=comment)
    snap = snapshot(jobs=[waiting], clouds=[cloud(cores=4, desired=0)])
    for policy in POLICIES:
        plan = policy().plan(snap)
        launched = sum(a.count or 0 for a in plan.actions if a.kind == Kind.LAUNCH)
        assert launched == (0 if refused else 1), (policy.__name__, comment)
        assert any("5.s" in n and "cannot start" in n for n in plan.notes) == refused


def test_a_job_exclusive_node_that_lists_no_job_is_not_idle():
    # Torque 2.x, as collected at another site: the state says taken, the jobs list is empty.
    taken = cloud_node("a", state=JOB_EXCLUSIVE)
    assert not taken.is_idle
    snap = snapshot(nodes=[taken], clouds=[cloud(charge=3600, instances=(inst("i-a", "a", age=3590),))],
                    owned=[owned("i-a", node_name="a", age=3590)])
    for policy in POLICIES:
        plan = policy().plan(snap)
        assert not [a for a in plan.actions if a.kind in (Kind.DRAIN, Kind.TERMINATE, Kind.REMOVE)], \
            (policy.__name__, plan)


def test_dedicated_cores_and_threads_count_where_they_say_more_than_the_job_list():
    # Torque 6 with NUMA support: a -L job on whole cores; the jobs list names one slot.
    xml = (b"<Data><Node><name>n1</name><state>free</state><np>16</np>"
           b"<jobs>0/12.srv</jobs><dedicated_cores>8</dedicated_cores>"
           b"<dedicated_threads>8</dedicated_threads></Node>"
           b"<Node><name>n2</name><state>free</state><np>16</np><jobs>0-3/13.srv</jobs>"
           b"<dedicated_cores>0</dedicated_cores></Node></Data>")
    n1, n2 = nodes_from_bytes(xml)
    assert n1.used_slots == 8 and n1.free_cores == 8
    assert n2.used_slots == 4 and n2.free_cores == 12
    assert node("n3", np=16).free_cores == 16


def _fake_pbsnodes(tmp_path: Path, capture: str) -> Torque:
    """A pbsnodes that prints what the real one printed (its stderr and exit status)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "pbsnodes"
    err = (REAL / f"{capture}.err").read_text()
    code = int((REAL / f"{capture}.rc").read_text())
    script.write_text(f"#!/bin/sh\nprintf '%s' {_sh_quote(err)} >&2\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert os.access(script, os.X_OK)
    return Torque(str(tmp_path), timeout=30)


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_pbsnodes_on_an_unknown_node_fails_although_it_exits_0(tmp_path):
    torque = _fake_pbsnodes(tmp_path, "pbsnodes_o_unknown")
    with pytest.raises(CommandError, match="Unknown node"):
        torque.offline("no-such-node", "phorque: draining: x")


def test_pbsnodes_on_a_node_just_created_is_not_ready_yet(tmp_path):
    torque = _fake_pbsnodes(tmp_path, "pbsnodes_o_new_node")
    with pytest.raises(NodeNotReady):
        torque.offline("cloud-new.example", "phorque: draining: x")


# -- jobs that ask for memory, GPUs and node properties (tests/fixtures/real-torque/shapes/) -------

SHAPES = REAL / "shapes"
PHYSMEM_MB = -(-24683568 // 1024)  # the moms' physmem=24683568kb


def _shape_ids() -> dict[str, str]:
    return dict(line.split() for line in (SHAPES / "job_ids.txt").read_text().splitlines())


def _shape_jobs(capture: str) -> dict[str, Job]:
    by_id = {j.id: j for j in jobs_from_bytes((SHAPES / f"{capture}.out").read_bytes())}
    return {name: by_id[job_id] for name, job_id in _shape_ids().items() if job_id in by_id}


def test_memory_gpu_and_property_requests_read_as_submitted():
    jobs = _shape_jobs("qstat_f_x_queued")
    # pbs_server adds the batch queue's nodes=1 to a job that asks for no nodes.
    assert jobs["mem64gb"].mem_mb == 65536 and jobs["mem64gb"].chunks == (Chunk(1, 1, mem_mb=65536),)
    assert jobs["pmem4gb_nodes2x4"].pmem_mb == 4096
    assert jobs["pmem4gb_nodes2x4"].chunks == (Chunk(2, 4, mem_mb=16384),)
    vmem = jobs["vmem_pvmem"]
    assert (vmem.vmem_mb, vmem.pvmem_mb, vmem.chunks) == (16384, 2048, (Chunk(1, 4, mem_mb=16384),))
    assert jobs["gpus2_late"].gpus == 2 and jobs["gpus2_late"].chunks == (Chunk(1, 8, gpus=2),)
    assert jobs["ib_bigmem_late"].chunks == (Chunk(2, 4, properties=("ib",)), Chunk(1, 1, properties=("bigmem",)))
    assert jobs["prop_first"].chunks == (Chunk(1, 2, properties=("ib",)),)
    assert jobs["host_ppn2"].chunks == (Chunk(1, 2, host="torque-mom1"),)
    assert jobs["gres_gpu2"].gpus == 2 and jobs["gres_gpu2"].chunks == (Chunk(1, 1, gpus=2),)
    assert jobs["rerun_n"].rerunnable is False
    assert all(j.rerunnable is True for name, j in jobs.items() if name != "rerun_n")
    assert (jobs["mem64gb"].pmem_mb, jobs["mem64gb"].gpus, jobs["prop_first"].mem_mb) == (0, 0, 0)


@pytest.mark.parametrize("name,asks", [
    ("units_bytes", (1, 0, 0, 0)),            # mem=1048576 is printed 1048576b
    ("units_b_kb", (1, 2, 0, 0)),             # 2048b, 1536kb
    ("units_MB_GB", (1536, 0, 2048, 0)),      # 1536MB and 2GB are printed 1536mb and 2gb
    ("units_tb", (1 << 20, 0, 0, 0)),
    ("units_words", (1, 1, 8, 4096)),         # 8w, 4kw, 2mw, 1gw: words of 4 bytes
])
def test_every_unit_as_the_server_prints_it(name, asks):
    job = _shape_jobs("qstat_f_x_queued")[name]
    assert (job.mem_mb, job.pmem_mb, job.vmem_mb, job.pvmem_mb) == asks


def test_l_requests_as_6_1_3_prints_them():
    jobs = _shape_jobs("qstat_f_x_queued")
    tasks = jobs["l_tasks"]
    assert (tasks.cores, tasks.mem_mb, tasks.chunks) == (8, 16384, (Chunk(2, 4, spread=True, mem_mb=2048),))
    two = jobs["l_two_parts"]
    assert (two.cores, two.mem_mb) == (5, 1024 + 3 * 512)
    gpus = jobs["l_gpus_late"]
    assert (gpus.cores, gpus.mem_mb, gpus.gpus) == (8, 16384, 2)
    assert gpus.chunks == (Chunk(2, 4, mem_mb=8192, gpus=1),)
    # pbs_sched 6.1.3 never starts them, and qrun cannot either (no NUMA support built in).
    final = _shape_jobs("qstat_f_x_final")
    assert final["l_tasks"].state == "Q"
    assert final["l_tasks"].comment.strip() == "Not Running - PBS Error: Unknown node"
    # So they are not demand for new instances; a job of nodes= with the same words still is.
    assert final["l_tasks"].request2 and final["l_tasks"].refused_by_server == "Unknown node"
    assert replace(final["l_tasks"], request2=False).refused_by_server is None
    assert "Unknown node in hostlist" in (SHAPES / "qrun_l_tasks.err").read_text()


def test_l_requests_are_refused_in_a_queue_with_a_nodes_default():
    assert (SHAPES / "qsub_l_in_batch.rc").read_text().strip() == "55"
    assert "conflicts with the queue's default resources" in (SHAPES / "qsub_l_in_batch.err").read_text()


def test_qsub_refuses_gpus_and_properties_no_node_has():
    for name in ("gpus2", "ib_bigmem"):
        assert (SHAPES / f"qsub_{name}.rc").read_text().strip() == "190"
        assert "cannot locate feasible nodes" in (SHAPES / f"qsub_{name}.err").read_text()
        assert (SHAPES / f"qsub_{name}_late.rc").read_text().strip() == "0"


def test_nodes_memory_gpus_and_properties():
    static = {n.name: n for n in nodes_from_bytes((SHAPES / "pbsnodes_x_static.out").read_bytes())}
    assert set(static) == {"torque-mom1", "torque-mom2"}
    assert all(n.properties == ("ib",) and n.gpus == 0 and n.mem_mb == PHYSMEM_MB and n.np == 8
               for n in static.values())
    nodes = {n.name: n for n in nodes_from_bytes((SHAPES / "pbsnodes_x_with_gpu_node.out").read_bytes())}
    gpu = nodes["torque-gpu"]
    assert (gpu.np, gpu.gpus, gpu.properties, gpu.mem_mb) == (8, 2, ("bigmem",), PHYSMEM_MB)


def test_gpus_go_only_to_the_node_created_with_gpus():
    (running,) = jobs_from_bytes((SHAPES / "qstat_f_x_gpu_running.out").read_bytes())
    assert running.state == "R" and running.exec_hosts == ("torque-gpu",)
    assert b"<exec_gpus>torque-gpu-gpu/1+torque-gpu-gpu/0</exec_gpus>" in (
        SHAPES / "qstat_f_x_gpu_running.out").read_bytes()
    # With the GPU node offline, pbs_sched deleted the GPU job rather than start it on the two
    # free nodes without GPUs: no exec_host, and a D record by root.
    (offline,) = jobs_from_bytes((SHAPES / "qstat_f_x_gpu_node_offline.out").read_bytes())
    assert offline.state == "C" and offline.exec_hosts == ()
    job_id = _shape_ids()["gpus2_node_offline"]
    log = (SHAPES / "accounting.log").read_text().splitlines()
    assert [line.split(";", 2)[1] for line in log if line.split(";")[2] == job_id] == ["Q", "D"]


def test_accounting_records_ask_what_qstat_showed():
    queued = {j.id: j for j in jobs_from_bytes((SHAPES / "qstat_f_x_queued.out").read_bytes())}
    ended = [r for r in AccountingParser().parse_file(SHAPES / "accounting.log") if r.type == "E"]
    assert len(ended) >= 14
    for record in ended:
        job = queued[record.job_id]
        assert record.asks == Asks(job.mem_mb, job.pmem_mb, job.vmem_mb, job.pvmem_mb, job.gpus), record.job_id
        assert record.chunks == job.chunks, record.job_id
    by_id = {r.job_id: r for r in ended}
    assert by_id[_shape_ids()["mem64gb"]].asks.mem_mb == 65536
    assert by_id[_shape_ids()["gres_gpu2"]].asks.gpus == 2
