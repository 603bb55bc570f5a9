"""The sandbox server: the process that makes time pass for a sandbox cluster.

While it runs it holds an exclusive lock on ``sandbox/server.lock`` (that is what "pbs_server is
up" means to the commands) and ticks every ``tick`` seconds: each tick catches the cluster up to
now (jobs end, boot delays pass, completed jobs are purged, queued jobs start). In cloud boot
mode it also asks EC2, every ``cloud_poll`` seconds, which nodes' instances exist.

When it starts after a pause, jobs that ran out of time meanwhile end at their own times, but
nothing new starts before the server is back, as with a pbs_server that was down.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time

from phorque.sandbox.client import server_running
from phorque.sandbox.engine import Engine
from phorque.sandbox.layout import Layout
from phorque.sandbox.store import Session, connect

log = logging.getLogger("phorque.sandbox.server")

TICK = 0.1
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class AlreadyRunning(Exception):
    """Another server process serves this cluster."""


class Server:
    """The tick loop of one cluster."""

    def __init__(self, layout: Layout, tick: float = TICK):
        self.layout = layout
        self.tick = tick
        self.stopping = False
        self._lock_fd = -1
        self._cloud = None
        self._cloud_key: tuple[str, str] | None = None
        self._next_poll = 0.0

    def acquire(self) -> None:
        fd = os.open(self.layout.server_lock, os.O_RDWR | os.O_CREAT, 0o644)
        # A command checking whether the server is up holds a shared lock for a moment, so
        # a failed attempt is retried for a while before another server is assumed.
        for _attempt in range(50):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.02)
        else:
            os.close(fd)
            raise AlreadyRunning(f"a sandbox server already serves {self.layout.root}")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor drops the lock
            self._lock_fd = -1

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT."""
        self.acquire()
        # An idle connection held open for the server's life: the commands' connections are
        # then never the last one, whose closing would checkpoint the WAL.
        keepalive = connect(self.layout)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            with Session(self.layout) as session:
                engine = Engine(session)
                engine.advance(time.time(), schedule=False)
                engine.mark_dirty()
            log.info("serving %s (pid %d)", self.layout.root, os.getpid())
            while not self.stopping:
                self.step()
                time.sleep(self.tick)
        finally:
            keepalive.close()
            self.release()
            log.info("stopped")

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def step(self) -> None:
        """One tick; a failure is logged and the next tick tries again."""
        try:
            with Session(self.layout) as session:
                engine = Engine(session)
                engine.advance(time.time())
                settings = dict(session.settings())
            if settings["boot_mode"] == "cloud" and settings["cloud_endpoint"]:
                self._poll_cloud(settings)
        except Exception:
            log.exception("tick failed")

    def _poll_cloud(self, settings: dict[str, str]) -> None:
        now = time.time()
        if now < self._next_poll:
            return
        self._next_poll = now + float(settings["cloud_poll"])
        key = (settings["cloud_endpoint"], settings["cloud_region"])
        if self._cloud is None or self._cloud_key != key:
            from phorque.sandbox.cloud import CloudLink  # boto3 only in the server
            self._cloud = CloudLink(*key)
            self._cloud_key = key
        try:
            launched = self._cloud.launch_times()
        except Exception as exc:  # the endpoint is away: nodes stay as they are
            log.warning("cannot list instances at %s: %s", key[0], exc)
            return
        from phorque.sandbox.cloud import moms_up
        with Session(self.layout) as session:
            engine = Engine(session)
            now = engine.advance(time.time())
            names = [r[0] for r in engine.db.execute("SELECT name FROM nodes WHERE boot = 'cloud'")]
            boot = engine.real(session.get_float("boot_delay"))
            changed = False
            for name, up in moms_up(names, launched, now, boot).items():
                row = engine.db.execute("SELECT up FROM nodes WHERE name = ?", (name,)).fetchone()
                if bool(row["up"]) != up:
                    log.info("node %s: pbs_mom %s", name, "up" if up else "down")
                    engine.mom_state(name, up, now)
                    changed = True
            if changed:
                engine.schedule(now)


def server_pid(layout: Layout) -> int | None:
    """The pid written by the running server, or None when it is not running."""
    if not server_running(layout):
        return None
    try:
        with open(layout.server_lock, encoding="utf-8") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def start(layout: Layout) -> int:
    """Start the server in the background; returns its pid once it serves."""
    if server_running(layout):
        raise AlreadyRunning(f"a sandbox server already serves {layout.root}")
    log_file = open(layout.server_log, "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "phorque.sandbox.server", layout.root],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            start_new_session=True, close_fds=True)
    finally:
        log_file.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server_running(layout):
            return proc.pid
        if proc.poll() is not None:
            raise RuntimeError(f"the sandbox server exited at once (status {proc.returncode});"
                               f" see {layout.server_log}")
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"the sandbox server did not start within {START_TIMEOUT:g} s")


def stop(layout: Layout) -> bool:
    """Stop the server; returns False when none was running."""
    pid = server_pid(layout)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not server_running(layout):
            return True
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    while server_running(layout):
        time.sleep(0.02)
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m phorque.sandbox.server DIR``: serve in the foreground."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m phorque.sandbox.server DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        Server(Layout(args[0])).run()
    except AlreadyRunning as exc:
        print(f"phorque-sandbox: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
