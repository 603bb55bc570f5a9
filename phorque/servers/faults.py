"""A fault-injecting HTTP proxy in front of a standard-dialect server (moto).

Requests are forwarded unchanged; the controls of :mod:`.faultctl` (``/_faults``) make chosen
requests slow, dropped, failed or throttled, and can show chosen instances as pending forever
(in DescribeInstances, DescribeAutoScalingGroups and DescribeAutoScalingInstances replies).

    python -m phorque.servers.faults --upstream http://127.0.0.1:5000 [--port N]

prints one JSON line ``{"port": N, "upstream": ..., "url": ...}`` once it listens.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from phorque.servers.faultctl import PASS, FaultState, Reply, Rule, control, error_reply, inject
from phorque.servers.httpserve import RunningServer, run_until_signalled, serve

log = logging.getLogger(__name__)

_SKIP_REQUEST = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}
_SKIP_REPLY = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}
_ASG_ACTIONS = ("DescribeAutoScalingGroups", "DescribeAutoScalingInstances")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(elem: ET.Element, name: str) -> ET.Element | None:
    for child in elem:
        if _local(child.tag) == name:
            return child
    return None


def instance_ids(body: bytes) -> list[str]:
    """Every instance id in an Auto Scaling or EC2 reply."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return []
    return [e.text.strip() for e in root.iter()
            if _local(e.tag) in ("InstanceId", "instanceId") and e.text and e.text.strip()]


def make_pending(action: str, body: bytes, stuck: Any) -> bytes:
    """Rewrite a reply so instances for which ``stuck(id)`` holds look pending."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return body
    changed = False
    for elem in root.iter():
        if action in _ASG_ACTIONS:
            iid, life = _child(elem, "InstanceId"), _child(elem, "LifecycleState")
            if iid is not None and life is not None and stuck((iid.text or "").strip()):
                if life.text == "InService":
                    life.text, changed = "Pending", True
        elif action == "DescribeInstances":
            iid, state = _child(elem, "instanceId"), _child(elem, "instanceState")
            if iid is not None and state is not None and stuck((iid.text or "").strip()):
                code, name = _child(state, "code"), _child(state, "name")
                if name is not None and name.text == "running":
                    name.text, changed = "pending", True
                    if code is not None:
                        code.text = "0"
                    for key in ("dnsName", "ipAddress"):
                        node = _child(elem, key)
                        if node is not None:
                            node.text = ""
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) if changed else body


def _error_style(environ: dict[str, Any]) -> str:
    """EC2 and Auto Scaling write errors differently; the signing scope says which is asked."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    return "ec2" if "/ec2/" in auth else "query"


class FaultProxy:
    """The WSGI app: forward to ``upstream`` unless a fault says otherwise."""

    def __init__(self, upstream: str, faults: FaultState | None = None, timeout: float = 60.0):
        split = urlsplit(upstream)
        if split.scheme != "http" or not split.hostname:
            raise ValueError(f"upstream {upstream!r}: an http://host:port URL is needed")
        self.upstream = upstream
        self.host, self.port = split.hostname, split.port or 80
        self.faults = faults or FaultState()
        self.timeout = timeout

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        reply = control(environ, self.faults) or self._proxy(environ)
        if reply is None:
            return []
        status, headers, body = reply
        start_response(status, headers)
        return [body]

    def _proxy(self, environ: dict[str, Any]) -> Reply | None:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        if "form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = params.get("Action", "")
        self.faults.count(action)
        style = _error_style(environ)

        def render(rule: Rule) -> Reply:
            return error_reply(style, rule.status, rule.code, rule.message)

        injected = inject(environ, self.faults, action, "before", render)
        if injected is not PASS:
            return injected
        status, headers, data = self._forward(environ, body)
        self.faults.observe(instance_ids(data))
        if self.faults.any_stuck and action in (*_ASG_ACTIONS, "DescribeInstances"):
            data = make_pending(action, data, self.faults.is_stuck)
        injected = inject(environ, self.faults, action, "after", render)
        return (status, headers, data) if injected is PASS else injected

    def _forward(self, environ: dict[str, Any], body: bytes) -> Reply:
        path = environ.get("PATH_INFO", "/")
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        headers = {"Content-Type": environ.get("CONTENT_TYPE", "")} if environ.get("CONTENT_TYPE") else {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                name = key[5:].replace("_", "-").title()
                if name.lower() not in _SKIP_REQUEST:
                    headers[name] = value
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(environ["REQUEST_METHOD"], path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _SKIP_REPLY]
            return f"{resp.status} {resp.reason}", out, data
        except OSError as exc:
            log.warning("fault proxy: upstream %s failed: %s", self.upstream, exc)
            return error_reply(_error_style(environ), 502, "BadGateway", f"upstream: {exc}")
        finally:
            conn.close()


def start(upstream: str, host: str = "127.0.0.1", port: int = 0) -> tuple[RunningServer, FaultProxy]:
    """Start a proxy to ``upstream`` in this process; returns the server and the app."""
    app = FaultProxy(upstream)
    return serve(app, host, port), app


def main(argv: list[str] | None = None) -> int:
    """``python -m phorque.servers.faults``: serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m phorque.servers.faults",
                                     description="Fault-injecting proxy in front of a moto server.")
    parser.add_argument("--upstream", required=True, help="the server to forward to (http://host:port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        running, _ = start(args.upstream, args.host, args.port)
    except (ValueError, OSError) as exc:
        print(f"fault proxy: {exc}", file=sys.stderr)
        return 2
    return run_until_signalled([running], {"port": running.port, "url": running.url,
                                           "upstream": args.upstream, "control": running.url + "/_faults"})


if __name__ == "__main__":
    sys.exit(main())
