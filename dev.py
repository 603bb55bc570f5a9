#!/usr/bin/env python3
"""Developer entry point: one command for the tests, one for the demo.

    python3 dev.py test [PYTEST-ARGS...]   create .venv, install Phorque with its test
                                           extras, lint with ruff, run pytest
    python3 dev.py test --busy [ARGS...]   the same with two CPU-bound processes running beside
                                           the suite (stopped when it ends): the suite must pass
                                           on a loaded machine
    python3 dev.py demo [DEMO-ARGS...]     create .venv, install Phorque with its sandbox
                                           extras, run the live demo
    python3 dev.py bench NAME [ARGS...]    run bench/NAME.py inside .venv

Only the standard library is used here, so it runs on a fresh machine that has Python 3.11 and pip.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("PHORQUE_VENV", ROOT / ".venv"))
BIN = VENV / "bin"


#: ``test --busy``: CPU-bound processes that load the machine while the suite runs.
BUSY_PROCESSES = 2
BUSY_LOOP = "while True:\n    pass\n"


def _run(argv: list[str], **kwargs) -> int:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, cwd=ROOT, **kwargs).returncode


def ensure_env(extras: str) -> None:
    """Create the virtual environment and (re)install Phorque when its metadata changed."""
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
        _run([str(BIN / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip", "setuptools", "wheel"])
    digest = hashlib.sha256((ROOT / "setup.cfg").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".phorque-installed-{extras.replace(',', '-')}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    rc = _run([str(BIN / "python"), "-m", "pip", "install", "-q", "-e", f".[{extras}]"])
    if rc:
        sys.exit(rc)
    stamp.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"test", "demo", "bench"}:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if cmd == "test":
        ensure_env("test")
        rc = _run([str(BIN / "ruff"), "check", "phorque", "tests", "bench", "hooks", "dev.py"], env=env)
        if rc:
            return rc
        if "--busy" not in rest:
            return _run([str(BIN / "python"), "-m", "pytest", *rest], env=env)
        rest = [a for a in rest if a != "--busy"]
        busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(BUSY_PROCESSES)]
        print(f"+ {BUSY_PROCESSES} busy processes beside the suite: pids",
              " ".join(str(b.pid) for b in busy), flush=True)
        try:
            return _run([str(BIN / "python"), "-m", "pytest", *rest], env=env)
        finally:
            for proc in busy:
                proc.terminate()
            for proc in busy:
                proc.wait(timeout=30)
    if cmd == "demo":
        ensure_env("sandbox")
        return _run([str(BIN / "phorque-demo"), *rest], env=env)
    ensure_env("test,plot")
    if not rest:
        print("usage: python3 dev.py bench NAME [ARGS...]; benchmarks:",
              " ".join(sorted(p.stem for p in (ROOT / "bench").glob("*.py") if not p.stem.startswith("_"))))
        return 2
    return _run([str(BIN / "python"), str(ROOT / "bench" / f"{rest[0]}.py"), *rest[1:]], env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
