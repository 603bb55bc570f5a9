"""Capture what a real Torque prints, for the parser tests' fixtures (`tests/fixtures/real-torque/`).

    python3 -m torquebed.capture OUT_DIR

Starts a private Torque (two moms of np=2), submits the jobs the fixtures' README lists, and
writes each command's stdout, stderr and exit status (`NAME.out`, `NAME.err`, `NAME.rc`), the
accounting log, and the jobs directory's listing. Then stops the Torque it started.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from torquebed.cluster import USER, Cluster


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    cluster = Cluster.find()
    cluster.start(moms=2, np=2)
    try:
        return _capture(cluster, out)
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


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
