"""The sandbox prints and writes what Torque 6 does: compared with the real samples quoted in
the reference (torque-formats.md) for structure, keys, order and format."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from phorque.adapters.torque import xmlparse
from phorque.adapters.torque.resources import count_slots
from phorque_testbed.sandbox import render

# -- real samples ---------------------------------------------------------------------------
# A real Torque 6.1.3 (tests/fixtures/real-torque/qstat_f_x_t.out): element order of a running
# job (0.vm), of a queued one (1.vm) and of a sub-job held by its array's %limit (4[2].vm).
_CAPTURE = ET.parse(Path(__file__).resolve().parent.parent / "fixtures" / "real-torque"
                    / "qstat_f_x_t.out").getroot()
_REAL = {job.findtext("Job_Id"): [child.tag for child in job] for job in _CAPTURE}
# resources_used comes after Job_Owner once a mom status has told it (Torque 6.1.2's sample,
# aws-parallelcluster-node qstat_output.xml); the capture was taken before the first one.
REAL_RUNNING = [*_REAL["0.vm"][:3], "resources_used", *_REAL["0.vm"][3:]]
REAL_QUEUED = _REAL["1.vm"]
REAL_HELD_SUBJOB = _REAL["4[2].vm"]
# A sub-job the scheduler looked at: as the held one, without Hold_Types, with its comment.
REAL_SUBJOB = [e for e in REAL_HELD_SUBJOB if e != "Hold_Types"]
REAL_SUBJOB.insert(REAL_SUBJOB.index("etime"), "comment")
REAL_USED = ["cput", "energy_used", "mem", "vmem", "walltime"]

# aws-parallelcluster-node pbsnodes_output.xml and the one-line comment in sqswatcher.
REAL_NODE_FREE = ["name", "state", "power_state", "np", "ntype", "status", "mom_service_port",
                  "mom_manager_port"]
REAL_NODE_BUSY = ["name", "state", "power_state", "np", "ntype", "jobs", "status",
                  "mom_service_port", "mom_manager_port"]
REAL_NODE_DOWN = ["name", "state", "power_state", "np", "ntype", "mom_service_port",
                  "mom_manager_port"]
REAL_STATUS_KEYS = ["opsys", "uname", "sessions", "nsessions", "nusers", "idletime", "totmem",
                    "availmem", "physmem", "ncpus", "loadave", "gres", "netload", "state",
                    "varattr", "cpuclock", "macaddr", "version", "rectime", "jobs"]

# hpcugent/hnormalise ParserSpec.hs, line 6 of the reference: a real E record.
REAL_E = ("04/05/2017 13:06:53;E;45.mymaster.somecluster.somedomain;user=vsc40075 group=vsc40075 "
          "jobname=STDIN queue=short ctime=1491390300 qtime=1491390300 etime=1491390300 "
          "start=1491390307 owner=vsc40075@submitnode01.submitnode.somedomain "
          "exec_host=node2801.somecluster.somedomain/0-1+node2803.somecluster.somedomain/0-1 "
          "Resource_List.nodes=node2801.somecluster.somedomain:ppn=2+node2803.somecluster."
          "somedomain:ppn=2 Resource_List.vmem=1gb Resource_List.nodect=2 "
          "Resource_List.neednodes=node2801.somecluster.somedomain:ppn=2+node2803.somecluster."
          "somedomain:ppn=2 Resource_List.nice=0 Resource_List.walltime=01:00:00 session=15273 "
          "total_execution_slots=4 unique_node_count=2 end=1491390413 Exit_status=0 "
          "resources_used.cput=0 resources_used.energy_used=0 resources_used.mem=55048kb "
          "resources_used.vmem=92488kb resources_used.walltime=00:01:44")

# aws-parallelcluster-node jobwatcher/plugins/torque.py: a qstat -a row.
REAL_ALT_ROW = ("0.ip-172-31-11-1.ec2.i  centos      batch    job.sh             5343     5     30"
                "       --   01:00:00 R  00:04:58")

# The reference's key tokenizer for accounting texts.
KEY = re.compile(r"^(user|group|account|jobname|queue|ctime|qtime|etime|start_count|start|owner|"
                 r"exec_host|login_node|session|alt_id|total_execution_slots|unique_node_count|"
                 r"end|Exit_status|requestor|Resource_Request_2\.0|x|"
                 r"(Resource_List|resources_used)\.\w+)=")
LINE = re.compile(r"^(\d\d)/(\d\d)/(\d{4}) (\d\d):(\d\d):(\d\d);([QSEDAR]);([^;]+);(.*)$")


def keys(text: str) -> list[str]:
    found = []
    for token in text.split(" "):
        match = KEY.match(token)
        if match:
            found.append(match.group(1))
    return found


def plain_keys(text: str) -> list[str]:
    """Keys, with Resource_List.* collapsed (their order is free) and 6.x-only ones dropped."""
    out: list[str] = []
    for key in keys(text):
        if key == "start_count":
            continue
        key = "Resource_List" if key.startswith("Resource_List.") else key
        if not out or out[-1] != key:
            out.append(key)
    return out


def children(elem: ET.Element) -> list[str]:
    return [child.tag for child in elem]


@pytest.fixture
def busy(make_sandbox):
    """One node of 2 cores: a running job, a queued job and a queued array."""
    sb = make_sandbox(nodes=1, np=2, keep_completed=60, mom_status_interval=0.5)
    running = sb.qsub("-l", "nodes=1:ppn=2", runtime=600)
    queued = sb.qsub("-l", "nodes=1:ppn=1", runtime=5)
    array = sb.qsub("-t", "1-2", runtime=5)
    sb.wait_for(lambda: "Not Running" in sb.run("qstat", "-f", queued).stdout, what="a pass")
    sb.wait_for(lambda: "resources_used" in sb.run("qstat", "-f", running).stdout,
                what="the first mom status")
    return sb, running, queued, array


def test_qstat_xml_is_one_line_in_torque_order(busy):
    sb, running, queued, array = busy
    out = sb.run("qstat", "-f", "-x", "-t", check=True).stdout
    header, body, end = out.split("\n")
    assert header == '<?xml version="1.0"?>' and end == ""
    root = ET.fromstring(xmlparse.sanitize(body))
    jobs = {job.findtext("Job_Id"): job for job in root}
    assert list(jobs) == [running, queued, array.replace("[]", "[1]"), array.replace("[]", "[2]")]
    assert children(jobs[running]) == REAL_RUNNING
    assert children(jobs[running].find("resources_used")) == REAL_USED
    assert children(jobs[queued]) == REAL_QUEUED
    sub = jobs[array.replace("[]", "[1]")]
    assert children(sub) == REAL_SUBJOB
    assert sub.findtext("Variable_List").startswith("PBS_ARRAYID=1,")
    number = array.split("[")[0]
    assert sub.findtext("Job_Name") == "STDIN-1"
    assert sub.findtext("Output_Path").endswith(f"/STDIN.o{number}-1")
    assert jobs[queued].findtext("comment") == (
        "Not Running: Not enough of the right type of nodes are available")
    assert re.fullmatch(r"Job started on \w{3} \w{3} \d\d at \d\d:\d\d",
                        jobs[running].findtext("comment"))
    assert jobs[running].findtext("exec_host") == "node01/0-1"
    remaining = int(jobs[running].findtext("Walltime/Remaining"))
    assert 3500 < remaining <= 3600


def test_qstat_without_t_shows_the_array_template(busy):
    sb, _running, _queued, array = busy
    root = ET.fromstring(xmlparse.sanitize(sb.run("qstat", "-x").stdout.split("\n")[1]))
    ids = [job.findtext("Job_Id") for job in root]
    assert array in ids and not any("[1]" in i for i in ids)
    template = root[ids.index(array)]
    assert template.findtext("job_state") == "Q"
    assert template.findtext("job_array_request") == "1-2"


def test_qstat_xml_is_escaped_like_a_real_6_1_3(make_sandbox):
    sb = make_sandbox()
    sb.qsub("-v", "A=x&y<z>'q\"", runtime=60)
    raw = sb.run("qstat", "-f", "-x").stdout
    real = (Path(__file__).resolve().parent.parent / "fixtures" / "real-torque"
            / "qstat_f_x_t.out").read_text()
    for piece in (",A=x&amp;y&lt;z&gt;\\&apos;q\\&quot;,",  # qsub escaped the quotes in -v
                  "<submit_args>-v A=x&amp;y&lt;z&gt;&apos;q&quot;</submit_args>"):
        assert piece in real and piece in raw
    job = ET.fromstring(raw.split("\n")[1])[0]  # well-formed XML
    assert job.findtext("submit_args") == "-v A=x&y<z>'q\""
    assert xmlparse.jobs_from_bytes(raw.encode())[0].state == "R"


def test_empty_qstat_outputs(sandbox):
    assert sandbox.run("qstat", "-f", "-x", "-t").stdout == '<?xml version="1.0"?>\n<Data></Data>\n'
    assert sandbox.run("qstat", "-a").stdout == ""
    assert sandbox.run("qstat").stdout == ""


def test_pbsnodes_xml_matches_real_node_elements(busy, make_sandbox):
    sb, running, _queued, _array = busy
    out = sb.run("pbsnodes", "-x", check=True).stdout
    assert out.count("\n") == 1 and out.startswith("<Data><Node><name>node01</name>")
    node = ET.fromstring(out)[0]
    assert children(node) == REAL_NODE_BUSY
    assert node.findtext("state") == "job-exclusive"
    assert node.findtext("jobs") == f"0-1/{running}"
    status = dict(item.split("=", 1) for item in node.findtext("status").split(","))
    assert list(status) == REAL_STATUS_KEYS
    assert status["jobs"] == running and status["ncpus"] == "2"

    other = make_sandbox(nodes=1, np=2, name="other")
    free = ET.fromstring(other.run("pbsnodes", "-x").stdout)[0]
    assert children(free) == REAL_NODE_FREE and free.findtext("state") == "free"
    other.run("qmgr", "-c", "create node cloud-1 np=2", check=True)
    other.run("pbsnodes", "-o", "-N", "MasterServer", "--", "cloud-1", check=True)
    down = ET.fromstring(other.run("pbsnodes", "-x", "--", "cloud-1").stdout)[0]
    other.wait_for(lambda: "MOM-list" not in other.run("pbsnodes", "-x", "--", "cloud-1").stdout,
                   what="the node list to reach the moms")
    other.run("pbsnodes", "-o", "-N", "MasterServer", "--", "cloud-1", check=True)
    down = ET.fromstring(other.run("pbsnodes", "-x", "--", "cloud-1").stdout)[0]
    assert children(down) == [*REAL_NODE_DOWN[:5], "note", *REAL_NODE_DOWN[5:]]
    assert down.findtext("state") == "down,offline"


def test_pbsnodes_a_layout(busy):
    sb, running, _queued, _array = busy
    out = sb.run("pbsnodes", "-a").stdout
    lines = out.split("\n")
    assert lines[0] == "node01" and lines[-2:] == ["", ""]
    assert all(re.fullmatch(r"     \w+ = .*", line) for line in lines[1:-2])
    assert "     state = job-exclusive" in lines
    assert "     power_state = Running" in lines
    assert f"     jobs = 0-1/{running}" in lines
    assert "     mom_service_port = 15002" in lines


def test_qstat_alt_table_matches_real_columns(busy):
    sb, running, _queued, _array = busy
    out = sb.run("qstat", "-a").stdout.split("\n")
    assert out[0] == "" and out[1] == "srv.test: "
    assert out[3].startswith("Job ID                  Username    Queue    Jobname          SessID")
    assert out[4] == ("----------------------- ----------- -------- ---------------- ------ ----- "
                      "------ --------- --------- - ---------")
    row = next(line for line in out if line.startswith(running))
    assert len(row) == len(REAL_ALT_ROW)
    assert row[23:].split()[2:] == ["STDIN", row[23:].split()[3], "1", "2", "--", "01:00:00", "R",
                                    row.split()[-1]]
    attrs = [("Job_Name", None, "job.sh"), ("Job_Owner", None, "centos@ip-172-31-11-1"),
             ("job_state", None, "R"), ("queue", None, "batch"),
             ("Resource_List", "nodes", "5:ppn=6"), ("Resource_List", "nodect", "5"),
             ("Resource_List", "walltime", "01:00:00"), ("session_id", None, "5343"),
             ("Walltime", "Remaining", str(3600 - 298))]
    text = render.jobs_alt("srv", [("0.ip-172-31-11-1.ec2.internal", attrs)])
    assert text.split("\n")[5] == REAL_ALT_ROW


def test_qstat_full_text(busy):
    sb, running, _queued, _array = busy
    out = sb.run("qstat", "-f", running).stdout
    lines = out.split("\n")
    assert lines[0] == f"Job Id: {running}"
    assert "    job_state = R" in lines
    assert "    Resource_List.nodes = 1:ppn=2" in lines
    ctime = next(line for line in lines if line.startswith("    ctime = "))
    assert re.fullmatch(r"    ctime = \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}", ctime)
    assert all(line.startswith(("    ", "\t")) for line in lines[1:-2] if line)
    assert lines[-2:] == ["", ""]


def test_accounting_records_follow_the_grammar_and_key_order(make_sandbox):
    sb = make_sandbox(speed=20)
    job = sb.qsub("-l", "nodes=2:ppn=2,vmem=1gb", runtime=20)
    sb.wait_for(lambda: sb.records("E", job), what="the E record")
    lines = sb.accounting()
    for line in lines:
        match = LINE.match(line)
        assert match, line
        month, day, year = match.group(1), match.group(2), match.group(3)
    files = sorted(p.name for p in sb.root.joinpath("server_priv/accounting").iterdir())
    assert files == [f"{year}{month}{day}"]
    q, s, e = (sb.records(kind, job)[0][3] for kind in "QSE")
    assert q == "queue=batch"
    assert s.endswith(" ") and not e.endswith(" ")  # acct_job's trailing space; E ends in usage
    assert e.startswith(s)
    real_text = REAL_E.split(";", 3)[3]
    assert plain_keys(e) == plain_keys(real_text)
    assert keys(s)[:9] == ["user", "group", "jobname", "queue", "ctime", "qtime", "etime",
                           "start_count", "start"]
    fields = dict(token.split("=", 1) for token in e.split(" "))
    assert fields["exec_host"] == "node01/0-1+node02/0-1"
    assert (int(fields["total_execution_slots"]), int(fields["unique_node_count"])) == \
        count_slots(fields["exec_host"]) == (4, 2)
    assert fields["Resource_List.vmem"] == "1gb" and fields["Resource_List.nodect"] == "2"
    assert fields["resources_used.walltime"] == "00:00:20"
    assert fields["Exit_status"] == "0"
    assert abs(int(fields["end"]) - int(fields["start"]) - 1) <= 1  # 20 s at speed 20


def test_job_files_are_created_and_purged(make_sandbox):
    sb = make_sandbox(speed=10, keep_completed=10)
    job = sb.qsub(runtime=5)
    array = sb.qsub("-t", "0-1", runtime=5)
    number = array.split("[")[0]
    files = sb.job_files()
    # named as a real 6.1.3 names them (jobs_dir.txt of the captures), beside folders 0-9
    assert {f"{job}.JB", f"{job}.SC", f"{number}.srv.test.TA", f"{number}.srv.test.SC",
            f"{number}-0.srv.test.JB", f"{number}-1.srv.test.JB"} <= files
    assert {str(d) for d in range(10)} <= files
    assert (sb.root / "server_priv/arrays" / f"{number}.srv.test.AR").is_file()
    assert f"{number}-0.srv.test.SC" not in files  # sub-jobs share the template's script
    image = ET.parse(sb.root / "server_priv/jobs" / f"{job}.JB").getroot()  # saveJobToXML's
    assert image.tag == "job" and image.findtext("jobid") == job
    numbers = {"Q": "1", "R": "4", "C": "6"}  # JOB_STATE_* (it may have started already)
    assert image.findtext("state") == numbers[image.findtext("attributes/job_state")]
    assert image.findtext("attributes/Resource_List/walltime") == "01:00:00"
    assert image.find("attributes/Job_Name").get("flags") == "1"
    template = ET.parse(sb.root / "server_priv/jobs" / f"{number}.srv.test.TA").getroot()
    assert template.findtext("attributes/job_array_request") == "0-1"
    sb.wait_for(lambda: sb.run("qstat", job).stdout.split("\n")[2].split()[4] == "C",
                what="completion")
    assert f"{job}.JB" in sb.job_files()  # kept while completed (keep_completed)
    sb.wait_for(lambda: sb.job_files() == {str(d) for d in range(10)}, timeout=10,
                what="the purge")
    assert not (sb.root / "server_priv/arrays" / f"{number}.srv.test.AR").exists()
    assert sb.run("qstat", job).returncode == 153


def test_speed_scales_durations_not_timestamps(make_sandbox):
    sb = make_sandbox(speed=50)
    start = time.time()
    job = sb.qsub(runtime=100)
    sb.wait_for(lambda: sb.records("E", job), timeout=90, what="the end")
    fields = dict(t.split("=", 1) for t in sb.records("E", job)[0][3].split(" "))
    assert fields["resources_used.walltime"] == "00:01:40"
    # The job's 100 s ran in 2 s of real time, and its timestamps are real ones.
    assert int(fields["end"]) - int(fields["start"]) < 100
    assert abs(int(fields["start"]) - start) < 5  # real wall-clock time


def test_script_file_directives_and_the_command_line(sandbox):
    (sandbox.root / "job.sh").write_text(
        "#!/bin/sh\n#PBS -N scripted\n#PBS -l nodes=1:ppn=2\n#PBS -l walltime=5:00\n"
        "#SANDBOX runtime=300\nhostname\n")
    job = sandbox.run("qsub", "-l", "walltime=10:00", "job.sh", check=True).stdout.strip()
    root = ET.fromstring(xmlparse.sanitize(sandbox.run("qstat", "-f", "-x", job).stdout.split("\n")[1]))
    attrs = root[0]
    assert attrs.findtext("Job_Name") == "scripted"  # from the script
    resources = {child.tag: child.text for child in attrs.find("Resource_List")}
    assert resources == {"walltime": "00:10:00", "nodes": "1:ppn=2", "nodect": "1",
                         "neednodes": "1:ppn=2"}  # -l wins
    assert attrs.findtext("submit_args") == "-l walltime=10:00 job.sh"
    assert attrs.findtext("init_work_dir") == str(sandbox.root)
    assert (sandbox.root / "server_priv/jobs" / f"{job}.SC").read_text().startswith("#!/bin/sh\n#PBS")
    missing = sandbox.run("qsub", "nosuch.sh")
    assert missing.returncode == 1 and missing.stderr.startswith("qsub: script file 'nosuch.sh'")
