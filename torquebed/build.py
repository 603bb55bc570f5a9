"""Build a real Torque 6.1.3 from its source tarball into a cache folder outside the work tree.

`python3 dev.py torque build` calls `build()`. Only the standard library is used: this runs before
any virtual environment exists. The build is keyed by the tarball's digest and the patches, so a
second call finds it and returns at once; a different tarball or patch set builds anew beside it.

What the build changes on the machine: the Debian packages in `BUILD_PACKAGES` are installed with
apt when missing. `make install` also writes init scripts, an `ld.so.conf.d` entry and
`profile.d` scripts outside the prefix whatever the prefix; none is needed (the binaries carry a
RUNPATH into the prefix), so the files it created are removed again right after the install.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATCHES = Path(__file__).resolve().parent / "patches"
DEFAULT_SOURCE = ROOT.parent / "shared" / "vendor" / "torque-6.1.3.tar.gz"

# What Torque's build needs on Debian 12 (hwloc and tcl are configured out).
BUILD_PACKAGES = (
    "autoconf", "automake", "libtool", "libtool-bin", "autoconf2.69", "flex", "bison",
    "libboost-dev", "libncurses-dev", "libxml2-dev", "libssl-dev", "pkg-config", "g++", "make",
    "patch",
)

# Debian 12's autoconf 2.71 generates a configure that fails ("TORQUE needs pthreads"); 2.69 works.
AUTOTOOLS_ENV = {"AUTOCONF": "autoconf2.69", "AUTOHEADER": "autoheader2.69", "AUTOM4TE": "autom4te2.69"}

# g++ 12 defaults to C++17, which Torque predates; its .c files are compiled with g++, and configure
# overwrites CFLAGS, so -fpermissive is passed to make rather than to configure.
CXXFLAGS = "-g -O1 -std=gnu++11"
MAKE_CFLAGS = "-g -O1 -std=gnu++11 -fpermissive"

# Files `make install` writes outside the prefix.
OUTSIDE_PREFIX = (
    "/etc/init.d/pbs_server", "/etc/init.d/pbs_mom", "/etc/init.d/trqauthd", "/etc/init.d/pbs_sched",
    "/etc/ld.so.conf.d/torque.conf", "/etc/profile.d/torque.sh", "/etc/profile.d/torque.csh",
)

# Bump when a build step changes in a way that needs a new build.
RECIPE = "1"


class BuildError(Exception):
    """A build step failed; the message names the step and its log."""


@dataclass(frozen=True)
class Build:
    """Where one build lives. `spool` is Torque's server home, compiled into the binaries."""

    root: Path

    @property
    def prefix(self) -> Path:
        return self.root / "install"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def bin(self) -> Path:
        return self.prefix / "bin"

    @property
    def sbin(self) -> Path:
        return self.prefix / "sbin"

    @property
    def stamp(self) -> Path:
        return self.root / "built.json"

    @property
    def log(self) -> Path:
        return self.root / "build.log"

    def is_built(self) -> bool:
        return self.stamp.is_file() and (self.sbin / "pbs_server").is_file()

    def info(self) -> dict:
        return json.loads(self.stamp.read_text()) if self.stamp.is_file() else {}


def find_source() -> Path | None:
    """The tarball: `$PHORQUE_TORQUE_SOURCE`, else the shared vendor copy; None when neither is there."""
    named = os.environ.get("PHORQUE_TORQUE_SOURCE")
    path = Path(named) if named else DEFAULT_SOURCE
    return path if path.is_file() else None


def cache_root() -> Path:
    """`$PHORQUE_TORQUE_CACHE`, else `/var/cache/phorque/torque` for root, else
    `$XDG_CACHE_HOME/phorque/torque` (`~/.cache/...`).

    Outside the work tree on purpose: never in git, and a fresh clone on the same machine (CI)
    reuses the build instead of spending a quarter of an hour on it again. Not under root's home:
    the jobs user must be able to run the client commands, and the paths are compiled in."""
    named = os.environ.get("PHORQUE_TORQUE_CACHE")
    if named:
        return Path(named)
    if os.geteuid() == 0:
        return Path("/var/cache/phorque/torque")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "phorque" / "torque"


def build_key(source: Path) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    for patch in sorted(PATCHES.glob("*.patch")):
        digest.update(patch.name.encode() + patch.read_bytes())
    digest.update(RECIPE.encode())
    return digest.hexdigest()[:16]


def locate(source: Path | None = None) -> Build | None:
    """The finished build for this source, or None."""
    source = source or find_source()
    if source is None:
        return None
    build = Build(cache_root() / build_key(source))
    return build if build.is_built() else None


def _say(message: str) -> None:
    print(f"torque: {message}", flush=True)


def _step(argv: list[str], *, cwd: Path, log: Path, env: dict | None = None, timeout: float = 1800) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        try:
            proc = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BuildError(f"{argv[0]} did not finish in {timeout:.0f} s (log: {log})") from exc
    if proc.returncode:
        raise BuildError(f"{' '.join(argv[:3])} failed with exit status {proc.returncode} (log: {log})")


def missing_packages() -> list[str]:
    missing = []
    for name in BUILD_PACKAGES:
        try:
            out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True,
                                 text=True, timeout=60, check=False)
        except FileNotFoundError as exc:
            raise BuildError("dpkg-query not found: the build needs a Debian system") from exc
        if "install ok installed" not in out.stdout:
            missing.append(name)
    return missing


def install_packages(log: Path) -> None:
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise BuildError(f"missing Debian packages {' '.join(missing)}; install them as root "
                         f"(apt-get install {' '.join(missing)})")
    _say(f"installing {' '.join(missing)} with apt")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _step(["apt-get", "update", "-q"], cwd=Path("/"), log=log, env=env, timeout=900)
    _step(["apt-get", "install", "-y", "-q", *missing], cwd=Path("/"), log=log, env=env, timeout=1800)


def _unpack(source: Path, into: Path) -> Path:
    with tarfile.open(source) as tar:
        tar.extractall(into, filter="tar")
    tops = [p for p in into.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise BuildError(f"{source} does not unpack to one folder")
    return tops[0]


def build(source: Path | None = None, *, jobs: int = 2) -> Build:
    """Build Torque unless this source's build is already in the cache; return where it is."""
    source = source or find_source()
    if source is None:
        raise BuildError(f"no Torque source: set PHORQUE_TORQUE_SOURCE or provide {DEFAULT_SOURCE}")
    target = Build(cache_root() / build_key(source))
    if target.is_built():
        _say(f"reusing the build in {target.root}")
        return target
    if target.root.exists():
        shutil.rmtree(target.root)
    target.root.mkdir(parents=True)
    log = target.log
    install_packages(log)
    hostname = socket.gethostname()
    with tempfile.TemporaryDirectory(prefix="src-", dir=target.root) as scratch:
        _say(f"unpacking {source.name}")
        src = _unpack(source, Path(scratch))
        for patch in sorted(PATCHES.glob("*.patch")):
            _say(f"applying {patch.name}")
            _step(["patch", "-p1", "-i", str(patch)], cwd=src, log=log, timeout=60)
        env = dict(os.environ, **AUTOTOOLS_ENV)
        (src / "m4").mkdir(exist_ok=True)
        _say("generating configure with autoconf 2.69")
        for argv in (["libtoolize", "-c", "-f"], ["aclocal"], ["autoconf2.69", "-f"],
                     ["autoheader2.69", "-f"], ["automake", "-a", "-c", "-f"]):
            _step(argv, cwd=src, log=log, env=env, timeout=600)
        _say("configuring")
        _step(["./configure", f"--prefix={target.prefix}", f"--with-server-home={target.spool}",
               f"--with-default-server={hostname}", "--disable-gui", "--disable-spool",
               "--without-tcl", "--disable-syslog", "--disable-drmaa", "--disable-gcc-warnings",
               f"CXXFLAGS={CXXFLAGS}"], cwd=src, log=log, env=env, timeout=900)
        _say(f"compiling with make -j{jobs} (10 to 20 minutes on two cores; log: {log})")
        _step(["make", f"-j{jobs}", f"CFLAGS={MAKE_CFLAGS}"], cwd=src, log=log, env=env, timeout=5400)
        before = {p for p in OUTSIDE_PREFIX if os.path.lexists(p)}
        _say("installing into the cache")
        _step(["make", "install"], cwd=src, log=log, env=env, timeout=900)
        _remove_outside_prefix(before, log)
    target.stamp.write_text(json.dumps({"source": str(source), "hostname": hostname,
                                        "prefix": str(target.prefix), "spool": str(target.spool)}))
    _say(f"built into {target.root}")
    return target


def _remove_outside_prefix(existed_before: set[str], log: Path) -> None:
    removed = []
    for path in OUTSIDE_PREFIX:
        if path not in existed_before and os.path.lexists(path):
            os.unlink(path)
            removed.append(path)
    if "/etc/ld.so.conf.d/torque.conf" in removed and shutil.which("ldconfig"):
        _step(["ldconfig"], cwd=Path("/"), log=log, timeout=120)
    if removed:
        _say(f"removed what make install wrote outside the prefix: {' '.join(removed)}")


if __name__ == "__main__":
    try:
        build()
    except BuildError as exc:
        print(f"torque: {exc}", file=sys.stderr)
        sys.exit(1)
