"""Accounting logs of a site that already bursts: its former cloud nodes are not replayed as
static nodes; stderr says which were set aside and why; ``--local-nodes`` overrides."""

from __future__ import annotations

import json

import pytest

from phorque.adapters.torque.accounting import format_line
from phorque.replay.accounting import read_accounting
from phorque.replay.cli import main
from phorque.replay.hosts import cloud_name, split_hosts
from tests.replay.test_replay_accounting import T0, full

PRIVATE = "ip-10-0-0-5.ec2.internal"
PUBLIC = "ec2-54-1-2-3.compute-1.amazonaws.com"


def log(path, hosts: list[str]):
    """One job per host of ``hosts`` (``name/slots``), each queued, started and ended."""
    lines = []
    for n, exec_host in enumerate(hosts, 1):
        job, at = f"{n}.head", T0 + 100 * n
        cores = len(exec_host.split("+"))
        lines += [format_line(at, "Q", job, "queue=batch"),
                  format_line(at + 5, "S", job, full(job, at, at + 5, f"1:ppn={cores}", "01:00:00", exec_host)),
                  format_line(at + 605, "E", job, full(job, at, at + 5, f"1:ppn={cores}", "01:00:00", exec_host,
                                                        end=at + 605))]
    path.mkdir()
    (path / "20231114").write_text("".join(lines))
    return path


@pytest.fixture
def bursting(tmp_path):
    """Two 4-core static nodes and two 8-core EC2 nodes of a former burst, one named by its
    private DNS name, one by its public one."""
    return log(tmp_path / "accounting", ["n1/0-3", "n2/0-3", f"{PRIVATE}/0-7", f"{PUBLIC}/0-7", "n1/0"])


def replay(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main([*argv, "--json", "--policy", "CostAware", "-q"])
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out else None, out.err


def test_ec2_named_hosts_are_not_static_nodes(bursting):
    trace = read_accounting([bursting])
    assert (trace.nodes, trace.node_cores, trace.max_cores, trace.hosts) == (2, 4, 8, 4)
    assert trace.former_cloud_nodes == {PUBLIC: "EC2 public DNS name (ec2-*.amazonaws.com)",
                                        PRIVATE: "EC2 private DNS name (*.ec2.internal)"}
    # Their jobs are still the workload.
    assert len(trace.jobs) == 5


def test_the_command_line_says_which_hosts_were_set_aside_and_why(bursting, capsys):
    code, data, err = replay(capsys, str(bursting))
    assert code == 0, err
    assert data["setup"]["local_nodes"] == 2 and data["setup"]["local_np"] == 4
    assert data["setup"]["former_cloud_nodes"] == {PUBLIC: "EC2 public DNS name (ec2-*.amazonaws.com)",
                                                   PRIVATE: "EC2 private DNS name (*.ec2.internal)"}
    assert "2 of the log's 4 hosts set aside as former cloud nodes" in err
    assert f"(EC2 private DNS name (*.ec2.internal)): {PRIVATE}" in err
    assert f"(EC2 public DNS name (ec2-*.amazonaws.com)): {PUBLIC}" in err
    assert "--local-nodes NAMES overrides" in err


def test_local_nodes_names_say_exactly_which_hosts_were_static(bursting, capsys):
    code, data, err = replay(capsys, str(bursting), "--local-nodes", "n*, ip-*")
    assert code == 0, err
    # n1, n2 and the private-named host: three nodes, as large as the largest (8 cores).
    assert (data["setup"]["local_nodes"], data["setup"]["local_np"]) == (3, 8)
    assert data["setup"]["former_cloud_nodes"] == {PUBLIC: "not named by --local-nodes"}
    assert "1 of the log's 4 hosts set aside" in err and f"(not named by --local-nodes): {PUBLIC}" in err
    # Every host static: nothing is set aside, nothing said.
    code, data, err = replay(capsys, str(bursting), "--local-nodes", "*")
    assert code == 0 and err == ""
    assert (data["setup"]["local_nodes"], data["setup"]["local_np"]) == (4, 8)
    assert "former_cloud_nodes" not in data["setup"]


def test_a_number_of_local_nodes_takes_its_size_from_the_static_hosts(bursting, capsys):
    code, data, err = replay(capsys, str(bursting), "--local-nodes", "3")
    assert code == 0, err
    assert (data["setup"]["local_nodes"], data["setup"]["local_np"]) == (3, 4)
    assert "set aside as former cloud nodes" in err
    # With both given, the log's hosts decide nothing: nothing to say about them.
    code, data, err = replay(capsys, str(bursting), "--local-nodes", "3", "--local-np", "2")
    assert code == 0 and err == ""
    assert (data["setup"]["local_nodes"], data["setup"]["local_np"]) == (3, 2)


def test_bad_local_nodes_are_refused(bursting, tmp_path, capsys):
    code, data, err = replay(capsys, str(bursting), "--local-nodes", "gpu*")
    assert code == 2 and data is None
    assert "--local-nodes gpu*: no host of the log matches" in err and "n1, n2" in err
    for bad in ("0", ",", "-2"):
        code, _, err = replay(capsys, str(bursting), "--local-nodes", bad)
        assert code == 2 and "--local-nodes" in err
    swf = tmp_path / "t.swf"
    swf.write_text("; MaxProcs: 4\n1 0 -1 60 1 -1 -1 1 120 -1 1 1 1 -1 1 -1 -1 -1\n")
    code, _, err = replay(capsys, str(swf), "--local-nodes", "n*")
    assert code == 2 and "needs Torque accounting logs" in err


def test_a_log_of_cloud_nodes_only_asks_for_the_cluster(tmp_path, capsys):
    path = log(tmp_path / "accounting", [f"{PRIVATE}/0-3", f"{PUBLIC}/0-3"])
    code, data, err = replay(capsys, str(path))
    assert code == 2 and data is None
    assert "every host of the log was set aside" in err and "--local-nodes '*'" in err
    code, data, err = replay(capsys, str(path), "--local-nodes", "*")
    assert code == 0 and (data["setup"]["local_nodes"], data["setup"]["local_np"]) == (2, 4)


@pytest.mark.parametrize("host", [
    "ip-10-0-0-1.ec2.internal", "ip-172-31-5-20.eu-west-1.compute.internal",
    "i-0123456789abcdef0.us-west-2.compute.internal", "ec2-54-1-2-3.compute-1.amazonaws.com",
    "ec2-3-250-1-9.eu-west-1.compute.amazonaws.com", "ip-10-0-0-1", "IP-10-0-0-1.EC2.INTERNAL.",
    "i-0123abcd", "ip-10-1-2-3.cluster.example.org",
])
def test_cloud_instance_names(host):
    assert cloud_name(host) is not None


@pytest.mark.parametrize("host", [
    "n1", "node042.cluster.example.org", "ip-cluster01", "compute01.internal", "ec2-gateway.example.com",
    "i-love-hpc", "gpu-10-0-0-1", "login.compute.internal.example.org",
])
def test_site_names(host):
    assert cloud_name(host) is None


def test_split_with_patterns_is_case_blind():
    assert split_hosts(["Node1", "node2", "other"], ("node*",)) == {"other": "not named by --local-nodes"}
