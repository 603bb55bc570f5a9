"""Real executables standing in for qstat, pbsnodes and qmgr in command-layer tests.

Each script records its argument vector (one JSON line in ``calls.jsonl``) and then does what
``<name>.json`` beside it says: print a file or text, print to stderr, sleep, exit with a code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCRIPT = '''#!{python}
import json, sys, time
from pathlib import Path
here = Path(__file__).resolve().parent
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps(sys.argv) + "\\n")
spec_path = here / (Path(sys.argv[0]).name + ".json")
spec = json.loads(spec_path.read_text()) if spec_path.exists() else {{}}
time.sleep(spec.get("sleep", 0))
if "stdout_file" in spec:
    sys.stdout.buffer.write(Path(spec["stdout_file"]).read_bytes())
sys.stdout.write(spec.get("stdout", ""))
sys.stderr.write(spec.get("stderr", ""))
sys.exit(spec.get("rc", 0))
'''


class FakeTorque:
    """A ``bin/`` directory of scripted Torque commands."""

    def __init__(self, root: Path):
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        for name in ("qstat", "pbsnodes", "qmgr"):
            path = self.bin / name
            path.write_text(SCRIPT.format(python=sys.executable))
            path.chmod(0o755)

    def script(self, name: str, **spec) -> None:
        (self.bin / f"{name}.json").write_text(json.dumps(spec))

    def calls(self) -> list[list[str]]:
        log = self.bin / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]
