"""The commands' client side: what it sends, what it imports, how it fails."""

from __future__ import annotations

import subprocess
import sys

from phorque_testbed.sandbox.dispatch import encode_answer
from phorque_testbed.sandbox.invocation import decode_request
from phorque_testbed.sandbox.wire import decode_answer, encode_request, reads_stdin


def test_request_round_trip():
    data = encode_request("qsub", "/home/u", ["-N", "x y", "-l", "nodes=1"],
                          {"PATH": "/bin", "ODD": "a=b\udcff"}, b"#!/bin/sh\necho\n", 1000, 100)
    request = decode_request(data)
    assert (request.command, request.cwd, request.argv) == ("qsub", "/home/u",
                                                            ["-N", "x y", "-l", "nodes=1"])
    assert request.env == {"PATH": "/bin", "ODD": "a=b\udcff"}
    assert (request.stdin, request.uid, request.gid) == (b"#!/bin/sh\necho\n", 1000, 100)
    assert request.path("job.sh") == "/home/u/job.sh" and request.path("/x") == "/x"


def test_answer_round_trip():
    assert decode_answer(encode_answer(153, "out\n", "qstat: Unknown Job Id Error 1.x\n")) == (
        153, b"out\n", b"qstat: Unknown Job Id Error 1.x\n", "-")
    assert decode_answer(encode_answer(0, "", "", "hang"))[3] == "hang"


def test_only_qsub_without_a_script_and_qmgr_without_c_read_stdin():
    assert reads_stdin("qsub", ["-l", "nodes=1", "-N", "x"])
    assert not reads_stdin("qsub", ["-l", "nodes=1", "job.sh"])
    assert not reads_stdin("qsub", ["-Njob", "--", "job.sh"])
    assert reads_stdin("qsub", ["-N", "job.sh"])  # the value of -N, not a script
    assert reads_stdin("qmgr", [])
    assert not reads_stdin("qmgr", ["-c", "create node x"])
    assert not reads_stdin("qmgr", ["-ac", "create node x"])
    assert not reads_stdin("qstat", [])


def test_a_command_imports_almost_nothing(sandbox):
    """The client path must stay cheap: no sqlite3, no socket module, no boto3, no model."""
    script = sandbox.layout.command("qstat")
    result = subprocess.run([sys.executable, "-S", "-X", "importtime", script],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout == ""  # no jobs yet
    modules = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
               if line.startswith("import time:")}
    assert "phorque_testbed.sandbox.wire" in modules and "_socket" in modules
    assert not modules & {"sqlite3", "socket", "boto3", "botocore", "phorque.core.model",
                          "phorque.adapters.torque.resources", "phorque_testbed.sandbox.engine", "json", "re", "typing"}
