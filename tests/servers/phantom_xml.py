"""Reading query parameters and writing replies the way Phantom and Nimbus did."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

AS_NS = "http://autoscaling.amazonaws.com/doc/2009-05-15/"
EC2_NS = "http://ec2.amazonaws.com/doc/2009-08-15/"

#: Phantom's error table (phantom_exceptions.py): code -> (explanation, HTTP status).
PHANTOM_ERRORS: dict[str, tuple[str, int]] = {
    "IncompleteSignature": ("The request signature does not conform to AWS standards.", 400),
    "InternalFailure": ("The request processing has failed due to some unknown error, exception "
                        "or failure.", 500),
    "InvalidAction": ("The action or operation requested is invalid.", 400),
    "InvalidClientTokenId": ("The X.509 certificate or AWS Access Key ID provided does not exist "
                             "in our records.", 403),
    "InvalidParameterValue": ("A bad or out-of-range value was supplied for the input parameter.", 400),
    "MissingAuthenticationToken": ("Request must contain either a valid (registered) AWS Access "
                                   "Key ID or X.509 certificate.", 403),
    "MissingParameter": ("An input parameter that is mandatory for processing the request is "
                         "not supplied.", 400),
    "RequestExpired": ("Request is past expires date or the request date (either with 15 minute "
                       "padding), or the request date occurs more than 15 minutes in the future.", 400),
    "ServiceUnavailable": ("The request has failed due to a temporary failure of the server.", 503),
    "Throttling": ("Request was denied due to request throttling.", 400),
    "AlreadyExists": ("The named Auto Scaling group or launch configuration already exists.", 400),
}


def request_params(environ: dict[str, Any]) -> dict[str, str]:
    """Query string and form body parameters together (as webob's ``req.params``)."""
    params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    if body and "form-urlencoded" in environ.get("CONTENT_TYPE", "form-urlencoded"):
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def member_list(params: Mapping[str, str], prefix: str) -> list[str]:
    """``Prefix.member.N`` values in order of N."""
    pattern = re.compile(re.escape(prefix) + r"\.member\.(\d+)$")
    found = [(int(m.group(1)), v) for k, v in params.items() if (m := pattern.match(k))]
    return [v for _, v in sorted(found)]


def member_structs(params: Mapping[str, str], prefix: str) -> list[dict[str, str]]:
    """``Prefix.member.N.Field`` values as one dict per N."""
    pattern = re.compile(re.escape(prefix) + r"\.member\.(\d+)\.(\w+)$")
    found: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        if m := pattern.match(key):
            found.setdefault(int(m.group(1)), {})[m.group(2)] = value
    return [found[n] for n in sorted(found)]


def numbered(params: Mapping[str, str], prefix: str) -> list[str]:
    """EC2-style ``Prefix.N`` values."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)$")
    found = [(int(m.group(1)), v) for k, v in params.items() if (m := pattern.match(k))]
    return [v for _, v in sorted(found)]


def aws_time(epoch: float) -> str:
    """``2013-04-05T12:34:56.789Z``."""
    stamp = datetime.fromtimestamp(epoch, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def element(name: str, value: Any) -> str:
    """``<name>value</name>``; None gives an empty element, booleans are ``True``/``False``."""
    if value is None:
        return f"<{name}/>"
    return f"<{name}>{escape(str(value))}</{name}>"


def members(name: str, items: Iterable[str]) -> str:
    """``<name><member>item</member>...</name>``."""
    inner = "".join(f"<member>{item}</member>" for item in items)
    return f"<{name}>{inner}</{name}>"


def as_reply(action: str, inner: str, wrapped: bool = True) -> bytes:
    """An Auto Scaling reply; Phantom omits the ``<ActionResult>`` wrapper for some actions."""
    body = f"<{action}Result>{inner}</{action}Result>" if wrapped else inner
    return (f"<{action}Response xmlns=\"{AS_NS}\">{body}<ResponseMetadata><RequestId>"
            f"{uuid.uuid4()}</RequestId></ResponseMetadata></{action}Response>").encode()


def ec2_reply(action: str, inner: str) -> bytes:
    """An EC2 reply in Nimbus's 2009-08-15 namespace."""
    return (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{EC2_NS}\">"
            f"<requestId>{uuid.uuid4()}</requestId>{inner}</{action}Response>").encode()
