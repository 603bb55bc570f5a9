"""Shapes on a sandbox cluster, as on a real Torque 6.1.3: nodes with GPUs and memory, jobs that
ask for GPUs, properties and memory, and what qstat and pbsnodes print for them."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from phorque.adapters.torque import xmlparse
from phorque_testbed.sandbox import server
from phorque_testbed.sandbox.layout import Layout
from phorque_testbed.sandbox.placement import (
    BadNodeSpec,
    FreeNode,
    Placement,
    exec_gpus,
    gpu_flags,
    parse_exec_gpus,
    parse_part,
    parse_parts,
    place,
)
from phorque_testbed.sandbox.request import client_resources, resource_list, size_value
from tests.sandboxkit import Sandbox

NOT_RUNNING = "Not Running: Not enough of the right type of nodes are available"


def job_xml(sb, job: str) -> ET.Element:
    out = sb.run("qstat", "-f", "-x", job, check=True).stdout.split("\n")[1]
    return ET.fromstring(xmlparse.sanitize(out))[0]


def node_xml(sb, name: str) -> ET.Element:
    return ET.fromstring(sb.run("pbsnodes", "-x", "--", name, check=True).stdout)[0]


def status_fields(node: ET.Element) -> dict[str, str]:
    return dict(item.split("=", 1) for item in node.findtext("status").split(","))


def resources(job: ET.Element) -> list[tuple[str, str]]:
    return [(child.tag, child.text or "") for child in job.find("Resource_List")]


# -- reading requests as pbs_server does --------------------------------------------------
def test_parts_read_gpus_modes_and_properties():
    part = parse_part("2:ppn=8:gpus=2:ib:exclusive_process")
    assert (part.count, part.ppn, part.gpus, sorted(part.properties)) == (2, 8, 2, ["ib"])
    assert part.gpu_mode == 3  # gpu_exclusive_process
    # a mode word before gpus= is a property, as proplist reads it
    early = parse_part("1:shared:gpus=1")
    assert early.properties == {"shared"} and early.gpu_mode == 1
    assert parse_part("bigmem").host == "bigmem" and parse_part("bigmem").gpus == 0
    with pytest.raises(BadNodeSpec):
        parse_part("1:ppn=2:foo=3")  # an unknown special property is refused
    with pytest.raises(BadNodeSpec):
        parse_part("1:gpus=two")
    # gpu_flags: the mode of the last part with gpus= (exclusive_thread unless named), + 1000
    # for reseterr; none for a request without gpus=
    assert gpu_flags(parse_parts("1:ppn=1:gpus=1")) == 1
    assert gpu_flags(parse_parts("1:gpus=1:shared:reseterr+1:ppn=2")) == 1000
    assert gpu_flags(parse_parts("1:gpus=1:shared+1:gpus=1")) == 1
    assert gpu_flags(parse_parts("1:ppn=1:gpus=1:exclusive_process:reseterr")) == 1003  # real
    assert gpu_flags(parse_parts("2:ppn=4")) is None


def test_gpus_are_placed_on_nodes_with_enough_free_ones():
    nodes = [FreeNode("cpu1", [], range(8)), FreeNode("gpu1", [], range(8), [1]),
             FreeNode("gpu2", ["ib"], range(8), [0, 1])]
    # gpu1 has one GPU free (GPU 0 is taken): a part asking for two goes to gpu2
    two = place(parse_parts("1:ppn=2:gpus=2"), 0, nodes)
    assert two == Placement({"gpu2": [0, 1]}, {"gpu2": [0, 1]})
    one = place(parse_parts("1:ppn=2:gpus=1"), 0, nodes)
    assert one == Placement({"gpu1": [0, 1]}, {"gpu1": [1]})
    assert place(parse_parts("2:ppn=1:gpus=2"), 0, nodes) is None
    assert place(parse_parts("1:ppn=1:gpus=1:ib"), 0, nodes).slots == {"gpu2": [0]}
    # a job without GPUs may use a GPU node's cores (Torque keeps no node for GPU jobs)
    assert place(parse_parts("3:ppn=8"), 0, nodes).gpus == {}


def test_exec_gpus_reads_as_pbs_server_writes_it():
    # each GPU handed out goes to the front of the list: a node's GPUs from the highest down
    # (a real 6.1.3: exec_gpus = torque-mom1-gpu/1+torque-mom1-gpu/0 for nodes=1:ppn=1:gpus=2)
    assert exec_gpus(Placement({"n1": [0, 1]}, {"n1": [0, 1]})) == "n1-gpu/1+n1-gpu/0"
    both = Placement({"a": [0], "b": [0]}, {"a": [0, 1], "b": [2]})
    assert exec_gpus(both) == "a-gpu/1+a-gpu/0+b-gpu/2"
    assert exec_gpus(Placement({"n1": [0]})) is None
    assert parse_exec_gpus("ip-10-0-0-1-gpu/1+ip-10-0-0-1-gpu/0") == {"ip-10-0-0-1": [1, 0]}


@pytest.mark.parametrize("given,stored", [
    ("64gb", "64gb"), ("64GB", "64gb"), ("64g", "64gb"), ("512M", "512mb"), ("4096", "4096b"),
    ("2kw", "2kw"), ("3W", "3w"), ("0x10gb", "16gb"), ("010gb", "8gb"), ("1tb", "1tb"),
])
def test_sizes_are_stored_as_decode_size_reads_them(given, stored):
    assert size_value(given) == stored


@pytest.mark.parametrize("given", ["1.5gb", "4gib", "gb", "", "1bb", "1mbw", "08gb"])
def test_sizes_decode_size_refuses(given):
    assert size_value(given) is None


def test_qsub_sends_gpus_as_gres_and_ncpus_gpus_adds_gpus():
    assert client_resources([("gpus", "2"), ("mem", "1gb"), ("walltime", "1:00"), ("mem", "2GB")]
                            ) == [("gres", "gpus:2"), ("walltime", "1:00"), ("mem", "2GB")]
    # what a real 6.1.3 printed for -l nodes=1:ppn=1:gpus=2,mem=64GB,pmem=4G,vmem=4096
    listed, _ = resource_list(client_resources(
        [("nodes", "1:ppn=1:gpus=2"), ("mem", "64GB"), ("pmem", "4G"), ("vmem", "4096")]))
    assert listed == [("nodes", "1:ppn=1:gpus=2"), ("mem", "64gb"), ("pmem", "4gb"),
                      ("vmem", "4096b"), ("nodect", "1"), ("neednodes", "1:ppn=1:gpus=2"),
                      ("walltime", "01:00:00")]
    # ... and for -l gpus=2,pvmem=512m,mem=2gb (the queue's nodes=1 default after)
    listed, _ = resource_list(client_resources([("gpus", "2"), ("pvmem", "512m"), ("mem", "2gb")]))
    assert listed == [("gres", "gpus:2"), ("pvmem", "512mb"), ("mem", "2gb"),
                      ("walltime", "01:00:00"), ("nodes", "1"), ("nodect", "1"),
                      ("neednodes", "1")]
    # decode_attributes_into_job: ncpus=N:gpus=M sets gpus=M first, then ncpus=N
    assert resource_list([("ncpus", "2:gpus=1")])[0] == [
        ("gpus", "1"), ("ncpus", "2"), ("walltime", "01:00:00")]


# -- a real sandbox -----------------------------------------------------------------------
def test_gpu_nodes_are_created_listed_and_written_like_real_ones(make_sandbox):
    sb = make_sandbox(nodes=1, np=4)
    sb.run("qmgr", "-c", "create node cloud-gpu np=8,gpus=2,properties=ib", check=True)
    node = node_xml(sb, "cloud-gpu")
    tags = [child.tag for child in node]
    # gpus comes last, after the mom ports (ND_ATR_gpus), and only on a node that has some
    assert tags[-3:] == ["mom_service_port", "mom_manager_port", "gpus"]
    assert node.findtext("gpus") == "2" and node.findtext("properties") == "ib"
    assert node_xml(sb, "node01").find("gpus") is None
    assert "cloud-gpu np=8 gpus=2 ib\n" in (sb.root / "server_priv/nodes").read_text()
    sb.run("qmgr", "-c", "set node cloud-gpu gpus = 4", check=True)
    assert node_xml(sb, "cloud-gpu").findtext("gpus") == "4"
    assert "set node cloud-gpu gpus = 4" in sb.run("qmgr", "-c", "print node cloud-gpu").stdout
    refused = sb.run("qmgr", "-c", "set node cloud-gpu gpus = 0")
    assert refused.returncode == 2
    assert refused.stderr == ("qmgr obj=cloud-gpu svr=default: Illegal attribute or resource"
                              " value for\n")
    assert node_xml(sb, "cloud-gpu").findtext("gpus") == "4"


def test_gpu_job_runs_only_where_gpus_are_free(make_sandbox):
    sb = make_sandbox(nodes=2, np=8, speed=10)
    first = sb.qsub("-l", "nodes=1:ppn=2:gpus=1", runtime=30)
    second = sb.qsub("-l", "nodes=1:ppn=2:gpus=2", runtime=5)
    plain = sb.qsub("-l", "nodes=1:ppn=8", runtime=600)
    sb.wait_for(lambda: sb.records("S", plain), what="the core-only job on a static node")
    # sixteen cores free on the static nodes, but no GPU there
    sb.wait_for(lambda: job_xml(sb, first).findtext("comment") == NOT_RUNNING, what="a comment")
    assert not sb.records("S", first) and not sb.records("S", second)
    sb.run("qmgr", "-c", "create node cloud-gpu np=8,gpus=2", check=True)
    sb.wait_for(lambda: sb.records("S", first), what="the one-GPU job on the GPU node")
    job = job_xml(sb, first)
    assert job.findtext("exec_host") == "cloud-gpu/0-1"
    assert job.findtext("exec_gpus") == "cloud-gpu-gpu/0"
    assert job.findtext("gpu_flags") == "1"
    tags = [child.tag for child in job]
    assert tags[tags.index("exec_host") + 1] == "exec_gpus"
    assert tags[tags.index("gpu_flags") + 1] == "request_version"
    # the node has six cores free but one GPU: the two-GPU job waits for the first to end
    assert job_xml(sb, second).findtext("job_state") == "Q"
    sb.wait_for(lambda: sb.records("S", second), timeout=30, what="the two-GPU job")
    assert sb.records("E", first)
    assert job_xml(sb, second).findtext("exec_gpus") == "cloud-gpu-gpu/1+cloud-gpu-gpu/0"
    assert job_xml(sb, plain).find("exec_gpus") is None


def test_property_job_runs_only_on_a_node_with_the_property(make_sandbox):
    sb = make_sandbox(nodes=1, np=8, speed=10)
    wanted = sb.qsub("-l", "nodes=1:ppn=4:bigmem", runtime=5)
    sb.wait_for(lambda: job_xml(sb, wanted).findtext("comment") == NOT_RUNNING, what="a comment")
    sb.run("qmgr", "-c", 'create node cloud-big np=4,properties="bigmem,ib"', check=True)
    sb.wait_for(lambda: sb.records("S", wanted), what="the job on the bigmem node")
    assert job_xml(sb, wanted).findtext("exec_host") == "cloud-big/0-3"


def test_memory_is_reported_by_the_mom_and_not_placed_by(make_sandbox):
    sb = make_sandbox(nodes=1, np=4, mem_mb=8192, gpus=1, speed=10)
    node = node_xml(sb, "node01")
    status = status_fields(node)
    assert status["physmem"] == status["totmem"] == "8388608kb"
    assert node.findtext("gpus") == "1"
    # pbs_server and pbs_sched place by cores, GPUs and properties: a 512 GB job starts on an
    # 8 GB node, its ask kept as the server normalised it
    big = sb.qsub("-l", "mem=512GB,pmem=4G,vmem=600gb,pvmem=1024m,nodes=1:ppn=1", "-r", "n",
                  runtime=60)
    sb.wait_for(lambda: sb.records("S", big), what="the big-memory job")
    job = job_xml(sb, big)
    assert resources(job) == [("mem", "512gb"), ("pmem", "4gb"), ("vmem", "600gb"),
                              ("pvmem", "1024mb"), ("nodes", "1:ppn=1"), ("nodect", "1"),
                              ("neednodes", "1:ppn=1"), ("walltime", "01:00:00")]
    assert job.findtext("Rerunable") == "False"
    assert "Resource_List.mem=512gb " in sb.records("S", big)[0][3]
    running = status_fields(node_xml(sb, "node01"))
    assert int(running["availmem"][:-2]) < 8388608  # the job's session uses some
    # qsub sends -l gpus=N as gres
    gres = sb.qsub("-l", "gpus=2,nodes=1:ppn=1", runtime=1)
    assert ("gres", "gpus:2") in resources(job_xml(sb, gres))
    # a qmgr-made node without a memory of its own reports 2 GiB per core
    sb.run("qmgr", "-c", "create node cloud-1 np=2", check=True)
    sb.wait_for(lambda: node_xml(sb, "cloud-1").findtext("status"), what="its mom")
    assert status_fields(node_xml(sb, "cloud-1"))["physmem"] == "4194304kb"


def test_gpu_job_is_refused_when_no_node_up_has_gpus(make_sandbox):
    # req_quejob's feasibility check counts a node's GPUs only while it is up and online
    sb = make_sandbox(nodes=1, np=8, transit=False)
    sb.run("qmgr", "-c", "create node cloud-gpu np=8,gpus=2", check=True)  # still booting
    refused = sb.run("qsub", "-l", "nodes=1:ppn=1:gpus=1", input="true\n")
    assert refused.returncode == 190 and "cannot locate feasible nodes" in refused.stderr
    assert sb.run("qsub", "-l", "nodes=1:ppn=1", input="true\n").returncode == 0
    bad = sb.run("qsub", "-l", "mem=1.5gb", input="true\n")
    assert (bad.returncode, bad.stderr) == (168, "qsub: submit error (Illegal attribute or"
                                                 " resource value for Resource_List.mem)\n")


def test_cli_gives_static_nodes_gpus_and_memory(tmp_path: Path):
    root = tmp_path / "c"
    made = subprocess.run([sys.executable, "-m", "phorque_testbed.sandbox.cli", "init", str(root),
                           "--nodes", "2", "--np", "8", "--gpus", "2", "--mem-mb", "65536",
                           "--properties", "ib", "--server", "srv.test"],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert (root / "server_priv/nodes").read_text() == (
        "node01 np=8 gpus=2 ib\nnode02 np=8 gpus=2 ib\n")
    layout = Layout(str(root))
    sb = Sandbox(layout)
    sb.start()
    try:
        node = node_xml(sb, "node02")
        assert node.findtext("gpus") == "2"
        assert status_fields(node)["physmem"] == f"{65536 * 1024}kb"
    finally:
        server.stop(layout)
