"""Hostile names end to end: job names, variables, node notes and cloud DNS names holding shell
metacharacters, quotes, newlines, XML and bad bytes never run as code, never reach qmgr, and never
break the output of phorque-status or phorque-evaluate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from phorque.adapters.torque.commands import Torque, UnsafeName
from tests.cloud.cloudkit import PHANTOM_ID, PHANTOM_SECRET
from tests.fake_torque import FakeTorque
from tests.integration.kit import conf_text, wait_until


def shell_tricks(mark: Path) -> list[str]:
    """Job names qsub accepts (printable, no white space) that a shell would obey."""
    return [f"a;touch${{IFS}}{mark}", f"$(touch${{IFS}}{mark})", f"`touch${{IFS}}{mark}`",
            f"|touch${{IFS}}{mark}", f"&&touch${{IFS}}{mark}", "'\"'\"", "--help", "-c",
            "</Job_Name></Job></Data>", "<![CDATA[x]]>", "&amp;&lt;&#0;&lol;", "%(x)s{0}$HOME",
            "caf\u00e9\u4e2d\u00bd", "x" * 200]


def run(tmp_path: Path, module: str, *args: str, env: dict[str, str] | None = None,
        encoding: str = "utf-8") -> subprocess.CompletedProcess:
    """A Phorque command, in ``tmp_path`` (where a relative mark would land)."""
    return subprocess.run([sys.executable, "-m", module, "-c", str(tmp_path / "phorque.conf"), *args],
                          capture_output=True, text=True, encoding=encoding, timeout=120, cwd=tmp_path,
                          env={**os.environ, **(env or {})})


def assert_clean_table(text: str) -> None:
    """One row per line, and nothing a terminal would act on."""
    for line in text.splitlines():
        assert all(ch.isprintable() for ch in line), f"unprintable character in {line!r}"


def assert_nothing_ran(tmp_path: Path, mark: Path) -> None:
    assert not mark.exists()
    assert not any(p.name.endswith("mark") for p in tmp_path.rglob("*"))


def test_hostile_job_names_variables_and_notes_through_the_sandbox(make_sandbox, moto, tmp_path):
    mark = tmp_path / "mark"
    sandbox = make_sandbox(nodes=1, np=2)
    submitted = {}
    for name in shell_tricks(mark):
        job = sandbox.qsub("-N", name, "-v", f"X=$(touch {mark});<Data>&amp;\x0e,Y='\"`id`",
                           "-l", "nodes=1:ppn=2", runtime=3600)
        submitted[job] = name
    note = f"maintenance $(touch {mark})\n</note></Node></Data>\x1b[2J\x07 'quoted' \"double\""
    sandbox.run("pbsnodes", "-N", note, "node01", check=True)
    (tmp_path / "phorque.conf").write_text(conf_text(tmp_path, sandbox, moto))

    as_json = run(tmp_path, "phorque.cli.status", "--json")
    assert as_json.returncode == 1, as_json.stderr  # a cloud group it cannot read: exit 1
    cluster = json.loads(as_json.stdout)["cluster"]
    names = {job["id"]: job["name"] for job in cluster["jobs"]}
    assert set(names) == set(submitted)
    for job_id, name in submitted.items():
        # pbs_server 6.1.3 escapes what qstat -x prints: every character comes back as it was.
        assert names[job_id] == name
    (node,) = cluster["nodes"]
    assert node["note"].startswith("maintenance $(touch") and "\x1b" not in node["note"]

    table = run(tmp_path, "phorque.cli.status")
    assert table.returncode == 1, table.stderr  # a cloud group it cannot read: exit 1
    assert_clean_table(table.stdout)
    assert sum(1 for line in table.stdout.splitlines() if line.split(" ")[0] in submitted) >= len(submitted) - 1

    for args in (("--dry-run",), ("--dry-run", "--json")):
        plan = run(tmp_path, "phorque.cli.evaluate", *args)
        assert plan.returncode == 0, plan.stderr
        assert_clean_table(plan.stdout)
    assert json.loads(plan.stdout)["cluster"]["queued_jobs"] == len(submitted) - 1
    assert_nothing_ran(tmp_path, mark)
    assert_nothing_ran(sandbox.root, mark)


PHANTOM_CONF = """
[Phorque]
cluster_directory = {torque}
torque_home = {torque}
state_dir = {state}
trigger_address =
command_timeout_secs = 20

[Policy]
name = OnDemand

[Cloud-hotel]
cloud_type = nimbus
autoscale_uri = {autoscale}
cloud_uri = {ec2}
access_id = {access}
secret_key = {secret}
launch_config_name = hotellc@{site}
autoscale_group_name = hotelasg
image_id = debian-6.0.5.gz
instance_type = m1.large
instance_cores = 2
max_instances = 2
connect_timeout_secs = 2
read_timeout_secs = 10
"""


def test_hostile_dns_names_from_a_cloud_never_reach_qmgr(phantom, tmp_path):
    # The Phantom double names its VMs vm-N.<site>.phantom.test: a hostile site makes hostile
    # DNS names, which Phorque would make Torque node names.
    mark = tmp_path / "mark"
    site = f"s;touch${{IFS}}{mark}'\"|`id`&\u202e"
    fake = FakeTorque(tmp_path / "torque")
    job = ("<Data><Job><Job_Id>1.srv</Job_Id><job_state>Q</job_state><queue>batch</queue>"
           "<Resource_List><nodes>2:ppn=2</nodes><walltime>01:00:00</walltime></Resource_List></Job></Data>")
    fake.script("qstat", stdout=job)
    fake.script("pbsnodes", stdout="<Data></Data>")
    (tmp_path / "phorque.conf").write_text(PHANTOM_CONF.format(
        torque=fake.root, state=tmp_path / "state", autoscale=phantom.autoscale.url, ec2=phantom.ec2.url,
        access=PHANTOM_ID, secret=PHANTOM_SECRET, site=site))

    def evaluate() -> dict:
        done = run(tmp_path, "phorque.cli.evaluate", "--local", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert any(a["action"] == "launch" for a in evaluate()["actions"])
    joins = wait_until(lambda: [a for a in evaluate()["actions"] if a["action"] == "join"], 30,
                       "running instances to be joined")
    for action in joins:
        assert "touch" in action["node"] and action["outcome"].startswith("failed")
        assert "not a plain host name" in action["outcome"]
    qmgr = [argv for argv in fake.calls() if Path(argv[0]).name == "qmgr"]
    assert qmgr == []  # refused before any command ran
    assert all("touch" not in arg for argv in fake.calls() for arg in argv)

    table = run(tmp_path, "phorque.cli.status")
    assert table.returncode == 0, table.stderr
    assert_clean_table(table.stdout)
    assert re.search(r"vm-\d+\.s;touch", table.stdout)  # shown (cut short), as data
    status = json.loads(run(tmp_path, "phorque.cli.status", "--json").stdout)
    dns = {inst["dns"] for inst in status["clouds"][0]["instances"]}
    assert any(site in (name or "") for name in dns)
    assert_nothing_ran(tmp_path, mark)


@pytest.mark.parametrize("name", ["node1\n", "node1\nnp=64", "a;b", "a b", "$(x)", "-a", "a..b",
                                  "n1\rset server scheduling=false", "x" * 300, "", "n1\x00"])
def test_names_that_are_not_host_names_never_reach_qmgr(tmp_path, name):
    fake = FakeTorque(tmp_path / "torque")
    torque = Torque(str(fake.root), timeout=10)
    with pytest.raises(UnsafeName):
        torque.add_node(name, 4)
    with pytest.raises(UnsafeName):
        torque.delete_node(name)
    assert fake.calls() == []


@pytest.mark.parametrize("prop", ["gpu\n", "gpu\nset server scheduling=false", 'a"b', "a,b", "a b", ""])
def test_properties_that_would_change_the_qmgr_directive_are_refused(tmp_path, prop):
    fake = FakeTorque(tmp_path / "torque")
    torque = Torque(str(fake.root), timeout=10)
    if prop == "":  # an empty property is left out, not refused
        torque.add_node("node1", 4, properties=[prop, "ok"])
        (argv,) = fake.calls()
        assert argv[1:] == ["-c", 'create node node1 np=4,properties="ok"']
        return
    with pytest.raises(UnsafeName):
        torque.add_node("node1", 4, properties=[prop, "ok"])
    assert fake.calls() == []


def test_pbsnodes_gets_names_and_notes_as_plain_arguments(tmp_path):
    fake = FakeTorque(tmp_path / "torque")
    torque = Torque(str(fake.root), timeout=10)
    torque.offline("-c", "drain\nset server scheduling=false\x1b[2J $(id)")
    (argv,) = fake.calls()
    # The name comes after "--", so it can never be read as an option; the note is one line.
    assert argv[1:] == ["-o", "-N", "drain set server scheduling=false [2J $(id)", "--", "-c"]


@pytest.mark.parametrize("encoding", ["ascii", "latin-1", "utf-8"])
def test_status_survives_bad_bytes_and_any_terminal_encoding(tmp_path, encoding):
    fake = FakeTorque(tmp_path / "torque")
    data = tmp_path / "qstat.xml"
    data.write_bytes(b"<Data><Job><Job_Id>7.srv\xff\xfe</Job_Id><job_state>Q</job_state><queue>b\xe9\xed\xa0\x80"
                     b"</queue><Job_Name>\xf0\x9f\x98\x80\x1b]0;pwned\x07</Job_Name></Job></Data>")
    nodes = tmp_path / "pbsnodes.xml"
    nodes.write_bytes(b"<Data><Node><name>n\xc3\xa9ud\xff</name><np>2</np><state>free</state>"
                      b"<note>\x1b[31mred\xe2\x80\xae</note></Node></Data>")
    fake.script("qstat", stdout_file=str(data))
    fake.script("pbsnodes", stdout_file=str(nodes))
    (tmp_path / "phorque.conf").write_text(PHANTOM_CONF.format(
        torque=fake.root, state=tmp_path / "state", autoscale="http://127.0.0.1:9", ec2="http://127.0.0.1:9",
        access=PHANTOM_ID, secret=PHANTOM_SECRET, site="hotel").replace("read_timeout_secs = 10", "max_attempts = 1"))
    env = {"PYTHONIOENCODING": encoding}
    table = run(tmp_path, "phorque.cli.status", env=env, encoding=encoding)
    assert table.returncode == 1, table.stderr  # a cloud group it cannot read: exit 1
    assert "Traceback" not in table.stderr
    assert_clean_table(table.stdout)
    assert "7.srv" in table.stdout and "n" in table.stdout
    as_json = run(tmp_path, "phorque.cli.status", "--json", env=env, encoding=encoding)
    assert as_json.returncode == 1, as_json.stderr  # a cloud group it cannot read: exit 1
    cluster = json.loads(as_json.stdout)["cluster"]
    assert cluster["jobs"][0]["id"] == "7.srv\ufffd\ufffd"
    assert cluster["jobs"][0]["name"] == "\U0001F600]0;pwned"
    assert cluster["nodes"][0]["name"] == "n\u00e9ud\ufffd"
