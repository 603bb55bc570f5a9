"""Nodes on a sandbox cluster: cloud nodes joining, offline marks, deleting busy nodes, and
Torque's error messages and exit statuses."""

from __future__ import annotations

import subprocess
import sys
import time
import xml.etree.ElementTree as ET

from phorque.adapters.torque import xmlparse


def node_state(sb, name: str) -> str:
    out = sb.run("pbsnodes", "-x", "--", name, check=True).stdout
    return ET.fromstring(out)[0].findtext("state")


def job_state(sb, job: str) -> str:
    out = sb.run("qstat", "-f", "-x", job, check=True).stdout.split("\n")[1]
    return ET.fromstring(xmlparse.sanitize(out))[0].findtext("job_state")


def sandbox_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phorque_testbed.sandbox.cli", *args],
                          capture_output=True, text=True, timeout=30)


def test_created_node_is_down_until_its_mom_reports(make_sandbox):
    sb = make_sandbox(nodes=0, boot_delay=10, speed=10)
    job = sb.qsub(runtime=10)
    assert job_state(sb, job) == "Q"
    sb.run("qmgr", "-c", 'create node cloud-1 np=2,properties="cloud,spot"', check=True)
    assert node_state(sb, "cloud-1") in ("down,offline,MOM-list-not-sent", "down")
    sb.wait_for(lambda: node_state(sb, "cloud-1") == "free", timeout=10, what="the boot")
    sb.wait_for(lambda: sb.records("S", job), timeout=10, what="the job to start there")
    assert "exec_host=cloud-1/0 " in sb.records("S", job)[0][3]


def test_offline_node_keeps_its_jobs_but_gets_no_new_ones(make_sandbox):
    sb = make_sandbox(nodes=1, np=2, speed=10)
    first = sb.qsub(runtime=10)
    sb.wait_for(lambda: sb.records("S", first), what="the first job")
    sb.run("pbsnodes", "-o", "-N", "draining", "--", "node01", check=True)
    assert node_state(sb, "node01") == "offline"
    second = sb.qsub(runtime=5)
    sb.wait_for(lambda: sb.records("E", first), timeout=10, what="the first job to end")
    assert job_state(sb, second) == "Q" and not sb.records("S", second)
    assert sb.run("pbsnodes", "-l").stdout == f"{'node01':<20} offline\n"
    assert sb.run("pbsnodes", "-l", "-n").stdout == f"{'node01':<20} {'offline':<26} draining\n"
    sb.run("pbsnodes", "-c", "--", "node01", check=True)
    sb.wait_for(lambda: sb.records("S", second), timeout=10, what="the second job")
    assert sb.run("pbsnodes", "-l").stdout == ""


def test_offline_and_busy_states_combine(make_sandbox):
    sb = make_sandbox(nodes=1, np=2)
    sb.qsub("-l", "nodes=1:ppn=2", runtime=600)
    sb.wait_for(lambda: node_state(sb, "node01") == "job-exclusive", what="a full node")
    sb.run("pbsnodes", "-o", "node01", check=True)
    assert node_state(sb, "node01") == "offline,job-exclusive"


def test_deleting_a_busy_node_requeues_rerunnable_jobs(make_sandbox):
    sb = make_sandbox(nodes=1, np=2, boot_delay=0)
    sb.run("qmgr", "-c", "create node extra np=2", check=True)
    sb.wait_for(lambda: node_state(sb, "extra") == "free", what="the extra node")
    sb.run("pbsnodes", "-o", "node01", check=True)
    rerun = sb.qsub(runtime=600)
    final = sb.qsub("-r", "n", runtime=600)
    sb.wait_for(lambda: sb.records("S", rerun) and sb.records("S", final), what="both jobs")
    sb.run("pbsnodes", "-c", "node01", check=True)
    result = sb.run("qmgr", "-c", "delete node extra")
    assert result.returncode == 0 and result.stderr == ""
    # Torque 6: the rerunnable job is requeued (R, no new Q) and starts again elsewhere.
    assert [r[1] for r in sb.records(job=rerun)][:3] == ["Q", "S", "R"]
    assert sb.records("R", rerun)[0][3] == ""
    sb.wait_for(lambda: len(sb.records("S", rerun)) == 2, what="the restart")
    restart = sb.records("S", rerun)[1][3]
    assert "start_count=2 " in restart and "exec_host=node01/" in restart
    # ... the other one is deleted: D, then E with 271.
    assert [r[1] for r in sb.records(job=final)] == ["Q", "S", "D", "E"]
    assert "Exit_status=271" in sb.records("E", final)[0][3]
    assert "extra" not in (sb.root / "server_priv/nodes").read_text()


def test_deleting_a_node_whose_mom_is_down_purges_its_jobs(make_sandbox):
    sb = make_sandbox(nodes=2, np=1, speed=10)
    job = sb.qsub(runtime=20)
    sb.wait_for(lambda: sb.records("S", job), what="the job")
    host = sb.records("S", job)[0][3].split("exec_host=")[1].split("/")[0]
    assert sandbox_cli("mom", str(sb.root), host, "down").returncode == 0
    assert node_state(sb, host) == "down,job-exclusive"
    result = sb.run("qmgr", "-c", f"delete node {host}")
    assert result.returncode == 2
    assert result.stderr == (
        f"qmgr obj={host} svr=default: The server was unable to communicate with the MOM to "
        "requeue or delete the job. The node has been deleted and all jobs on the node have "
        "been purged.\n")
    assert [r[1] for r in sb.records(job=job)] == ["Q", "S", "D"]
    assert sb.run("qstat", job).returncode == 153
    assert sb.run("pbsnodes", "-x", "--", host).returncode == 1


def test_a_job_on_a_dead_mom_ends_when_it_comes_back(make_sandbox):
    sb = make_sandbox(nodes=1, np=1, speed=20)
    job = sb.qsub(runtime=100)  # 5 s of real time: the mom goes away well before its end
    sb.wait_for(lambda: sb.records("S", job), what="the job")
    sandbox_cli("mom", str(sb.root), "node01", "down")
    assert not sb.records("E", job)
    started = int(dict(f.split("=", 1) for f in sb.records("S", job)[0][3].split() if "=" in f)["start"])
    # The job's time runs out while its mom is away (its start is a real timestamp).
    sb.wait_for(lambda: time.time() > started + 100 / 20 + 1, timeout=60, what="the job's time to run out")
    assert not sb.records("E", job) and job_state(sb, job) == "R"
    sandbox_cli("mom", str(sb.root), "node01", "up")
    sb.wait_for(lambda: sb.records("E", job), what="the end")
    assert node_state(sb, "node01") == "free"


def test_error_messages_and_exit_statuses(make_sandbox):
    sb = make_sandbox(keep_completed=60, speed=20)
    result = sb.run("qstat", "99")
    assert (result.returncode, result.stderr) == (153, "qstat: Unknown Job Id Error 99.srv.test\n")
    result = sb.run("qstat", "-f", "-x", "99.srv.test")
    assert result.returncode == 153 and result.stdout == ""
    result = sb.run("qdel", "99")
    assert (result.returncode, result.stderr) == (153, "qdel: nonexistent job id: 99\n")
    result = sb.run("pbsnodes", "-x", "--", "nope")
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", "pbsnodes: Unknown node  MSG=cannot locate specified node\n")
    result = sb.run("pbsnodes", "-o", "-N", "x", "--", "nope")
    assert (result.returncode, result.stderr) == (  # pbsnodes exits 0 when it fails
        0, "Error setting note attribute for nope - Unknown node \n")
    result = sb.run("qmgr", "-c", "delete node nope")
    assert (result.returncode, result.stderr) == (2, "qmgr obj=nope svr=default: Unknown node \n")
    result = sb.run("qmgr", "-c", "create node node01 np=4")
    assert (result.returncode, result.stderr) == (
        2, "qmgr obj=node01 svr=default: Node name already exists\n")
    # Naming no node or queue is no error: qmgr acts on its active ones, and -c has none
    # (what Torque 6.1.3's qmgr answers, exit status 0 included).
    for directive in ("print node", "list node", "set node np=3", "create node np=2", "delete node",
                      "print queue", "delete queue"):
        what = "Queues" if "queue" in directive else "Nodes"
        result = sb.run("qmgr", "-c", directive)
        assert (result.returncode, result.stdout, result.stderr) == (
            0, "", f"No Active {what}, nothing done.\n"), directive
    assert sb.run("qmgr", "-z", "-c", "print node").stderr == ""
    result = sb.run("qmgr", "-c", "frobnicate node x")
    assert result.returncode == 2 and result.stderr.startswith("qmgr: Illegal operation: frobnicate")
    job = sb.qsub(runtime=1)
    sb.wait_for(lambda: sb.records("E", job), what="the end")
    result = sb.run("qdel", job)
    assert (result.returncode, result.stderr) == (
        170, f"qdel: Request invalid for state of job MSG=invalid state for job - COMPLETE {job}\n")
    result = sb.run("qsub", "-l", "bogus=1", input="true\n")
    assert (result.returncode, result.stderr) == (
        189, "qsub: submit error (Unknown resource type  Resource_List.bogus)\n")
    result = sb.run("qsub", "-q", "nosuch", input="true\n")
    assert result.returncode == 172 and "Unknown queue" in result.stderr
    result = sb.run("qsub", "-I", input="true\n")
    assert result.returncode == 2 and "interactive" in result.stderr


def test_a_cluster_without_nodes(make_sandbox):
    sb = make_sandbox(nodes=0)
    result = sb.run("pbsnodes", "-x")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ("pbsnodes: Server has no node list MSG=node list is empty - check "
                             "'server_priv/nodes' file\n")


def test_qmgr_node_settings(sandbox):
    sb = sandbox
    sb.run("qmgr", "-c", "set node node01 properties = a", check=True)
    sb.run("qmgr", "-c", "set node node01 properties += b", check=True)
    sb.run("qmgr", "-c", "set node node01 np = 8", check=True)
    out = sb.run("qmgr", "-c", "print node node01", check=True).stdout
    assert "create node node01\n" in out
    assert "set node node01 np = 8\nset node node01 properties = a\n" \
           "set node node01 properties += b\n" in out
    node = ET.fromstring(sb.run("pbsnodes", "-x", "node01").stdout)[0]
    assert (node.findtext("np"), node.findtext("properties")) == ("8", "a,b")
    assert "node01 np=8 a b\n" in (sb.root / "server_priv/nodes").read_text()
