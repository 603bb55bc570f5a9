"""Checking AWS Signature Version 2, as Phantom and Nimbus did (server side).

The string to sign is ``METHOD\\nhost\\npath\\n`` followed by the sorted parameters (without
``Signature``), each quoted with ``safe='-_~'``; the signature is its HMAC-SHA256 (or SHA1),
base64-encoded. ``host`` is the Host header as sent, port included.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote


class SignatureProblem(Exception):
    """Why a request is refused: ``code`` is the error code the service answers with."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def string_to_sign(method: str, host: str, path: str, params: Mapping[str, str]) -> str:
    """What SigV2 signs."""
    pairs = [f"{quote(k, safe='')}={quote(v, safe='-_~')}"
             for k, v in sorted(params.items()) if k != "Signature"]
    return f"{method.upper()}\n{host.lower()}\n{path or '/'}\n" + "&".join(pairs)


def sign(secret: str, method: str, host: str, path: str, params: Mapping[str, str],
         algorithm: str = "HmacSHA256") -> str:
    """The base64 SigV2 signature of a request."""
    digest = hashlib.sha1 if algorithm == "HmacSHA1" else hashlib.sha256
    mac = hmac.new(secret.encode(), string_to_sign(method, host, path, params).encode(), digest)
    return base64.b64encode(mac.digest()).decode()


def parse_time(text: str) -> datetime:
    """An ISO 8601 UTC time as AWS clients send it (``2024-01-01T00:00:00Z``, fractions allowed)."""
    value = text.strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def verify(params: Mapping[str, str], method: str, host: str, path: str,
           secrets: Mapping[str, str], now: datetime, window: timedelta,
           errors: Mapping[str, str]) -> str:
    """Check a SigV2 request; return the caller's access id or raise :class:`SignatureProblem`.

    ``window``: how far the Timestamp may be from ``now`` (Phantom 15 min, Nimbus 5 min).
    ``errors`` maps ``unknown_key``/``bad_signature``/``expired``/``missing`` to the error codes
    of the service being imitated.
    """
    access_id = params.get("AWSAccessKeyId", "")
    if access_id not in secrets:
        raise SignatureProblem(errors["unknown_key"],
                               f"The access key id provided does not exist in our records: {access_id}")
    if params.get("SignatureVersion") != "2":
        raise SignatureProblem(errors["bad_signature"], "only signature version 2 is supported")
    expected = sign(secrets[access_id], method, host, path, params,
                    params.get("SignatureMethod", "HmacSHA256"))
    if not hmac.compare_digest(expected, params.get("Signature", "")):
        raise SignatureProblem(errors["bad_signature"],
                               "The request signature does not conform to AWS standards.")
    stamp = params.get("Timestamp") or params.get("Expires")
    if not stamp:
        raise SignatureProblem(errors["missing"], "a Timestamp or Expires parameter is required")
    try:
        when = parse_time(stamp)
    except ValueError:
        raise SignatureProblem(errors["missing"], f"cannot read the time {stamp!r}") from None
    if "Timestamp" in params:
        if not (now - window <= when <= now + window):
            raise SignatureProblem(errors["expired"], "Request is past expires date or the request "
                                   "date (with padding) is too far from the server's time.")
    elif not (now <= when <= now + window):
        raise SignatureProblem(errors["expired"], "Request is past its Expires time.")
    return access_id
