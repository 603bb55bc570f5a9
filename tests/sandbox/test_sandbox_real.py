"""The sandbox does what the real Torque 6.1.3 does, compared with the captures in
``tests/fixtures/real-torque/`` (see the README there for how each was made)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from phorque.torque import xmlparse

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
