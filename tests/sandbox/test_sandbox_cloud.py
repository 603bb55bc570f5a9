"""Cloud-linked boots: a node created with qmgr comes up when the EC2 instance with its DNS name
has existed for the boot delay, and goes down with it (a real moto server on 127.0.0.1)."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET

import boto3
import pytest
from moto.server import ThreadedMotoServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ec2_endpoint():
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        moto.stop()


def node_state(sb, name: str) -> str:
    return ET.fromstring(sb.run("pbsnodes", "-x", "--", name, check=True).stdout)[0].findtext("state")


def test_nodes_follow_their_instances(make_sandbox, ec2_endpoint):
    ec2 = boto3.client("ec2", endpoint_url=ec2_endpoint, region_name="us-east-1",
                       aws_access_key_id="sandbox", aws_secret_access_key="sandbox")
    # Only the cloud's DNS makes instance names resolve here (and the hosts file ghost.example).
    sb = make_sandbox(nodes=0, cloud_endpoint=ec2_endpoint, boot_mode="cloud", boot_delay=1,
                      cloud_poll=0.2, resolvable=("ghost.example",))
    assert sb.run("qmgr", "-c", "create node ip-10-9-9-9.ec2.internal np=2").returncode == 2
    reply = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                              InstanceType="t2.micro")
    instance = reply["Instances"][0]
    name = instance["PrivateDnsName"]
    sb.run("qmgr", "-c", f"create node {name} np=2", check=True)  # resolves: the instance exists
    sb.run("qmgr", "-c", "create node ghost.example np=2", check=True)
    assert node_state(sb, name).startswith("down")
    sb.wait_for(lambda: node_state(sb, name) == "free", timeout=15, what="the instance's mom")
    # its mom reports the memory of its instance type (t2.micro: 1 GiB), not 2 GiB per core
    status = ET.fromstring(sb.run("pbsnodes", "-x", "--", name, check=True).stdout)[0]
    assert "physmem=1048576kb," in status.findtext("status")
    job = sb.qsub(runtime=600)
    sb.wait_for(lambda: sb.records("S", job), what="a job on the cloud node")
    assert f"exec_host={name}/0 " in sb.records("S", job)[0][3]
    assert node_state(sb, "ghost.example").startswith("down")  # no instance: never up

    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    sb.wait_for(lambda: node_state(sb, name).startswith("down"), timeout=15,
                what="the node to go down with its instance")
    assert not sb.records("E", job)  # the job is stuck on a dead mom, as in Torque
