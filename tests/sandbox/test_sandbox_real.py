"""The sandbox does what the real Torque 6.1.3 does, compared with the captures in
``tests/fixtures/real-torque/`` (see the README there for how each was made)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from phorque.adapters.torque import xmlparse

REAL = Path(__file__).resolve().parent.parent / "fixtures" / "real-torque"


def real(name: str) -> str:
    return (REAL / name).read_text()


def node_xml(sb, name: str) -> str:
    return sb.run("pbsnodes", "-x", "--", name, check=True).stdout


def node_state(sb, name: str) -> str:
    return ET.fromstring(node_xml(sb, name))[0].findtext("state")


def jobs_xml(sb, *args: str) -> ET.Element:
    out = sb.run("qstat", "-f", "-x", *args, check=True).stdout
    return ET.fromstring(xmlparse.sanitize(out.split("\n", 1)[1]))


def job_elem(sb, job: str) -> ET.Element:
    return jobs_xml(sb, job)[0]


# -- nodes ---------------------------------------------------------------------------------------

def test_a_new_node_is_mom_list_not_sent_for_a_while_then_down(make_sandbox):
    sb = make_sandbox(nodes=1, np=2, mom_list_delay=600, boot_delay=0,
                      resolvable=("cloud-new.example",))
    assert sb.run("qmgr", "-c", "create node cloud-new.example np=4").returncode == 0
    assert node_xml(sb, "cloud-new.example") == real("pbsnodes_x_new_node.out")
    # -o and -c fail as on the real server: exit 0, the error on stderr, nothing changed
    result = sb.run("pbsnodes", "-o", "-N", "phorque: x", "--", "cloud-new.example")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "", real("pbsnodes_o_new_node.err"))
    result = sb.run("pbsnodes", "-c", "--", "cloud-new.example")
    assert result.returncode == 0 and "hasn't been sent out" in result.stderr
    assert "<note>" not in node_xml(sb, "cloud-new.example")
    # a note alone is taken
    result = sb.run("pbsnodes", "-N", "phorque: joined", "--", "cloud-new.example")
    assert (result.returncode, result.stderr) == (0, "")
    assert "<note>phorque: joined</note>" in node_xml(sb, "cloud-new.example")
    assert node_state(sb, "cloud-new.example") == "down,offline,MOM-list-not-sent"


def test_the_window_ends_in_down_then_the_mom_reports(make_sandbox):
    sb = make_sandbox(nodes=0, mom_list_delay=1, boot_delay=600)
    sb.run("qmgr", "-c", "create node cloud-1 np=2", check=True)
    assert node_state(sb, "cloud-1") == "down,offline,MOM-list-not-sent"
    sb.wait_for(lambda: node_state(sb, "cloud-1") == "down", timeout=30, what="the window's end")
    sb.run("pbsnodes", "-o", "-N", "phorque: drain", "--", "cloud-1", check=True)
    assert node_state(sb, "cloud-1") == "down,offline"
    other = make_sandbox(nodes=0, name="fast", mom_list_delay=1, boot_delay=0)
    other.run("qmgr", "-c", "create node cloud-2 np=2", check=True)
    other.wait_for(lambda: node_state(other, "cloud-2") == "free", timeout=30,
                   what="the mom, once the node list reached it")


def test_failing_pbsnodes_changes_exit_0_as_real(sandbox):
    for flags, capture in ((["-o", "-N", "x"], "pbsnodes_o_unknown"),
                           (["-c"], "pbsnodes_c_unknown"), (["-N", "x"], "pbsnodes_N_unknown")):
        result = sandbox.run("pbsnodes", *flags, "--", "no-such-node")
        assert (result.returncode, result.stdout, result.stderr) == (
            int(real(f"{capture}.rc")), real(f"{capture}.out"), real(f"{capture}.err")), flags


def test_an_unresolvable_node_name_is_refused_as_real(make_sandbox):
    sb = make_sandbox(nodes=1)
    result = sb.run("qmgr", "-c", "create node no-such-host.invalid np=4")
    assert (result.returncode, result.stdout, result.stderr) == (
        int(real("qmgr_create_unresolvable.rc")), real("qmgr_create_unresolvable.out"),
        real("qmgr_create_unresolvable.err"))
    assert "no-such-host" not in sb.run("pbsnodes", "-a").stdout
    # names the machine resolves, and names in the sandbox's hosts file, are taken
    sb.run("qmgr", "-c", "create node localhost np=1", check=True)
    (sb.root / "sandbox" / "hosts").write_text("10.0.0.7 node-7.site node-7  # a comment\n"
                                               "*.zone.test\n")
    for name in ("node-7.site", "node-7", "a.zone.test"):
        sb.run("qmgr", "-c", f"create node {name} np=1", check=True)
    assert sb.run("qmgr", "-c", "create node b.zone.other np=1").returncode == 2


# -- jobs: the capture's workload, submitted the same way ------------------------------------

def _capture() -> dict[str, ET.Element]:
    root = ET.fromstring(real("qstat_f_x_t.out").split("\n", 1)[1])
    return {job.findtext("Job_Id"): job for job in root}


def _tags(job: ET.Element) -> list[str]:
    return [child.tag for child in job]


def _resources(job: ET.Element) -> list[tuple[str, str]]:
    return [(child.tag, child.text) for child in job.find("Resource_List")]


def _captures_workload(make_sandbox):
    """What torquebed/capture.py submits, on two nodes of np=2 (the real moms)."""
    sb = make_sandbox(nodes=2, np=2, keep_completed=300, transit=False,
                      mom_status_interval=3600, sched_cycle=0.5, speed=1)
    for directive in ("create queue long", "set queue long queue_type = execution",
                      "set queue long started = true", "set queue long enabled = true"):
        sb.run("qmgr", "-c", directive, check=True)
    ids = {
        "serial": sb.qsub("-N", "serial", runtime=600),
        "nodes2x2": sb.qsub("-l", "nodes=2:ppn=2", runtime=600),
        "procs3": sb.qsub("-l", "procs=3", runtime=600),
        "ncpus2": sb.qsub("-l", "ncpus=2", runtime=600),
        "array": sb.qsub("-t", "0-3%2", runtime=600),
        "held": sb.qsub("-h", runtime=600),
        "long": sb.qsub("-q", "long", "-l", "walltime=2:00:00:00", runtime=600),
        "mem": sb.qsub("-l", "mem=4gb,nodes=1:ppn=1", runtime=600),
        "env": sb.qsub("-v", "A=x&y<z>'q\"", runtime=600),
        "failing": sb.qsub("-N", "failing", runtime=600, exit_code=3),
    }
    too_wide = sb.run("qsub", "-l", "nodes=5:ppn=2", input="sleep 1\n")
    return sb, ids, too_wide


def test_the_captures_workload_reads_as_on_the_real_server(make_sandbox):
    sb, ids, too_wide = _captures_workload(make_sandbox)
    assert (too_wide.returncode, too_wide.stdout, too_wide.stderr) == (
        int(real("qsub_too_wide.rc")), real("qsub_too_wide.out"), real("qsub_too_wide.err"))
    sb.wait_for(lambda: "Unknown node-attribute" in (
        job_elem(sb, ids["procs3"]).findtext("comment") or ""), what="the scheduler's comment")
    mine = {job.findtext("Job_Id"): job for job in jobs_xml(sb, "-t")}
    theirs = _capture()
    real_ids = dict(line.split() for line in real("job_ids.txt").splitlines())
    for kind, job_id in ids.items():
        if kind == "array":
            pairs = [(job_id.replace("[]", f"[{i}]"), real_ids[kind].replace("[]", f"[{i}]"))
                     for i in range(4)]
        else:
            pairs = [(job_id, real_ids[kind])]
        for my_id, real_id in pairs:
            job, want = mine[my_id], theirs[real_id]
            if kind == "failing":  # it ran on the real server by the time of the capture
                continue
            assert _tags(job) == _tags(want), my_id
            for tag in ("job_state", "Hold_Types", "substate", "comment", "queue"):
                mine_text, want_text = job.findtext(tag), want.findtext(tag)
                if tag == "comment" and (want_text or "").startswith("Job started on"):
                    mine_text, want_text = mine_text[:14], want_text[:14]  # then a date
                assert mine_text == want_text, (my_id, tag)
            assert _resources(job) == _resources(want), my_id
            if job.findtext("hashname"):
                assert job.findtext("hashname") == my_id.replace("[", "-").replace("]", "")
    ranks = [int(mine[i].findtext("queue_rank")) for i in sorted(mine, key=lambda i: int(
        mine[i].findtext("queue_rank")))]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    # the job files, named as pbs_server names them
    listing = sorted(str(p.relative_to(sb.root / "server_priv")) for p in
                     (sb.root / "server_priv" / "jobs").rglob("*"))
    shape = {line.replace(".vm.", ".srv.test.") for line in real("jobs_dir.txt").splitlines()
             if not line.startswith(("jobs/10", "jobs/9."))}
    assert shape <= set(listing)
    assert (sb.root / "server_priv" / "arrays" / f"{ids['array'].split('[')[0]}.srv.test.AR").is_file()


def test_queued_jobs_are_saved_again_at_every_scheduling_cycle(make_sandbox):
    sb = make_sandbox(nodes=1, np=1, sched_cycle=0.3)
    sb.qsub(runtime=600)
    procs = sb.qsub("-l", "procs=3", runtime=10)
    path = sb.root / "server_priv" / "jobs" / f"{procs}.JB"
    first = path.stat().st_ino  # each save links a new copy (.JC) into place
    sb.wait_for(lambda: path.stat().st_ino != first, what="a re-save")
    second = path.stat().st_ino
    sb.wait_for(lambda: path.stat().st_ino != second, what="another re-save")
    assert ET.parse(path).getroot().tag == "job"


def test_a_new_job_file_is_created_empty_then_written_through_jc(make_sandbox, tmp_path):
    # watch the jobs folder with inotify-free polling is racy; read pbs_server's steps instead
    from phorque_testbed.sandbox import jobfiles
    from phorque_testbed.sandbox.layout import Layout

    layout = Layout(str(tmp_path / "files"))
    Path(layout.jobs).mkdir(parents=True)
    seen: list[tuple[str, int]] = []
    real_link = jobfiles.os.link

    def spy(src, dst, *args, **kwargs):
        seen.append((Path(dst).name, Path(dst).stat().st_size if Path(dst).exists() else -1))
        seen.append((Path(src).name, Path(src).stat().st_size))
        return real_link(src, dst, *args, **kwargs)

    jobfiles.os.link = spy
    try:
        jobfiles.save(layout, {"id": "3.srv", "kind": "job"}, "<job/>\n", new=True)
    finally:
        jobfiles.os.link = real_link
    assert seen == [("3.srv.JB", -1), ("3.srv.JC", 7)]
    assert (Path(layout.jobs) / "3.srv.JB").read_text() == "<job/>\n"
    assert not (Path(layout.jobs) / "3.srv.JC").exists()


# -- the life of jobs ----------------------------------------------------------------------------

def _stamp(record: list[str]) -> int:
    import time as _time
    return int(_time.mktime(_time.strptime(record[0], "%m/%d/%Y %H:%M:%S")))


def test_the_e_record_comes_with_the_moms_obit(make_sandbox):
    sb = make_sandbox(nodes=1, np=2, obit_delay=3, keep_completed=300)
    done = sb.qsub(runtime=1)
    killed = sb.qsub(runtime=600)
    sb.wait_for(lambda: sb.records("S", killed), what="both to start")
    sb.run("qdel", killed, check=True)
    assert sb.records("D", killed) and not sb.records("E", killed)
    assert job_elem(sb, killed).findtext("job_state") == "R"  # until the mom's obit
    sb.wait_for(lambda: sb.records("E", killed) and sb.records("E", done), timeout=30,
                what="the obits")
    end = dict(t.split("=", 1) for t in sb.records("E", done)[0][3].split(" "))
    assert int(end["end"]) - int(end["start"]) >= 3  # ran 1 s, heard of 3 s later
    assert end["resources_used.walltime"] == "00:00:01"
    assert _stamp(sb.records("E", killed)[0]) - _stamp(sb.records("D", killed)[0]) >= 2
    assert "Exit_status=271" in sb.records("E", killed)[0][3]
    # completed jobs stay in qstat for keep_completed
    assert job_elem(sb, done).findtext("job_state") == "C"


def test_resources_used_comes_with_the_moms_status(make_sandbox):
    sb = make_sandbox(nodes=1, np=2, mom_status_interval=2)
    job = sb.qsub(runtime=600)
    sb.wait_for(lambda: job_elem(sb, job).findtext("job_state") == "R", what="the start")
    assert job_elem(sb, job).find("resources_used") is None  # no mom status yet
    sb.wait_for(lambda: job_elem(sb, job).find("resources_used") is not None, timeout=30,
                what="the first mom status")
    used = job_elem(sb, job).find("resources_used")
    assert [c.tag for c in used] == ["cput", "energy_used", "mem", "vmem", "walltime"]
    first = used.findtext("walltime")
    assert first in ("00:00:02", "00:00:04")  # as of a status, not of now
    sb.wait_for(lambda: job_elem(sb, job).findtext("resources_used/walltime") != first,
                timeout=30, what="the next status")


def test_limited_array_holds_then_releases_its_sub_jobs(make_sandbox):
    sb = make_sandbox(nodes=1, np=4)
    array = sb.qsub("-t", "0-3%2", runtime=2)
    number = array.split("[")[0]
    states = {j.findtext("Job_Id"): (j.findtext("job_state"), j.findtext("Hold_Types"))
              for j in jobs_xml(sb, "-t")}
    assert states[f"{number}[2].srv.test"] == ("H", "l")
    assert states[f"{number}[3].srv.test"] == ("H", "l")
    assert {states[f"{number}[{i}].srv.test"][0] for i in (0, 1)} <= {"Q", "R"}
    sb.wait_for(lambda: len(sb.records("E")) == 4, timeout=60, what="every sub-job, two at a time")
    starts = sorted(_stamp(r) for r in sb.records("S"))
    assert starts[2] >= min(_stamp(r) for r in sb.records("E"))  # the third after an end


def test_held_jobs_and_a_second_queue(make_sandbox):
    sb = make_sandbox(nodes=1, np=2)
    held = sb.qsub("-h", runtime=5)
    job = job_elem(sb, held)
    assert (job.findtext("job_state"), job.findtext("Hold_Types"), job.find("etime")) == (
        "H", "u", None)
    assert sb.run("qsub", "-q", "long", input="true\n").returncode == 15020 & 0xFF
    for directive in ("create queue long", "set queue long queue_type = execution",
                      "set queue long started = true", "set queue long enabled = true"):
        sb.run("qmgr", "-c", directive, check=True)
    long_job = sb.qsub("-q", "long", "-l", "walltime=2:00:00:00", runtime=1)
    job = job_elem(sb, long_job)
    assert job.findtext("queue") == "long"
    assert _resources(job) == [("walltime", "48:00:00")]  # no defaults in that queue
    sb.wait_for(lambda: sb.records("E", long_job), timeout=30, what="the long job (one slot)")
    assert not sb.records("S", held)
    assert "create queue long" in sb.run("qmgr", "-c", "print server").stdout


def test_too_wide_jobs_are_refused_or_deleted_as_by_pbs_server_and_pbs_sched(make_sandbox):
    sb = make_sandbox(nodes=1, np=2, transit=False, delete_infeasible=1)
    result = sb.run("qsub", "-l", "nodes=1:ppn=4", input="true\n")
    assert (result.returncode, result.stderr) == (190, real("qsub_too_wide.err"))
    assert sb.run("qsub", "-l", "ncpus=8", input="true\n").returncode == 0  # not checked
    sb.run("qmgr", "-c", "set queue batch is_transit = true", check=True)
    wide = sb.qsub("-l", "nodes=1:ppn=4", runtime=5)  # taken now, then deleted by pbs_sched
    sb.wait_for(lambda: sb.records("D", wide), what="pbs_sched's deletion")
    assert sb.records("D", wide)[0][3] == "requestor=root@localhost"
    assert not sb.records("S", wide)
    kept = make_sandbox(nodes=1, np=2, name="kept")  # the kits: delete_infeasible off
    waiting_job = kept.qsub("-l", "nodes=1:ppn=4", runtime=5)
    kept.wait_for(lambda: job_elem(kept, waiting_job).findtext("comment"), what="a cycle")
    assert job_elem(kept, waiting_job).findtext("job_state") == "Q"
