"""Capture what a real Torque prints, for the parser tests' fixtures (`tests/fixtures/real-torque/`).

    python3 -m torquebed.capture OUT_DIR
    python3 -m torquebed.capture --shapes OUT_DIR/shapes

Starts a private Torque (two moms of np=2), submits the jobs the fixtures' README lists, and
writes each command's stdout, stderr and exit status (`NAME.out`, `NAME.err`, `NAME.rc`), the
accounting log, and the jobs directory's listing. Then stops the Torque it started.

``--shapes`` captures jobs that ask for memory, GPUs and node properties instead, on two moms of
np=8 with the property ``ib`` and a third, made later, with ``gpus=2`` and ``bigmem`` (see
:func:`_capture_shapes`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from torquebed.cluster import USER, Cluster


def main(out: Path, shapes: bool = False) -> int:
    out.mkdir(parents=True, exist_ok=True)
    cluster = Cluster.find()
    cluster.start(moms=2, np=8 if shapes else 2)
    try:
        return _capture_shapes(cluster, out) if shapes else _capture(cluster, out)
    finally:
        cluster.stop()


def _save(out: Path, name: str, proc: subprocess.CompletedProcess) -> None:
    (out / f"{name}.out").write_text(proc.stdout)
    if proc.stderr:
        (out / f"{name}.err").write_text(proc.stderr)
    (out / f"{name}.rc").write_text(f"{proc.returncode}\n")


def _capture(cluster: Cluster, out: Path) -> int:
    run = cluster.run
    _save(out, "pbsnodes_x_free", run("pbsnodes", "-x"))
    # A node just created: down,offline,MOM-list-not-sent until the node list reaches the moms.
    cluster.add_alias("cloud-new.example")
    _save(out, "qmgr_create_node", run("qmgr", "-c", "create node cloud-new.example np=4"))
    _save(out, "pbsnodes_x_new_node", run("pbsnodes", "-x", "--", "cloud-new.example"))
    _save(out, "pbsnodes_o_new_node", run("pbsnodes", "-o", "-N", "phorque: x", "--", "cloud-new.example"))
    _save(out, "qmgr_create_existing", run("qmgr", "-c", "create node cloud-new.example np=4"))
    _save(out, "qmgr_create_unresolvable", run("qmgr", "-c", "create node no-such-host.invalid np=4"))
    _save(out, "qmgr_delete_unknown", run("qmgr", "-c", "delete node no-such-node"))
    _save(out, "pbsnodes_o_unknown", run("pbsnodes", "-o", "-N", "x", "--", "no-such-node"))
    _save(out, "pbsnodes_c_unknown", run("pbsnodes", "-c", "--", "no-such-node"))
    _save(out, "pbsnodes_N_unknown", run("pbsnodes", "-N", "x", "--", "no-such-node"))
    _save(out, "pbsnodes_x_unknown", run("pbsnodes", "-x", "--", "no-such-node"))
    # A second queue, as a site has for long or GPU jobs.
    for directive in ("create queue long", "set queue long queue_type = execution",
                      "set queue long started = true", "set queue long enabled = true"):
        cluster.qmgr(directive)
    ids = {
        "serial": cluster.qsub("-N", "serial", script="sleep 60\n"),
        "nodes2x2": cluster.qsub("-l", "nodes=2:ppn=2", script="sleep 60\n"),
        "procs3": cluster.qsub("-l", "procs=3", script="sleep 60\n"),
        "ncpus2": cluster.qsub("-l", "ncpus=2", script="sleep 60\n"),
        "array": cluster.qsub("-t", "0-3%2", script="sleep 60\n"),
        "held": cluster.qsub("-h", script="sleep 60\n"),
        "long": cluster.qsub("-q", "long", "-l", "walltime=2:00:00:00", script="sleep 60\n"),
        "mem": cluster.qsub("-l", "mem=4gb,nodes=1:ppn=1", script="sleep 60\n"),
        "env": cluster.qsub("-v", "A=x&y<z>'q\"", script="sleep 60\n"),
        "failing": cluster.qsub("-N", "failing", script="exit 3\n"),
    }
    deleted = cluster.qsub("-N", "deleted", script="sleep 60\n")
    (out / "job_ids.txt").write_text("".join(f"{k} {v}\n" for k, v in ids.items()) + f"deleted {deleted}\n")
    _save(out, "qsub_too_wide", run("qsub", "-l", "nodes=5:ppn=2", user=USER, input="sleep 1\n"))
    _save(out, "qdel_queued", run("qdel", deleted))
    time.sleep(5)  # let the scheduler run its cycle and the moms report
    _save(out, "qstat_f_x_t", run("qstat", "-f", "-x", "-t"))
    _save(out, "qstat_f_x_one", run("qstat", "-f", "-x", ids["serial"]))
    _save(out, "qstat_f_x_unknown", run("qstat", "-f", "-x", "99999.vm"))
    _save(out, "pbsnodes_x_busy", run("pbsnodes", "-x"))
    listing = sorted(str(p.relative_to(cluster.server_priv)) for p in
                     (cluster.server_priv / "jobs").rglob("*"))
    (out / "jobs_dir.txt").write_text("\n".join(listing) + "\n")
    time.sleep(15)  # the failing job's E record comes with the mom's obit
    for path in sorted((cluster.server_priv / "accounting").iterdir()):
        (out / "accounting.log").write_text(path.read_text())
    cluster.qmgr("delete node cloud-new.example", check=False)
    return 0


#: The jobs of the shapes capture: name -> qsub arguments. Every memory unit Torque accepts is
#: among them, so the fixtures show how pbs_server stores each.
SHAPE_JOBS: dict[str, tuple[str, ...]] = {
    "mem64gb": ("-l", "mem=64gb"),
    "pmem4gb_nodes2x4": ("-l", "pmem=4gb,nodes=2:ppn=4"),
    "vmem_pvmem": ("-l", "vmem=16gb,pvmem=2gb,nodes=1:ppn=4"),
    "rerun_n": ("-r", "n"),
    "gres_gpu2": ("-l", "gres=gpu:2"),
    "host_ppn2": ("-l", "nodes=torque-mom1:ppn=2"),
    "prop_first": ("-l", "nodes=1:ib:ppn=2"),
    # -L requests conflict with the batch queue's resources_default.nodes (qsub exits 55), so
    # they go to a queue without defaults.
    "l_tasks": ("-q", "tasks", "-L", "tasks=2:lprocs=4:memory=8gb"),
    "l_two_parts": ("-q", "tasks", "-L", "tasks=1:lprocs=2:memory=1gb",
                    "-L", "tasks=3:lprocs=1:memory=512mb"),
    "l_in_batch": ("-L", "tasks=1:lprocs=1:memory=1gb"),
    "units_bytes": ("-l", "mem=1048576"),
    "units_b_kb": ("-l", "mem=2048b,pmem=1536kb"),
    "units_MB_GB": ("-l", "mem=1536MB,vmem=2GB"),
    "units_tb": ("-l", "mem=1tb"),
    "units_words": ("-l", "mem=8w,pmem=4kw,vmem=2mw,pvmem=1gw"),
}
#: Jobs that need the GPU/bigmem node: submitted once before it exists and once after.
LATE_JOBS: dict[str, tuple[str, ...]] = {
    "gpus2": ("-l", "nodes=1:ppn=8:gpus=2"),
    "ib_bigmem": ("-l", "nodes=2:ppn=4:ib+1:ppn=1:bigmem"),
    "l_gpus": ("-q", "tasks", "-L", "tasks=2:lprocs=4:memory=8gb:gpus=1"),
}
GPU_NODE = "torque-gpu"


def _qstat(cluster: Cluster) -> dict[str, tuple[str, str]]:
    """Job id -> (state, comment), from ``qstat -f -x``."""
    import xml.etree.ElementTree as ET  # noqa: PLC0415

    proc = cluster.run("qstat", "-f", "-x", "-t")
    if proc.returncode or not proc.stdout.strip():
        return {}
    root = ET.fromstring(proc.stdout)
    return {j.findtext("Job_Id", ""): (j.findtext("job_state", ""), j.findtext("comment", ""))
            for j in root.iter("Job")}


def _until(predicate, timeout: float, what: str) -> bool:
    """Poll ``predicate`` until true; False (and a message) when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            print(f"capture: gave up waiting for {what} after {timeout:.0f} s")
            return False
        time.sleep(0.5)
    return True


def _capture_shapes(cluster: Cluster, out: Path) -> int:
    """Memory, GPU and property requests, as pbs_server stores, places and accounts them.

    1. The moms get the property ``ib``; scheduling is off, so that every job is seen queued; a
       queue ``tasks`` without default resources takes the ``-L`` jobs.
    2. Each job of :data:`SHAPE_JOBS` and :data:`LATE_JOBS` is submitted (``qsub_NAME.*``): the
       late ones while no node has GPUs or ``bigmem``, to see whether qsub accepts them.
    3. A node ``np=8,gpus=2,properties=bigmem`` is created with its own mom, the late jobs are
       submitted again (``qsub_NAME_late.*``), and everything is read queued.
    4. Every job is held, the GPU node set offline and scheduling turned on, with one more GPU
       job queued (``qstat_f_x_gpu_node_offline``: what becomes of it while two free nodes have
       its cores but no GPUs); then the node is cleared and the GPU job released: where
       pbs_sched puts ``gpus=2`` (``qstat_f_x_gpu_running``).
    5. The others are released; each job runs 20 s; when no job runs any more, one ``-L`` job is
       run with ``qrun`` (pbs_sched never starts them), and then the final ``qstat`` and the
       accounting log (S and E records carry the requests) are saved.
    """
    run = cluster.run
    for mom in ("torque-mom1", "torque-mom2"):
        cluster.qmgr(f"set node {mom} properties = ib")
    cluster.qmgr("set server scheduling = false")
    for directive in ("create queue tasks", "set queue tasks queue_type = execution",
                      "set queue tasks started = true", "set queue tasks enabled = true"):
        cluster.qmgr(directive)
    _save(out, "pbsnodes_x_static", run("pbsnodes", "-x"))
    ids: dict[str, str] = {}
    script = "sleep 20\n"
    for name, args in {**SHAPE_JOBS, **LATE_JOBS}.items():
        proc = run("qsub", "-N", name, *args, user=USER, input=script)
        _save(out, f"qsub_{name}", proc)
        if proc.returncode == 0:
            ids[name] = proc.stdout.strip()
    # The GPU node with its own mom, at the default mom ports (add_mom's create_node=False).
    cluster.add_alias(GPU_NODE)
    _save(out, "qmgr_create_gpu_node", run(
        "qmgr", "-c", f"create node {GPU_NODE} np=8,gpus=2,properties=bigmem,"
        "mom_service_port=15002,mom_manager_port=15003"))
    cluster.add_mom(GPU_NODE, np=8, create_node=False)
    cluster.wait_nodes_free(["torque-mom1", "torque-mom2", GPU_NODE], timeout=120)
    for name, args in LATE_JOBS.items():
        proc = run("qsub", "-N", name, *args, user=USER, input=script)
        _save(out, f"qsub_{name}_late", proc)
        if proc.returncode == 0:
            ids[f"{name}_late"] = proc.stdout.strip()
    (out / "job_ids.txt").write_text("".join(f"{k} {v}\n" for k, v in ids.items()))
    _save(out, "pbsnodes_x_with_gpu_node", run("pbsnodes", "-x"))
    _save(out, "qstat_f_x_queued", run("qstat", "-f", "-x"))
    gpu_job = ids.get("gpus2_late") or ids.get("gpus2")
    others = [i for i in ids.values() if i != gpu_job]
    if gpu_job:
        run("qhold", gpu_job)
    # A GPU job while the only GPU node is offline and the other two are free: pbs_server
    # finds it "requesting nodes that will never be available" and pbs_sched deletes it.
    offline_job = cluster.qsub("-N", "gpus2_node_offline", "-l", "nodes=1:ppn=8:gpus=2", script=script)
    with (out / "job_ids.txt").open("a") as ids_file:
        ids_file.write(f"gpus2_node_offline {offline_job}\n")
    if others:
        run("qhold", *others)
    run("pbsnodes", "-o", "--", GPU_NODE)
    cluster.qmgr("set server scheduling = true")
    _until(lambda: _qstat(cluster).get(offline_job, ("", ""))[0] not in ("Q", ""), 60,
           "pbs_sched to decide about the GPU job")
    _save(out, "qstat_f_x_gpu_node_offline", run("qstat", "-f", "-x", offline_job))
    run("pbsnodes", "-c", "--", GPU_NODE)
    if gpu_job:
        run("qrls", gpu_job)  # a new scheduling cycle starts on the release
        _until(lambda: _qstat(cluster).get(gpu_job, ("", ""))[0] == "R", 120, "the GPU job to run")
        _save(out, "qstat_f_x_gpu_running", run("qstat", "-f", "-x", gpu_job))
        _save(out, "pbsnodes_x_gpu_running", run("pbsnodes", "-x"))
    if others:
        run("qrls", *others)

    def settled() -> bool:
        # Settled: nothing runs, and every job left waiting has been looked at by pbs_sched.
        states = _qstat(cluster)
        return all(s == "C" or (s in "QH" and c) for s, c in states.values())

    _until(settled, 300, "every job to run or be refused")
    # pbs_sched does not start -L jobs ("Unknown node"); qrun makes pbs_server place one itself.
    if "l_tasks" in ids:
        _save(out, "qrun_l_tasks", run("qrun", ids["l_tasks"]))
        _until(settled, 120, "the -L job run by qrun to end")
    _save(out, "qstat_f_x_final", run("qstat", "-f", "-x"))
    _save(out, "pbsnodes_x_final", run("pbsnodes", "-x"))
    left = [i for i, (s, _) in _qstat(cluster).items() if s != "C"]
    if left:
        run("qdel", *left)
        _until(lambda: all(s == "C" for s, _ in _qstat(cluster).values()), 60, "deletions")
    for path in sorted((cluster.server_priv / "accounting").iterdir()):
        (out / "accounting.log").write_text(path.read_text())
    return 0


if __name__ == "__main__":
    shapes = sys.argv[1:2] == ["--shapes"]
    sys.exit(main(Path(sys.argv[2 if shapes else 1]), shapes=shapes))
