"""Phorque's events: one log record per decision, failure and change, with the numbers behind it.

Every event is a logging record carrying ``event`` (one of :class:`EventType`) and ``fields``
(the cloud, instance, node, job ids, reason, counts ...). The text log shows the message alone,
as it always did; ``log_format = json`` writes each record as one JSON object
(:class:`JsonFormatter`); the metrics (:mod:`phorque.runtime.metrics`) count the same records. The
event types and their fields are part of Phorque's interface: they are documented in the README
and only ever added to.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

#: Attributes an event adds to its logging record.
EVENT_ATTR = "phorque_event"
FIELDS_ATTR = "phorque_fields"


class EventType(StrEnum):
    DAEMON_STARTED = "daemon.started"
    DAEMON_STOPPED = "daemon.stopped"
    CONFIG_RELOADED = "config.reloaded"
    CONFIG_REJECTED = "config.rejected"
    EVALUATION = "evaluation"                   # an evaluation completed
    EVALUATION_SKIPPED = "evaluation.skipped"   # Torque unreadable, the lock busy
    EVALUATION_FAILED = "evaluation.failed"     # an error that is not transient
    # One per action of a plan, with its outcome (done, skipped, failed).
    LAUNCH = "action.launch"
    CANCEL = "action.cancel"
    JOIN = "action.join"
    DRAIN = "action.drain"
    UNDRAIN = "action.undrain"
    TERMINATE = "action.terminate"
    REMOVE = "action.remove"
    REQUEUE = "action.requeue"                  # a node's jobs requeued: its instance was taken back
    CLOUD_FAILURE = "cloud.failure"             # a failure recorded; the cloud is backed off
    CLOUD_RECOVERED = "cloud.recovered"         # the first success after failures
    CLOUD_UNREACHABLE = "cloud.unreachable"     # its group could not be read
    INSTANCE_LOST = "instance.lost"             # gone without Phorque terminating it
    INSTANCE_INTERRUPTED = "instance.interrupted"  # taken back by the cloud (spot): jobs requeued
    NODES_FORGOTTEN = "nodes.forgotten"         # recorded nodes Torque no longer lists
    VIEW_DRIFT = "view.drift"                   # a reconciliation found the live view wrong
    NOTE = "plan.note"                          # what a policy says of its plan

    @classmethod
    def of_action(cls, kind: str) -> EventType:
        """The event of an action of this kind (``launch``: ``action.launch``)."""
        return cls(f"{ACTION_PREFIX}{kind}")

    @property
    def action(self) -> str | None:
        """The action kind of an action event, else None."""
        return self.value[len(ACTION_PREFIX):] if self.value.startswith(ACTION_PREFIX) else None


ACTION_PREFIX = "action."


def emit(logger: logging.Logger, event: EventType, message: str, /, *args: Any,
         level: int = logging.INFO, **fields: Any) -> None:
    """Log ``message`` as ``event`` with ``fields`` (None values are left out)."""
    logger.log(level, message, *args, extra={
        EVENT_ATTR: event.value, FIELDS_ATTR: {k: v for k, v in fields.items() if v is not None}})


def event_of(record: logging.LogRecord) -> tuple[str | None, dict[str, Any]]:
    """The event type and fields of a record (None and {} for a plain log line)."""
    return getattr(record, EVENT_ATTR, None), getattr(record, FIELDS_ATTR, None) or {}


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, event, message, then the event's fields.

    A plain log line (no event) has ``"event": "log"``; an exception's traceback is in
    ``"exception"``. Field names never replace the fixed keys."""

    FIXED = ("time", "level", "logger", "event", "message")

    def format(self, record: logging.LogRecord) -> str:
        event, fields = event_of(record)
        out: dict[str, Any] = {"time": _iso(record.created), "level": record.levelname,
                               "logger": record.name, "event": event or "log",
                               "message": record.getMessage()}
        for key, value in fields.items():
            if key not in self.FIXED:
                out[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, default=str, sort_keys=False)
