"""The Torque adapter against real executables: exact argv, Torque's messages, timeouts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phorque.adapters.torque.commands import Torque, UnsafeName, phorque_note
from phorque.adapters.torque.xmlparse import XMLFormatError
from phorque.core.errors import CommandError, TorqueError
from tests.fake_torque import FakeTorque

FIXTURES = Path(__file__).parents[1] / "fixtures" / "torque"


@pytest.fixture
def fake(tmp_path) -> FakeTorque:
    return FakeTorque(tmp_path / "torque")


@pytest.fixture
def torque(fake) -> Torque:
    return Torque(cluster_directory=str(fake.root), timeout=5)


def test_reads_jobs_with_array_subjobs(fake, torque):
    fake.script("qstat", stdout_file=str(FIXTURES / "qstat_pretty.xml"))
    jobs = torque.jobs()
    assert len(jobs) == 5
    assert fake.calls() == [[str(fake.bin / "qstat"), "-f", "-x", "-t"]]


def test_reads_nodes(fake, torque):
    fake.script("pbsnodes", stdout_file=str(FIXTURES / "pbsnodes_pretty.xml"))
    assert [n.name for n in torque.nodes()] == ["master", "node-a", "node-b"]
    assert fake.calls() == [[str(fake.bin / "pbsnodes"), "-x"]]


def test_unknown_node_reads_as_none(fake, torque):
    fake.script("pbsnodes", stderr="pbsnodes: Unknown node  MSG=cannot locate specified node\n", rc=153)
    assert torque.node("ghost") is None
    assert fake.calls()[-1][1:] == ["-x", "--", "ghost"]


def test_add_node_with_properties_and_phorque_note(fake, torque):
    assert torque.add_node("ip-10-0-0-5.ec2.internal", 4, ("cloud", "hotel"), phorque_note("joined"))
    calls = fake.calls()
    assert calls[0][1:] == ["-c", 'create node ip-10-0-0-5.ec2.internal np=4,properties="cloud,hotel"']
    assert calls[1][1:] == ["-N", "phorque: joined", "--", "ip-10-0-0-5.ec2.internal"]


def test_add_node_with_gpus(fake, torque):
    assert torque.add_node("g1", 8, ("ib",), phorque_note("joined"), gpus=2)
    assert fake.calls()[0][1:] == ["-c", 'create node g1 np=8,gpus=2,properties="ib"']


def test_already_exists_and_unknown_node_are_tolerated(fake, torque):
    fake.script("qmgr", stderr="qmgr obj=n1 svr=default: Node name already exists\n", rc=1)
    assert torque.add_node("n1", 2) is False
    fake.script("qmgr", stderr="qmgr obj=n1 svr=default: Unknown node\n", rc=1)
    assert torque.delete_node("n1") is False


def test_other_failures_raise_with_command_status_and_stderr(fake, torque):
    fake.script("qmgr", stderr="qmgr obj= svr=default: Unauthorized Request\n", rc=159)
    with pytest.raises(CommandError) as caught:
        torque.schedule()
    error = caught.value
    assert error.argv == [str(fake.bin / "qmgr"), "-c", "set server scheduling=true"]
    assert error.returncode == 159 and "Unauthorized Request" in error.stderr
    assert "Unauthorized Request" in str(error)


def test_failed_qstat_is_an_error_even_with_partial_xml(fake, torque):
    fake.script("qstat", stdout="<Data><Job><Job_Id>1.s</Job_Id>", rc=1,
                stderr="qstat: cannot connect to server srv (errno=111) Connection refused\n")
    with pytest.raises(CommandError) as caught:
        torque.jobs()
    assert caught.value.returncode == 1


def test_truncated_output_with_success_status_is_an_error(fake, torque):
    fake.script("qstat", stdout="<Data><Job><Job_Id>1.s</Job_Id></Job><Job>")
    with pytest.raises(XMLFormatError):
        torque.jobs()


def test_hanging_command_times_out(fake):
    fake.script("pbsnodes", sleep=30)
    torque = Torque(cluster_directory=str(fake.root), timeout=0.5)
    with pytest.raises(CommandError) as caught:
        torque.nodes()
    assert caught.value.timed_out  # the 0.5 s timeout ended it, not the script's 30 s


def test_shell_metacharacters_reach_pbsnodes_as_one_literal_argument(fake, torque, tmp_path):
    marker = tmp_path / "pwned"
    name = f"n1; touch {marker} $(touch {marker}) `touch {marker}` | & > '\""
    torque.offline(name, "phorque: draining\nnext line $(id)")
    call = fake.calls()[-1]
    assert call[1:4] == ["-o", "-N", "phorque: draining next line $(id)"]
    assert call[4:] == ["--", name]
    assert not marker.exists()


def test_unsafe_names_never_reach_qmgr(fake, torque):
    for bad in ("n1; delete node n2", "n1 np=1000", 'a"b', "-x", ""):
        with pytest.raises(UnsafeName):
            torque.add_node(bad, 1)
        with pytest.raises(UnsafeName):
            torque.delete_node(bad)
    assert fake.calls() == []


def test_commands_found_in_cluster_directory_then_path(tmp_path, monkeypatch):
    elsewhere = FakeTorque(tmp_path / "elsewhere")
    empty = tmp_path / "empty"
    (empty / "bin").mkdir(parents=True)
    monkeypatch.setenv("PATH", f"{elsewhere.bin}{os.pathsep}{os.environ['PATH']}")
    torque = Torque(cluster_directory=str(empty), timeout=5)
    assert torque.command("qstat") == str(elsewhere.bin / "qstat")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(CommandError, match="not found"):
        torque.command("qstat")


def test_a_server_without_nodes_has_an_empty_node_list(fake, torque):
    fake.script("pbsnodes", stderr="pbsnodes: Server has no node list MSG=node list is empty - check 'server_priv/nodes' file\n", rc=1)
    assert torque.nodes() == []


def test_delete_that_purged_jobs_still_deleted_the_node(fake, torque):
    fake.script("qmgr", rc=2, stderr="qmgr obj=n1 svr=default: The node has been deleted and all jobs on the node have been purged.\n")
    assert torque.delete_node("n1") is True


def test_an_answer_without_the_node_asked_for_is_not_unknown(fake, torque):
    # Torque says "Unknown node" with an error; a clean answer lacking the node (a partial or
    # wrong answer) must not be taken for "there is no such node", which would allow a terminate.
    fake.script("pbsnodes", stdout="<Data></Data>\n")
    with pytest.raises(TorqueError, match="does not list ghost"):
        torque.node("ghost")
