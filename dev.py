#!/usr/bin/env python3
"""Developer entry point: one command for the tests, one for the demo.

    python3 dev.py test [PYTEST-ARGS...]   create .venv, install Phorque with its test
                                           extras (and Debian's prometheus server, with apt,
                                           when missing), lint with ruff, check types with
                                           mypy, run pytest
    python3 dev.py test --busy [ARGS...]   the same with two CPU-bound processes running beside
                                           the suite (stopped when it ends): the suite must pass
                                           on a loaded machine
    python3 dev.py test -m unit            one level of the suite (unit, component,
                                           integration, hostile, replay; see the README)
    python3 dev.py demo [DEMO-ARGS...]     create .venv, install Phorque with its sandbox
                                           extras, run the live demo
    python3 dev.py bench NAME [ARGS...]    run bench/NAME.py inside .venv
    python3 dev.py torque build            build a real Torque 6.1.3 from its source tarball
                                           ($PHORQUE_TORQUE_SOURCE, else
                                           ../shared/vendor/torque-6.1.3.tar.gz) into a cache
    python3 dev.py torque start [--moms N] [--np N] | stop | status
                                           run a private Torque on this host

`test` also runs the real-Torque tier (tests/torque/) whenever a Torque source or build is found
(building it first when only the source is there), and says in one line when it does not.
Under CI (CI=true) the tier must run: `test` fails when it did not.

Only the standard library is used here, so it runs on a fresh machine that has Python 3.11 and pip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
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


def torque_tier(env: dict[str, str]) -> tuple[list[str], Path | None]:
    """Make the real-Torque tier runnable if a source or build is found.

    Returns the extra pytest arguments and the file the tier reports its count to (None when
    the tier is not run)."""
    from torquebed import build

    if os.environ.get("PHORQUE_TORQUE", "") == "off":
        print("real-Torque tier not run: PHORQUE_TORQUE=off", flush=True)
        return ["--ignore=tests/torque"], None
    found = build.locate()
    if found is None:
        source = build.find_source()
        if source is None:
            print(f"real-Torque tier not run: no Torque build in {build.cache_root()} and no source "
                  f"(set PHORQUE_TORQUE_SOURCE or provide {build.DEFAULT_SOURCE})", flush=True)
            return ["--ignore=tests/torque"], None
        if os.geteuid() != 0:
            print("real-Torque tier not run: building and running Torque needs root", flush=True)
            return ["--ignore=tests/torque"], None
        try:
            found = build.build(source)
        except build.BuildError as exc:
            print(f"real-Torque tier not run: the Torque build failed: {exc}", flush=True)
            return ["--ignore=tests/torque"], None
    report = VENV / ".torque-tier-report"
    report.unlink(missing_ok=True)
    env["PHORQUE_TORQUE_TIER_REPORT"] = str(report)
    print(f"real-Torque tier: running against the build in {found.root}", flush=True)
    return [], report


#: Debian packages the tests use: a real Prometheus server scrapes the daemon's metrics.
TEST_PACKAGES = {"prometheus": "/usr/bin/prometheus"}


def ensure_test_packages() -> int:
    """Install the Debian packages the tests need when missing (as root, with apt)."""
    missing = [name for name, path in TEST_PACKAGES.items() if not os.path.exists(path)]
    if not missing:
        return 0
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"dev.py: the tests need the Debian package(s) {' '.join(missing)}: "
              f"apt-get install --no-install-recommends {' '.join(missing)}", file=sys.stderr)
        return 1
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    # The package lists may be stale or absent on a fresh machine: update once and try again.
    if _run(install, env=env, timeout=1800) == 0:
        return 0
    if _run(["apt-get", "update", "-q"], env=env, timeout=900):
        return 1
    return _run(install, env=env, timeout=1800)


def _selects_integration(rest: list[str]) -> bool:
    """Can the pytest arguments select integration tests (the real-Torque tier is one)? Only a
    ``-m`` expression that does not name ``integration`` rules them out."""
    if "-m" not in rest or rest.index("-m") + 1 >= len(rest):
        return True
    expression = rest[rest.index("-m") + 1]
    return "integration" in expression and "not integration" not in expression


def run_tests(rest: list[str], env: dict[str, str]) -> int:
    rc = ensure_test_packages()
    if rc:
        return rc
    rc = _run([str(BIN / "ruff"), "check", "phorque", "phorque_testbed", "tests", "bench", "hooks", "dev.py", "torquebed"],
              env=env)
    if rc:
        return rc
    # The package's types (pyproject.toml says what: the pure core strictly, the rest by
    # mypy's defaults); an error fails the run as a lint error does.
    rc = _run([str(BIN / "python"), "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")], env=env)
    if rc:
        return rc
    busy_wanted = "--busy" in rest
    rest = [a for a in rest if a != "--busy"]
    extra, report = torque_tier(env) if _selects_integration(rest) else (["--ignore=tests/torque"], None)
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(BUSY_PROCESSES)] \
        if busy_wanted else []
    if busy:
        print(f"+ {BUSY_PROCESSES} busy processes beside the suite: pids",
              " ".join(str(b.pid) for b in busy), flush=True)
    try:
        rc = _run([str(BIN / "python"), "-m", "pytest", *extra, *rest], env=env)
    finally:
        for proc in busy:
            proc.terminate()
        for proc in busy:
            proc.wait(timeout=30)
    if os.environ.get("CI") == "true" and not rest:
        ran = int(report.read_text() or 0) if report and report.is_file() else 0
        if ran == 0:
            print("CI: the real-Torque tier did not run", flush=True)
            return rc or 1
        print(f"CI: the real-Torque tier ran {ran} test(s)", flush=True)
    return rc


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"test", "demo", "bench", "torque"}:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if cmd == "torque":
        from torquebed import build, cluster

        if rest[:1] == ["build"]:
            try:
                build.build()
            except build.BuildError as exc:
                print(f"torque: {exc}", file=sys.stderr)
                return 1
            return 0
        return cluster.main(rest)
    if cmd == "test":
        ensure_env("test")
        return run_tests(rest, env)
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
