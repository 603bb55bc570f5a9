"""Run a private real Torque on this host: trqauthd, pbs_server, pbs_sched and N pbs_moms.

`python3 dev.py torque start|stop|status` and the real-Torque test tier (`tests/torque/`) use it.
Only the standard library is used.

What `start` changes on the machine, and `stop` undoes:
- `/etc/hosts`: one `127.0.0.1 ALIAS` line per mom (and per cloud node a test turns into a mom),
  each marked `# phorque-torque`; `stop` removes exactly the marked lines.
- the ports Torque uses: 15001 (pbs_server), 15004 (pbs_sched), 15005 (trqauthd), two per
  base mom from 30002 on, and 15002/15003 for the one mom a test starts for a cloud node;
  so one private Torque runs on a host at a time.
- `/tmp/trqauthd-unix`: trqauthd's socket (Torque's compiled-in default, as on a real site);
  removed on `stop`.
- a user `torquejobs` (jobs must be submitted by a user that is not root), created when missing
  and removed on `stop` if `start` created it.
The server home is the build's own spool (compiled into the binaries), reset from a pristine
copy at every start; nothing of a site's `/var/spool/torque` is touched.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torquebed.build import Build, BuildError, locate

HOSTS = Path("/etc/hosts")
HOSTS_MARK = "# phorque-torque"
SOCKET = Path("/tmp/trqauthd-unix")
USER = "torquejobs"
FIRST_MOM_PORT = 30002
DEFAULT_MOM_PORT = 15002
SERVER_PORT = 15001


class ClusterError(Exception):
    """Starting, using or stopping the private Torque failed."""


@dataclass
class Proc:
    role: str
    pid: int
    argv: list[str]


@dataclass
class RunState:
    hostname: str
    procs: list[Proc] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    moms: dict[str, int] = field(default_factory=dict)  # alias -> service port
    created_user: bool = False


def _wait(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


def _cmdline(pid: int) -> list[str]:
    try:
        return [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0") if a]
    except OSError:
        return []


@dataclass
class Cluster:
    """A private Torque built by `torquebed.build`; `state` is None while it is not running."""

    build: Build
    state: RunState | None = None

    # -- paths and environment -------------------------------------------------------------
    @property
    def run_file(self) -> Path:
        return self.build.root / "run.json"

    @property
    def home(self) -> Path:
        return self.build.spool

    @property
    def server_priv(self) -> Path:
        return self.home / "server_priv"

    @property
    def hostname(self) -> str:
        return self.state.hostname if self.state else socket.gethostname()

    def env(self) -> dict[str, str]:
        """The environment in which Torque's commands of this build are found first."""
        path = f"{self.build.bin}{os.pathsep}{self.build.sbin}{os.pathsep}{os.environ.get('PATH', '')}"
        env = dict(os.environ, PATH=path)
        env.pop("PBS_DEFAULT", None)
        env.pop("PBS_SERVER", None)
        return env

    def cmd(self, name: str) -> str:
        for folder in (self.build.bin, self.build.sbin):
            if (folder / name).is_file():
                return str(folder / name)
        raise ClusterError(f"{name} is not in {self.build.prefix}")

    def run(self, name: str, *args: str, timeout: float = 60, user: str | None = None,
            input: str | None = None, check: bool = False) -> subprocess.CompletedProcess:
        """Run one of Torque's commands, from an argument list with a timeout."""
        argv = [self.cmd(name), *args]
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        proc = subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=timeout,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL,
                              cwd="/tmp" if user else None, check=False)
        if check and proc.returncode:
            raise ClusterError(f"{name} {' '.join(args)}: exit {proc.returncode}: "
                               f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def qmgr(self, directive: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("qmgr", "-c", directive, check=check)

    def qsub(self, *args: str, script: str = "sleep 1\n", check: bool = True) -> str:
        """Submit a job as the jobs user; returns its id (`12.vm`)."""
        proc = self.run("qsub", *args, user=USER, input=script, check=check)
        return proc.stdout.strip()

    # -- the run state file ----------------------------------------------------------------
    @classmethod
    def find(cls) -> Cluster:
        build = locate()
        if build is None:
            raise ClusterError("Torque is not built: run python3 dev.py torque build")
        cluster = cls(build)
        cluster._load()
        return cluster

    def _load(self) -> None:
        if not self.run_file.is_file():
            self.state = None
            return
        raw = json.loads(self.run_file.read_text())
        raw["procs"] = [Proc(**p) for p in raw.get("procs", [])]
        self.state = RunState(**raw)

    def _save(self) -> None:
        assert self.state is not None
        tmp = self.run_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.state), indent=1))
        tmp.replace(self.run_file)

    def running(self) -> list[Proc]:
        """The recorded processes that are still alive and still run what was started."""
        if not self.state:
            return []
        return [p for p in self.state.procs
                if _alive(p.pid) and _cmdline(p.pid)[:1] == p.argv[:1]]

    # -- host aliases ----------------------------------------------------------------------
    def add_alias(self, alias: str) -> None:
        """Make `alias` resolve to 127.0.0.1 (an /etc/hosts line, removed on stop)."""
        assert self.state is not None
        if alias in self.state.aliases:
            return
        with HOSTS.open("a") as f:
            f.write(f"127.0.0.1 {alias} {HOSTS_MARK}\n")
        self.state.aliases.append(alias)
        self._save()

    @staticmethod
    def _remove_aliases() -> None:
        lines = HOSTS.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not line.rstrip().endswith(HOSTS_MARK)]
        if kept != lines:
            # Rewritten in place: /etc/hosts may be a bind mount that cannot be replaced.
            with HOSTS.open("w") as f:
                f.writelines(kept)

    # -- starting --------------------------------------------------------------------------
    def _spawn(self, role: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        assert self.state is not None
        log = (self.build.root / "logs")
        log.mkdir(exist_ok=True)
        out = (log / f"{role}.out").open("ab")
        proc = subprocess.Popen(argv, env=env or self.env(), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
        out.close()
        record = Proc(role, proc.pid, argv)
        self.state.procs.append(record)
        self._save()
        return record

    def _reset_spool(self) -> None:
        pristine = self.build.root / "spool.pristine"
        if not pristine.exists():
            shutil.copytree(self.home, pristine, symlinks=True)
        shutil.rmtree(self.home)
        shutil.copytree(pristine, self.home, symlinks=True)
        (self.home / "server_name").write_text(f"{self.hostname}\n")
        # Output files are copied back with cp (the mom and the submitter share this host).
        (self.home / "mom_priv" / "config").write_text(
            f"$pbsserver {self.hostname}\n$usecp *:/ /\n$logevent 255\n")

    def _ensure_user(self) -> bool:
        try:
            pwd.getpwnam(USER)
            return False
        except KeyError:
            pass
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True,
                       timeout=60, capture_output=True)
        return True

    def start(self, moms: int = 2, np: int = 2) -> None:
        if self.running():
            raise ClusterError(f"a private Torque is already running (pids "
                               f"{' '.join(str(p.pid) for p in self.running())}); stop it first")
        self._clear_leftovers()
        self.state = RunState(hostname=socket.gethostname())
        self._remove_aliases()
        self._save()
        try:
            self.state.created_user = self._ensure_user()
            self._save()
            self._reset_spool()
            self._spawn("trqauthd", [self.cmd("trqauthd"), "-F"])
            _wait(SOCKET.exists, 30, "trqauthd's socket")
            # -t create asks "continue y/(n)?" even on a fresh spool; -f answers it.
            self._spawn("pbs_server", [self.cmd("pbs_server"), "-F", "-f", "-t", "create"])
            _wait(lambda: self.qmgr("list server", check=False).returncode == 0, 60, "pbs_server")
            self._setup_server()
            for index in range(1, moms + 1):
                self.add_mom(f"torque-mom{index}", np=np)
            self._spawn("pbs_sched", [self.cmd("pbs_sched")], env=dict(self.env(), PBSDEBUG="1"))
            self.wait_nodes_free(list(self.state.moms), timeout=120)
        except BaseException:
            self.stop()
            raise

    def _clear_leftovers(self) -> None:
        """Clear what an earlier run of this build left behind when it was cut off before `stop`.

        Daemons running this build's own binaries are that run's (nothing else starts them), so
        they are stopped; trqauthd's socket with no trqauthd behind it is removed. A live socket
        of another trqauthd is a real Torque of this host, which is never touched."""
        prefix = f"{self.build.prefix}{os.sep}"
        leftovers = [p for p in _all_pids() if p.argv and p.argv[0].startswith(prefix)]
        if leftovers:
            print(f"torque: stopping {len(leftovers)} process(es) of this build left by an earlier run: "
                  + " ".join(f"{Path(p.argv[0]).name}[{p.pid}]" for p in leftovers))
            _terminate(leftovers)
        if SOCKET.exists() or SOCKET.is_symlink():
            if _socket_answers(SOCKET):
                raise ClusterError(f"{SOCKET} answers: another trqauthd runs on this host; "
                                   "stop it first")
            SOCKET.unlink()

    def _setup_server(self) -> None:
        """What Torque's own torque.setup does, for root on this host."""
        host = self.hostname
        for directive in (
            f"set server operators = root@{host}",
            f"set server managers = root@{host}",
            "set server scheduling = true",
            "set server keep_completed = 300",
            "set server mom_job_sync = true",
            "create queue batch",
            "set queue batch queue_type = execution",
            "set queue batch started = true",
            "set queue batch enabled = true",
            "set queue batch resources_default.walltime = 1:00:00",
            "set queue batch resources_default.nodes = 1",
            "set server default_queue = batch",
        ):
            self.qmgr(directive)

    def _next_port(self) -> int:
        assert self.state is not None
        used = set(self.state.moms.values())
        port = FIRST_MOM_PORT
        while port in used:
            port += 2
        return port

    def add_mom(self, alias: str, np: int = 2, create_node: bool = True) -> int:
        """Start a pbs_mom for `alias` on this host (multi-mom); create its node unless it exists.

        A node is created with its mom's own ports. A node created by someone else (Phorque, for
        a cloud instance) has Torque's default ports, and pbs_server only reaches a mom at the
        ports a node was created with (setting them later is not enough): its mom takes the
        default ports 15002/15003, so one such node at a time has a mom on this host."""
        assert self.state is not None
        self.add_alias(alias)
        if create_node:
            port = self._next_port()
        else:
            port = DEFAULT_MOM_PORT
            if port in self.state.moms.values():
                raise ClusterError(f"a mom already runs on the default ports; {alias} gets none")
        self.state.moms[alias] = port
        self._save()
        if create_node:
            self.qmgr(f"create node {alias} np={np},mom_service_port={port},mom_manager_port={port + 1}")
        self._spawn(f"pbs_mom-{alias}", [self.cmd("pbs_mom"), "-F", "-m", "-M", str(port),
                                         "-R", str(port + 1), "-A", alias])
        return port

    def stop_mom(self, alias: str) -> None:
        assert self.state is not None
        for proc in [p for p in self.state.procs if p.role == f"pbs_mom-{alias}"]:
            _terminate([proc])
            self.state.procs.remove(proc)
        self.state.moms.pop(alias, None)
        self._save()

    def node_states(self) -> dict[str, str]:
        """Node name -> state, from `pbsnodes -x`."""
        import xml.etree.ElementTree as ET  # noqa: PLC0415 - only the status needs it

        proc = self.run("pbsnodes", "-x")
        if proc.returncode or not proc.stdout.strip():
            return {}
        root = ET.fromstring(proc.stdout)
        return {n.findtext("name", ""): n.findtext("state", "") for n in root.iter("Node")}

    def wait_nodes_free(self, names: list[str], timeout: float = 120) -> None:
        _wait(lambda: all(self.node_states().get(n) == "free" for n in names), timeout,
              f"nodes {' '.join(names)} to be free", interval=0.5)

    # -- stopping --------------------------------------------------------------------------
    def stop(self) -> list[Proc]:
        """Stop exactly the processes `start` (and `add_mom`) started, and undo what it changed."""
        self._load() if self.state is None else None
        stopped: list[Proc] = []
        if self.state:
            alive = self.running()
            # The moms first (their jobs end with them), the server last but for trqauthd.
            order = {"pbs_sched": 1, "pbs_server": 2, "trqauthd": 3}
            alive.sort(key=lambda p: order.get(p.role, 0))
            for group in (0, 1, 2, 3):
                _terminate([p for p in alive if order.get(p.role, 0) == group])
            stopped = alive
            if self.state.created_user:
                subprocess.run(["userdel", "--remove", USER], timeout=60, capture_output=True, check=False)
        self._remove_aliases()
        if SOCKET.exists() and not any(_cmdline(p.pid)[:1] == [self.cmd("trqauthd")]
                                       for p in _all_pids()):
            SOCKET.unlink()
        self.run_file.unlink(missing_ok=True)
        self.state = None
        return stopped

    def status(self) -> str:
        if not self.state or not self.running():
            return "not running"
        lines = [f"running on {self.hostname}, server home {self.home}"]
        for proc in self.running():
            lines.append(f"  {proc.role:<24} pid {proc.pid}")
        for name, state in sorted(self.node_states().items()):
            lines.append(f"  node {name:<20} {state}")
        return "\n".join(lines)


def _socket_answers(path: Path) -> bool:
    """Whether a process accepts connections on the Unix socket at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _all_pids() -> list[Proc]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            out.append(Proc("", int(entry.name), _cmdline(int(entry.name))))
    return out


def _terminate(procs: list[Proc], grace: float = 20) -> None:
    for proc in procs:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while any(_alive(p.pid) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in procs:
        if _alive(proc.pid):
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for proc in procs:
        try:
            os.waitpid(proc.pid, os.WNOHANG)
        except ChildProcessError:
            pass


def main(argv: list[str]) -> int:
    """`dev.py torque start [--moms N] [--np N] | stop | status`."""
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="dev.py torque")
    sub = parser.add_subparsers(dest="action", required=True)
    start = sub.add_parser("start", help="start trqauthd, pbs_server, pbs_sched and the moms")
    start.add_argument("--moms", type=int, default=2, help="how many pbs_moms (default 2)")
    start.add_argument("--np", type=int, default=2, help="cores per mom node (default 2)")
    sub.add_parser("stop", help="stop what start started and undo its changes")
    sub.add_parser("status", help="what runs, and the nodes' states")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            cluster = Cluster.find()
            cluster.start(moms=args.moms, np=args.np)
            print(cluster.status())
            print(f"commands: {cluster.build.bin}; submit jobs as {USER} "
                  f"(runuser -u {USER} -- {cluster.build.bin}/qsub ...)")
        elif args.action == "stop":
            stopped = Cluster.find().stop()
            print(f"stopped {len(stopped)} process(es)" + "".join(f"\n  {p.role} pid {p.pid}" for p in stopped))
        else:
            print(Cluster.find().status())
    except (ClusterError, BuildError) as exc:
        print(f"torque: {exc}")
        return 1
    return 0
