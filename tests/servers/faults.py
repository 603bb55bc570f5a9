"""A fault-injecting HTTP proxy in front of a standard-dialect server (moto).

Requests are forwarded unchanged; the controls of :mod:`.faultctl` (``/_faults``) make chosen
requests slow, dropped, failed or throttled, and can show chosen instances as pending forever
(in DescribeInstances, DescribeAutoScalingGroups and DescribeAutoScalingInstances replies).

``extra`` takes ``no_capacity``: ``{"groups": ["g"], "message": "..."}`` (no ``groups``: every
group) makes those groups short of capacity as AWS is when no instance type of a group can be
had: a SetDesiredCapacity above the group's capacity is accepted but never reaches the service,
DescribeAutoScalingGroups shows the desired capacity asked for, and DescribeScalingActivities
answers with a failed launch whose StatusMessage says ``InsufficientInstanceCapacity`` (moto
itself always launches, and lists no activity). A lower capacity is passed on as usual.

    python -m tests.servers.faults --upstream http://127.0.0.1:5000 [--port N]

prints one JSON line ``{"port": N, "upstream": ..., "url": ...}`` once it listens.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.servers.faultctl import PASS, FaultState, Reply, Rule, control, error_reply, inject
from tests.servers.httpserve import RunningServer, run_until_signalled, serve

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


_ASG_NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
#: The words AWS writes in a failed launch of a mixed-instances group with no capacity.
NO_CAPACITY_MESSAGE = ("Could not launch On-Demand Instances. InsufficientInstanceCapacity - We "
                       "currently do not have sufficient capacity for any of the requested instance "
                       "types in the Availability Zone you requested. Our system will be working on "
                       "provisioning additional capacity. Launching EC2 instance failed.")


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


@dataclass
class Shortage:
    """Groups that get no new instance: what each was asked for beyond what the service has."""

    groups: frozenset[str]                                    # empty: every group
    message: str = NO_CAPACITY_MESSAGE
    real: dict[str, int] = field(default_factory=dict)        # the service's desired, as last read
    missing: dict[str, int] = field(default_factory=dict)     # asked for and never launched
    activities: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # newest first
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def parse(cls, doc: Any) -> Shortage:
        if not isinstance(doc, dict) or set(doc) - {"groups", "message"}:
            raise ValueError("no_capacity must be an object {\"groups\": [...], \"message\": \"...\"}")
        return cls(groups=frozenset(str(g) for g in doc.get("groups") or ()),
                   message=str(doc.get("message") or NO_CAPACITY_MESSAGE))

    def covers(self, group: str) -> bool:
        return not self.groups or group in self.groups

    def asked(self, group: str, desired: int) -> bool:
        """A SetDesiredCapacity: True when it is kept from the service (none of it can launch)."""
        with self.lock:
            real = self.real.get(group)
            if real is None or desired <= real:
                self.missing.pop(group, None)
                return False
            before = self.missing.get(group, 0)
            self.missing[group] = desired - real
            if desired - real > before:
                now = time.time()
                self.activities.setdefault(group, []).insert(0, {
                    "ActivityId": str(uuid.uuid4()), "AutoScalingGroupName": group,
                    "Description": f"Launching a new EC2 instance.  Status Reason: {self.message}",
                    "Cause": (f"At {_stamp(now)} an instance was started in response to a difference "
                              f"between desired and actual capacity, increasing the capacity from "
                              f"{real + before} to {desired}."),
                    "StartTime": _stamp(now), "EndTime": _stamp(now), "StatusCode": "Failed",
                    "StatusMessage": self.message, "Progress": "100"})
            return True

    def rewrite_groups(self, body: bytes) -> bytes:
        """A DescribeAutoScalingGroups reply with the desired capacity each group was asked for."""
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return body
        changed = False
        with self.lock:
            for elem in root.iter():
                name, desired = _child(elem, "AutoScalingGroupName"), _child(elem, "DesiredCapacity")
                if name is None or desired is None or not self.covers((name.text or "").strip()):
                    continue
                group = (name.text or "").strip()
                try:
                    self.real[group] = int((desired.text or "0").strip())
                except ValueError:
                    continue
                if self.missing.get(group):
                    desired.text, changed = str(self.real[group] + self.missing[group]), True
        return ET.tostring(root, encoding="utf-8", xml_declaration=True) if changed else body

    def activities_reply(self, group: str) -> Reply:
        """DescribeScalingActivities for ``group``, as Auto Scaling writes it."""
        from xml.sax.saxutils import escape

        with self.lock:
            listed = list(self.activities.get(group, []))
        members = "".join("<member>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in a.items())
                          + "</member>" for a in listed)
        body = (f"<DescribeScalingActivitiesResponse xmlns=\"{_ASG_NS}\"><DescribeScalingActivitiesResult>"
                f"<Activities>{members}</Activities></DescribeScalingActivitiesResult>"
                f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
                f"</DescribeScalingActivitiesResponse>").encode()
        return "200 OK", [("Content-Type", "text/xml")], body


def _accepted(action: str) -> Reply:
    """The empty success reply of an Auto Scaling action."""
    body = (f"<{action}Response xmlns=\"{_ASG_NS}\"><ResponseMetadata><RequestId>{uuid.uuid4()}"
            f"</RequestId></ResponseMetadata></{action}Response>").encode()
    return "200 OK", [("Content-Type", "text/xml")], body


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
        self.shortage: Shortage | None = None

    def _configure(self, extra: dict[str, Any]) -> None:
        """The proxy's own controls, from ``extra`` (none: every group launches as usual)."""
        doc = extra.get("no_capacity")
        self.shortage = None if doc is None else Shortage.parse(doc)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        reply = control(environ, self.faults, self._configure) or self._proxy(environ)
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
        shortage, group = self.shortage, params.get("AutoScalingGroupName", "")
        if shortage is not None and shortage.covers(group):
            if action == "DescribeScalingActivities" and group:
                return shortage.activities_reply(group)
            if action == "SetDesiredCapacity" and shortage.asked(group, int(params.get("DesiredCapacity") or 0)):
                return _accepted(action)
        status, headers, data = self._forward(environ, body)
        self.faults.observe(instance_ids(data))
        if self.faults.any_stuck and action in (*_ASG_ACTIONS, "DescribeInstances"):
            data = make_pending(action, data, self.faults.is_stuck)
        if shortage is not None and action == "DescribeAutoScalingGroups":
            data = shortage.rewrite_groups(data)
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
    """``python -m tests.servers.faults``: serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.servers.faults",
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
