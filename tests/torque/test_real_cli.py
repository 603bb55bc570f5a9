"""`phorque-status --json` and `phorque-evaluate --dry-run --json` against a real pbs_server, with a
moto server as the cloud."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

from phorque.adapters.cloud import make_provider
from phorque.adapters.config import load_config
from tests import waiting
from tests.integration.kit import conf_text


def _cli(module: str, conf, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", module, "-c", str(conf), *args], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _submit_every_kind(real_torque) -> dict[str, str]:
    real_torque.qmgr("create queue long")
    for directive in ("set queue long queue_type = execution", "set queue long started = true",
                      "set queue long enabled = true"):
        real_torque.qmgr(directive)
    blockers = [real_torque.qsub("-l", "nodes=1:ppn=2", script="sleep 120\n") for _ in range(2)]
    real_torque.wait_jobs(blockers, "R")
    ids = {
        "serial": real_torque.qsub(),
        "wide": real_torque.qsub("-l", "nodes=2:ppn=2"),
        "procs": real_torque.qsub("-l", "procs=3"),
        "array": real_torque.qsub("-t", "1-3"),
        "held": real_torque.qsub("-h"),
        "long": real_torque.qsub("-q", "long", "-l", "nodes=1:ppn=2"),
        "deleted": real_torque.qsub(),
        "failing": real_torque.qsub(script="exit 7\n"),
    }
    real_torque.run("qdel", ids["deleted"])
    waiting.wait_for(lambda: "Unknown node-attribute" in (real_torque.job_attr(ids["procs"], "comment") or ""),
                     60, "pbs_sched's comment on the procs job", interval=0.3)
    return {**ids, "blocker1": blockers[0], "blocker2": blockers[1]}


def _raw_jobs(real_torque) -> dict[str, dict[str, str]]:
    """An independent reading of `qstat -f -x -t`: id -> state, queue, nodes, procs."""
    out = {}
    for job in ET.fromstring(real_torque.run("qstat", "-f", "-x", "-t").stdout).iter("Job"):
        res = job.find("Resource_List")
        out[job.findtext("Job_Id")] = {
            "state": job.findtext("job_state"), "queue": job.findtext("queue"),
            "nodes": res.findtext("nodes") if res is not None else None,
            "procs": res.findtext("procs") if res is not None else None}
    return out


def test_status_json_matches_what_was_submitted(real_torque, moto, tmp_path):
    ids = _submit_every_kind(real_torque)
    conf = tmp_path / "phorque.conf"
    conf.write_text(conf_text(tmp_path, real_torque, moto, cores=2))
    # The group as the daemon's start makes it: a group not created yet is a cloud status
    # cannot read (exit 1), and this test is about what it reads of Torque.
    for cloud in load_config(conf).clouds:
        make_provider(cloud).ensure_setup()
    status = _cli("phorque.cli.status", conf, "--json")
    cluster = status["cluster"]
    jobs = {j["id"]: j for j in cluster["jobs"]}
    raw = _raw_jobs(real_torque)
    assert {i: j["state"] for i, j in jobs.items()} == {i: r["state"] for i, r in raw.items()}
    assert jobs[ids["serial"]]["cores"] == 1
    assert jobs[ids["wide"]]["cores"] == 4
    assert jobs[ids["procs"]]["cores"] == 3
    assert jobs[ids["long"]]["queue"] == "long" and jobs[ids["long"]]["cores"] == 2
    assert jobs[ids["held"]]["state"] == "H"
    assert jobs[ids["deleted"]]["state"] == "C"
    base = ids["array"].split("[", 1)[0]
    assert sorted(i for i in jobs if i.startswith(base + "[")) == [f"{base}[{n}].vm" for n in (1, 2, 3)]
    queued = [i for i, r in raw.items() if r["state"] == "Q"]
    assert cluster["queued_jobs"] == len(queued)
    assert cluster["queued_cores"] == sum(jobs[i]["cores"] for i in queued)
    assert cluster["running_jobs"] == 2
    assert cluster["total_cores"] == 4 and cluster["free_cores"] == 0 and cluster["down_cores"] == 0
    nodes = {n["name"]: n for n in cluster["nodes"]}
    assert set(nodes) == {"torque-mom1", "torque-mom2"}
    assert {tuple(n["jobs"]) for n in nodes.values()} == {(ids["blocker1"],), (ids["blocker2"],)}


def test_evaluate_dry_run_launches_for_what_the_scheduler_can_start(real_torque, moto, tmp_path):
    ids = _submit_every_kind(real_torque)
    conf = tmp_path / "phorque.conf"
    conf.write_text(conf_text(tmp_path, real_torque, moto, cores=2, max_instances=20,
                              policy="OnDemand"))
    plan = _cli("phorque.cli.evaluate", conf, "--dry-run", "--json")
    assert plan["executed"] is False
    launches = [a for a in plan["actions"] if a["action"] == "launch"]
    # Queued and startable: serial (1), wide (2 nodes of 2), 3 array sub-jobs, the long job (2)
    # and the failing one (1); not the held job, not the deleted one, not the procs job.
    # 11 cores: two instances of 2 cores each would not hold them; the procs job's 3 would
    # make it 14 cores and 7 instances.
    assert [(a["cloud"], a["count"]) for a in launches] == [("local", 6)]
    assert "11 queued cores" in launches[0]["reason"]
    notes = " ".join(plan["notes"])
    assert ids["procs"] in notes and "Unknown node-attribute" in notes
    for job in ("held", "deleted"):
        assert ids[job] not in notes
