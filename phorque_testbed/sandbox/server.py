"""The sandbox server: the process that plays pbs_server for one sandbox cluster.

While it runs it holds an exclusive lock on ``sandbox/server.lock`` (one server per cluster) and
listens on ``sandbox/server.sock``, where the Torque commands send their requests
(:mod:`phorque_testbed.sandbox.wire`). It answers them one at a time, each after catching the cluster up
to now, and between requests it ticks every ``tick`` seconds: jobs end, boot delays pass,
completed jobs are purged, queued jobs start, so that accounting records and job files appear
when their moment comes even when nobody asks. In cloud boot mode a helper thread asks EC2,
every ``cloud_poll`` seconds, which nodes' instances exist.

Stopped, nothing answers: commands fail as Torque clients do when pbs_server is down. Started
again, jobs that ran out of time meanwhile end at their own times, but nothing new starts before
the server is back.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

from phorque_testbed.sandbox import dispatch, store
from phorque_testbed.sandbox.engine import Engine
from phorque_testbed.sandbox.layout import Layout
from phorque_testbed.sandbox.store import Session
from phorque_testbed.sandbox.wire import SOCKET_NAME

log = logging.getLogger("phorque.sandbox.server")

TICK = 0.1
REQUEST_TIMEOUT = 10.0
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class AlreadyRunning(Exception):
    """Another server process serves this cluster."""


def server_running(layout: Layout) -> bool:
    """True while a server process holds the cluster's server lock."""
    try:
        fd = os.open(layout.server_lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class CloudPoller(threading.Thread):
    """Lists EC2 instances in the background, so that a slow endpoint never delays a request."""

    def __init__(self, results: queue.Queue):
        super().__init__(name="cloud-poller", daemon=True)
        self.results = results
        self.target: tuple[str, str, float] | None = None  # endpoint, region, interval
        self.stopping = threading.Event()

    def run(self) -> None:
        link = None
        key = None
        while not self.stopping.is_set():
            target = self.target
            if target is None:
                self.stopping.wait(0.2)
                continue
            endpoint, region, interval = target
            try:
                if link is None or key != (endpoint, region):
                    from phorque_testbed.sandbox.cloud import CloudLink  # boto3: only in the server
                    link, key = CloudLink(endpoint, region), (endpoint, region)
                self.results.put(link.survey())
            except Exception as exc:  # the endpoint is away: nodes stay as they are
                log.warning("cannot list instances at %s: %s", endpoint, exc)
            self.stopping.wait(interval)


class Server:
    """The request loop and the ticks of one cluster."""

    def __init__(self, layout: Layout, tick: float = TICK):
        self.layout = layout
        self.tick = tick
        self.stopping = False
        self._lock_fd = -1
        self._cloud_results: queue.Queue = queue.Queue()
        self._poller: CloudPoller | None = None

    def acquire(self) -> None:
        fd = os.open(self.layout.server_lock, os.O_RDWR | os.O_CREAT, 0o644)
        # `status` checking whether the server is up holds a shared lock for a moment, so a
        # failed attempt is retried for a while before another server is assumed.
        for _attempt in range(50):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.02)
        else:
            os.close(fd)
            raise AlreadyRunning(f"a sandbox server already serves {self.layout.root}")
        os.ftruncate(fd, 0)  # the pid is written once the server answers (announce)
        self._lock_fd = fd

    def announce(self) -> None:
        os.write(self._lock_fd, f"{os.getpid()}\n".encode())

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT."""
        self.acquire()
        listener = None
        try:
            store.keep_open(self.layout)
            listener = self._listen()
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            with Session(self.layout) as session:
                engine = Engine(session)
                engine.advance(time.time(), schedule=False)  # what happened while it was down
                engine.mark_dirty()
            self.announce()
            log.info("serving %s (pid %d)", self.layout.root, os.getpid())
            next_tick = 0.0
            while not self.stopping:
                wait = next_tick - time.monotonic()
                if wait <= 0:
                    self.step()
                    next_tick = time.monotonic() + self.tick
                    continue
                listener.settimeout(wait)
                try:
                    conn, _ = listener.accept()
                except (TimeoutError, InterruptedError):
                    continue
                self.serve(conn)
        finally:
            if listener is not None:
                listener.close()
                try:
                    os.unlink(os.path.join(self.layout.state_dir, SOCKET_NAME))
                except FileNotFoundError:
                    pass
            if self._poller is not None:
                self._poller.stopping.set()
            store.close_kept()
            os.close(self._lock_fd)  # closing the descriptor drops the lock
            log.info("stopped")

    def _listen(self) -> socket.socket:
        # Bound by a relative name: a socket path may not exceed 107 bytes, a folder may.
        os.chdir(self.layout.state_dir)
        try:
            os.unlink(SOCKET_NAME)  # left by a server that was killed
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(SOCKET_NAME)
        os.chmod(SOCKET_NAME, 0o600)
        listener.listen(1024)
        return listener

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def serve(self, conn: socket.socket) -> None:
        """Answer one command; a broken client is logged and forgotten."""
        try:
            conn.settimeout(REQUEST_TIMEOUT)
            chunks = []
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                chunks.append(data)
            if chunks:  # a connection that sends nothing asks nothing
                conn.sendall(dispatch.handle(self.layout, b"".join(chunks)))
        except OSError as exc:
            log.warning("a command went away: %s", exc)
        finally:
            conn.close()

    def step(self) -> None:
        """One tick; a failure is logged and the next tick tries again."""
        try:
            with Session(self.layout) as session:
                engine = Engine(session)
                now = engine.advance(time.time())
                settings = session.settings()
                cloud = settings["boot_mode"] == "cloud" and settings["cloud_endpoint"]
                self._follow_cloud(engine, now, settings if cloud else None)
        except Exception:
            log.exception("tick failed")

    def _follow_cloud(self, engine: Engine, now: float, settings: dict[str, str] | None) -> None:
        if settings is None:
            if self._poller is not None:
                self._poller.target = None
            return
        if self._poller is None:
            self._poller = CloudPoller(self._cloud_results)
            self._poller.start()
        self._poller.target = (settings["cloud_endpoint"], settings["cloud_region"],
                               float(settings["cloud_poll"]))
        answer = None
        while not self._cloud_results.empty():
            answer = self._cloud_results.get_nowait()  # only the newest answer matters
        if answer is None:
            return
        launched, memory = answer
        from phorque_testbed.sandbox.cloud import moms_up
        from phorque_testbed.sandbox.nodeadmin import remember_cloud_names
        remember_cloud_names(engine, set(launched))  # the cloud's DNS: these names resolve
        names = [r[0] for r in engine.db.execute("SELECT name FROM nodes WHERE boot = 'cloud'")]
        for name in names:  # its mom reports the memory of the machine it runs on
            if memory.get(name):
                engine.db.execute("UPDATE nodes SET mem_kb = ? WHERE name = ?",
                                  (memory[name] * 1024, name))
        boot = engine.real(engine.session.get_float("boot_delay"))
        for name, up in moms_up(names, launched, now, boot).items():
            row = engine.db.execute("SELECT up FROM nodes WHERE name = ?", (name,)).fetchone()
            if bool(row["up"]) != up:
                log.info("node %s: pbs_mom %s", name, "up" if up else "down")
                engine.mom_state(name, up, now)
        engine.schedule(now)


def server_pid(layout: Layout) -> int | None:
    """The pid of the running server once it answers commands; None before, or when it is not
    running."""
    if not server_running(layout):
        return None
    try:
        with open(layout.server_lock, encoding="utf-8") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def start(layout: Layout) -> int:
    """Start the server in the background; returns its pid once it answers."""
    if server_running(layout):
        raise AlreadyRunning(f"a sandbox server already serves {layout.root}")
    log_file = open(layout.server_log, "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "phorque_testbed.sandbox.server", layout.root],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, cwd=layout.state_dir,
            start_new_session=True, close_fds=True)
    finally:
        log_file.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server_pid(layout) is not None:
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
    """``python -m phorque_testbed.sandbox.server DIR``: serve in the foreground."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m phorque_testbed.sandbox.server DIR", file=sys.stderr)
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
