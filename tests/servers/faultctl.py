"""Fault controls shared by the test servers: what to break, for which request, how often.

Faults are set through ``/_faults`` on the server itself (a path no real API uses):

    GET    /_faults   the rules in force, stuck ids and per-action request counts
    POST   /_faults   JSON replacing the controls, e.g.
                      {"rules": [{"kind": "throttle", "action": "SetDesiredCapacity", "times": 2}],
                       "stuck_pending": {"ids": ["i-1234"], "new": true}}
    DELETE /_faults   clear every fault and the counts

A rule has ``kind`` (``delay``: wait ``seconds``; ``drop``: close the connection without a reply;
``error``: answer ``status`` with ``code``/``message``; ``throttle``: a 400 ``Throttling``
error), ``action`` (an API action or ``*``), ``times`` (how many matching requests; null for
all) and ``phase``: ``before`` the request reaches the service, or ``after`` the service acted
(the reply is then delayed, dropped or replaced: a change that happened but was not confirmed).
``stuck_pending`` keeps the listed instance ids, and with ``new`` every instance first seen
after the control was set, pending forever.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("delay", "drop", "error", "throttle")
PHASES = ("before", "after")
CONTROL_PATH = "/_faults"
_DEFAULT_CODES = {400: "InvalidParameterValue", 403: "AccessDenied", 500: "InternalFailure",
                  502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}


class ControlError(ValueError):
    """A fault control document is malformed."""


@dataclass
class Rule:
    """One injected failure."""

    kind: str
    action: str = "*"
    times: int | None = None
    phase: str = "before"
    seconds: float = 0.0
    status: int = 500
    code: str = ""
    message: str = ""

    @classmethod
    def parse(cls, doc: Any) -> Rule:
        """A rule from its JSON object; :class:`ControlError` when malformed."""
        if not isinstance(doc, dict):
            raise ControlError(f"a rule must be an object, not {doc!r}")
        unknown = set(doc) - set(cls.__dataclass_fields__)
        if unknown:
            raise ControlError(f"unknown rule field(s): {', '.join(sorted(unknown))}")
        try:
            rule = cls(**doc)
        except TypeError as exc:
            raise ControlError(str(exc)) from None
        if rule.kind not in KINDS:
            raise ControlError(f"kind {rule.kind!r} is not one of {', '.join(KINDS)}")
        if rule.phase not in PHASES:
            raise ControlError(f"phase {rule.phase!r} is not one of {', '.join(PHASES)}")
        if rule.times is not None and (not isinstance(rule.times, int) or rule.times < 1):
            raise ControlError("times must be a positive integer or null")
        if rule.kind == "throttle":
            rule.status, rule.code = 400, rule.code or "Throttling"
            rule.message = rule.message or "Rate exceeded"
        if rule.kind == "error":
            rule.code = rule.code or _DEFAULT_CODES.get(rule.status, f"HTTP{rule.status}")
            rule.message = rule.message or "injected failure"
        return rule


@dataclass
class FaultState:
    """The controls in force; thread-safe, shared by every request of a server."""

    rules: list[Rule] = field(default_factory=list)
    stuck_ids: set[str] = field(default_factory=set)
    stuck_new: bool = False
    baseline: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def configure(self, doc: Any) -> None:
        """Replace the controls with those of a POSTed JSON document."""
        if not isinstance(doc, dict):
            raise ControlError("the control document must be a JSON object")
        unknown = set(doc) - {"rules", "stuck_pending", "reset_counts", "extra"}
        if unknown:
            raise ControlError(f"unknown control(s): {', '.join(sorted(unknown))}")
        rules = [Rule.parse(r) for r in doc.get("rules") or []]
        stuck = doc.get("stuck_pending") or {}
        if not isinstance(stuck, dict):
            raise ControlError("stuck_pending must be an object {\"ids\": [...], \"new\": bool}")
        with self._lock:
            self.rules = rules
            self.stuck_ids = {str(i) for i in stuck.get("ids") or []}
            self.stuck_new = bool(stuck.get("new"))
            self.baseline = set(self.seen)
            if doc.get("reset_counts"):
                self.counts.clear()
            self.extra = dict(doc.get("extra") or {})

    def clear(self) -> None:
        """Forget every fault and the request counts."""
        with self._lock:
            self.rules, self.stuck_ids, self.stuck_new = [], set(), False
            self.counts.clear()
            self.extra = {}

    def take(self, action: str, phase: str) -> Rule | None:
        """The first rule matching ``action`` in ``phase``, used up by one when counted."""
        with self._lock:
            for rule in self.rules:
                if rule.phase == phase and rule.action in ("*", action):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            self.rules.remove(rule)
                    return rule
        return None

    def count(self, action: str) -> None:
        """Count one request for ``action`` (shown by ``GET /_faults``)."""
        with self._lock:
            self.counts[action or "?"] += 1

    def observe(self, ids: Iterable[str]) -> None:
        """Remember instance ids seen in replies (``stuck_pending.new`` spares these)."""
        with self._lock:
            self.seen.update(i for i in ids if i)

    def is_stuck(self, instance_id: str) -> bool:
        """Must this instance look pending?"""
        if not instance_id:
            return False
        with self._lock:
            return instance_id in self.stuck_ids or (self.stuck_new and instance_id not in self.baseline)

    @property
    def any_stuck(self) -> bool:
        """Is any instance to be shown pending?"""
        return bool(self.stuck_ids or self.stuck_new)

    def snapshot(self) -> dict[str, Any]:
        """The controls and counts as JSON data."""
        with self._lock:
            return {"rules": [asdict(r) for r in self.rules], "counts": dict(self.counts),
                    "stuck_pending": {"ids": sorted(self.stuck_ids), "new": self.stuck_new},
                    "extra": dict(self.extra)}


Reply = tuple[str, list[tuple[str, str]], bytes]


def json_reply(status: str, doc: Any) -> Reply:
    """A JSON answer of the control endpoints."""
    return status, [("Content-Type", "application/json")], json.dumps(doc, sort_keys=True).encode()


def control(environ: dict[str, Any], faults: FaultState,
            on_change: Callable[[dict[str, Any]], None] | None = None) -> Reply | None:
    """Answer a ``/_faults`` request, or None when the request is for the API."""
    if environ.get("PATH_INFO", "").rstrip("/") != CONTROL_PATH:
        return None
    method = environ["REQUEST_METHOD"]
    if method == "GET":
        return json_reply("200 OK", faults.snapshot())
    if method == "DELETE":
        faults.clear()
        if on_change:
            on_change({})
        return json_reply("200 OK", faults.snapshot())
    if method == "POST":
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        try:
            doc = json.loads(raw or b"{}")
            faults.configure(doc)
            if on_change:
                on_change(doc.get("extra") or {})
        except (ValueError, ControlError) as exc:
            return json_reply("400 Bad Request", {"error": str(exc)})
        return json_reply("200 OK", faults.snapshot())
    return json_reply("405 Method Not Allowed", {"error": f"{method} not allowed"})


def pause(environ: dict[str, Any], seconds: float) -> None:
    """Sleep ``seconds``, waking early when the server stops."""
    stopping = environ.get("phorque.stopping")
    if stopping is not None:
        stopping.wait(seconds)
    else:
        time.sleep(seconds)


_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout"}


def error_reply(style: str, status: int, code: str, message: str, request_id: str = "") -> Reply:
    """An error as a service of ``style`` writes it.

    ``query``: Auto Scaling's ``<ErrorResponse>`` XML; ``ec2``: EC2's ``<Response><Errors>``
    XML; ``webob``: Phantom's ``text/plain`` page whose status line carries the code.
    """
    from xml.sax.saxutils import escape

    request_id = request_id or "00000000-0000-0000-0000-000000000000"
    if style == "webob":
        body = f"{status} {code}\n\n{message}\n\n".encode()
        return f"{status} {code}", [("Content-Type", "text/plain; charset=UTF-8")], body
    reason = f"{status} {_REASONS.get(status, 'Error')}"
    if style == "ec2":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>"
                f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error></Errors>"
                f"<RequestID>{request_id}</RequestID></Response>").encode()
    else:
        kind = "Receiver" if status >= 500 else "Sender"
        body = (f"<ErrorResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">"
                f"<Error><Type>{kind}</Type><Code>{escape(code)}</Code>"
                f"<Message>{escape(message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
    return reason, [("Content-Type", "text/xml")], body


#: :func:`inject`'s answer when the request goes on as usual (no fault, or a delay is over).
PASS: Any = object()


def inject(environ: dict[str, Any], faults: FaultState, action: str, phase: str,
           render: Callable[[Rule], Reply]) -> Reply | None | Any:
    """Apply the fault for ``action`` in ``phase``: :data:`PASS`, None (dropped) or a reply."""
    rule = faults.take(action, phase)
    if rule is None:
        return PASS
    if rule.kind == "drop":
        environ["phorque.drop"]()
        return None
    if rule.kind == "delay":
        pause(environ, rule.seconds)
        return PASS
    return render(rule)
