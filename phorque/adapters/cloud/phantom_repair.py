"""Repairs Phantom's replies before botocore parses them (a ``before-parse`` handler).

Phantom answers in a dialect boto3 cannot read as it is:

* errors are webob ``text/plain`` pages (``400 IncompleteSignature`` and an explanation), not
  ``<ErrorResponse>`` XML, so botocore raised ``ResponseParserError`` instead of ``ClientError``;
* ``TerminateInstanceInAutoScalingGroup`` and ``DescribeAutoScalingInstances`` replies lack the
  ``<...Result>`` wrapper, so botocore raised a bare ``KeyError`` *after the server had acted*;
* booleans are ``True``/``False``, which botocore reads as false.

:func:`repair_phantom_reply` rewrites ``response_dict['body']`` in place so that all three parse.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

_STATUS_LINE = re.compile(r"^\s*(\d{3})\s+([A-Za-z][A-Za-z0-9.]*)\s*(.*)$")


def _boolean_members(shape: Any, found: set[str], depth: int = 0) -> set[str]:
    """The XML element names of every boolean member reachable from ``shape``."""
    if shape is None or depth > 12:
        return found
    kind = shape.type_name
    if kind == "structure":
        for name, member in shape.members.items():
            if member.type_name == "boolean":
                found.add(member.serialization.get("name", name))
            else:
                _boolean_members(member, found, depth + 1)
    elif kind == "list":
        _boolean_members(shape.member, found, depth + 1)
    return found


def text_error_to_xml(status: int, text: str) -> bytes:
    """A webob text error page as AWS query-protocol error XML."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    code, message = "", ""
    if lines:
        match = _STATUS_LINE.match(lines[0])
        if match:
            code = match.group(2)
            message = " ".join([match.group(3)] + lines[1:]).strip()
        else:
            message = " ".join(lines)
    if not code:
        code = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 500: "InternalFailure",
                503: "ServiceUnavailable"}.get(status, f"HTTP{status}")
    message = message.replace("<br />", " ").strip()[:1000]
    sender = "Receiver" if status >= 500 else "Sender"
    return (f"<ErrorResponse><Error><Type>{sender}</Type><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error><RequestId></RequestId>"
            f"</ErrorResponse>").encode()


def _wrap_result(body: bytes, wrapper: str) -> bytes:
    """Put the reply's children (except ResponseMetadata) into ``<wrapper>``."""
    root = ET.fromstring(body)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    result = ET.Element(f"{ns}{wrapper}")
    for child in list(root):
        if child.tag.split("}")[-1] != "ResponseMetadata":
            root.remove(child)
            result.append(child)
    root.insert(0, result)
    return ET.tostring(root)


def repair_phantom_reply(operation_model: Any = None, response_dict: dict | None = None,
                         **_: Any) -> None:
    """botocore ``before-parse`` handler: make a Phantom reply parseable (in place)."""
    if not response_dict or operation_model is None:
        return
    body = response_dict.get("body") or b""
    if isinstance(body, str):
        body = body.encode()
    status = int(response_dict.get("status_code") or 200)
    head = body.lstrip()[:1]
    if status >= 300:
        if head != b"<":
            response_dict["body"] = text_error_to_xml(status, body.decode("utf-8", "replace"))
        return
    if head != b"<":
        return
    shape = operation_model.output_shape
    names = _boolean_members(shape, set())
    if names:
        alternatives = "|".join(re.escape(n) for n in sorted(names))
        body = re.sub(rb"<(" + alternatives.encode() + rb")>\s*(True|False)\s*</\1>",
                      lambda m: b"<%s>%s</%s>" % (m.group(1), m.group(2).lower(), m.group(1)), body)
    wrapper = shape.serialization.get("resultWrapper") if shape is not None else None
    if wrapper and f"<{wrapper}".encode() not in body and f":{wrapper}".encode() not in body:
        try:
            body = _wrap_result(body, wrapper)
        except ET.ParseError:
            pass  # left as it is: botocore reports the unparsable reply
    response_dict["body"] = body
