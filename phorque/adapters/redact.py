"""Credentials out of every message, in every form they may take there.

A credential rarely reaches a message as it is: botocore quotes a header that holds one with
``repr`` (a newline in a key becomes ``\\n``), a JSON body escapes it, a URL quotes it, an XML
answer escapes ``&`` and ``<``. Each of those forms is replaced, not only the plain one.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

#: Shorter strings are not redacted: they would blank out ordinary words.
MIN_SECRET = 4
MASK = "***"


def forms(secret: str) -> set[str]:
    """``secret`` as it may appear inside another message: plain, escaped, quoted."""
    escaped = secret.encode("unicode_escape").decode("ascii")
    found = {secret, escaped, escaped.replace("\\", "\\\\"), repr(secret)[1:-1],
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             quote(secret, safe=""), quote_plus(secret), html.escape(secret),
             repr(secret.encode("utf-8", "backslashreplace"))[2:-1]}
    return {f for f in found if len(f) >= MIN_SECRET}


def all_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Every form of every secret, longest first (so a longer form is never cut by a shorter)."""
    out: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET:
            out |= forms(secret)
    return tuple(sorted(out, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every credential replaced by ``***``."""
    for form in all_forms(secrets):
        text = text.replace(form, MASK)
    return text
