"""The README's first command: the demo runs to its end and leaves nothing running."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def test_demo_runs_to_the_end_and_cleans_up():
    proc = subprocess.run([sys.executable, "-m", "phorque_testbed.demo", "--charge", "20", "--boot", "2",
                           "--speed", "4", "--timeout", "150"],
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    workdir = re.search(r"Phorque demo in (\S+):", out).group(1)
    for word in ("launch +", "join ", "drain ", "terminate ", "remove "):
        assert word in out, word
    assert "jobs run: 13 (exit status not 0: 0)" in out
    assert "instances left running: none" in out
    assert re.search(r"paid \d+ instance-seconds", out)
    assert not os.path.exists(workdir)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=30).stdout
    assert workdir not in ps
