"""A small threaded HTTP/1.1 server for WSGI apps, able to drop a connection on purpose.

wsgiref cannot close a connection without answering, which is one of the failures the test
servers inject; this adapter gives the app ``environ['phorque.drop']`` to do exactly that.
Responses are buffered and sent with a Content-Length, so keep-alive works as botocore expects.
"""

from __future__ import annotations

import io
import json
import logging
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        dropped = False

        def drop() -> None:
            nonlocal dropped
            dropped = True
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command, "PATH_INFO": split.path or "/",
            "QUERY_STRING": split.query, "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "SERVER_NAME": self.server.server_address[0],
            "SERVER_PORT": str(self.server.server_address[1]),
            "SERVER_PROTOCOL": self.request_version, "REMOTE_ADDR": self.client_address[0],
            "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http", "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False, "phorque.drop": drop, "phorque.stopping": self.server.stopping,
        }
        for key, value in self.headers.items():
            if key.lower() in ("content-type", "content-length"):
                continue  # CONTENT_TYPE / CONTENT_LENGTH above, as WSGI says
            name = "HTTP_" + key.upper().replace("-", "_")
            environ[name] = f"{environ[name]},{value}" if name in environ else value
        reply: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            reply[:] = [status, headers]

        try:
            data = b"".join(self.server.app(environ, start_response))
        except Exception:  # the app's bug: answer 500 rather than hang the client
            log.exception("test server: the app failed on %s %s", self.command, self.path)
            reply[:] = ["500 Internal Server Error", [("Content-Type", "text/plain")]]
            data = b"internal error in the test server\n"
        if dropped:
            return
        status, headers = reply
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for key, value in headers:
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        log.debug("%s - %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    #: An AF_INET socket's name: the host is a str (socketserver's types also allow bytes).
    server_address: tuple[str, int]

    def __init__(self, address: tuple[str, int], app: WSGIApp):
        self.app = app
        self.stopping = threading.Event()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) while a reply was delayed: expected here, not a bug.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("test server: connection from %s ended: %s", client_address, exc)
            return
        super().handle_error(request, client_address)


@dataclass
class RunningServer:
    """A server running in a daemon thread; ``url`` is ``http://127.0.0.1:<port>``."""

    server: _Server
    thread: threading.Thread
    scheme: str = "http"

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"{self.scheme}://{self.server.server_address[0]}:{self.port}"

    def stop(self) -> None:
        """Stop serving and close the socket (delayed replies are cut short)."""
        self.server.stopping.set()  # wakes delayed replies
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server-side TLS context from a certificate and its key (PEM files)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    return context


def serve(app: WSGIApp, host: str = "127.0.0.1", port: int = 0,
          tls: ssl.SSLContext | None = None) -> RunningServer:
    """Start ``app`` on ``host:port`` (0 picks a free port) in a background thread.

    With ``tls`` it speaks HTTPS (as Phantom and Nimbus did), e.g. with a self-signed certificate.
    """
    server = _Server((host, port), app)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name=f"phorque-server-{server.server_address[1]}",
                              kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return RunningServer(server, thread, "https" if tls is not None else "http")


def run_until_signalled(servers: list[RunningServer], announce: dict[str, Any]) -> int:
    """Print ``announce`` as one JSON line, then serve until SIGTERM or SIGINT."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print(json.dumps(announce, sort_keys=True), flush=True)
    while not done.wait(0.5):
        pass
    for running in servers:
        running.stop()
    return 0
