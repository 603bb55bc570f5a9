"""Typed configuration options: how one ``name = value`` line is checked and converted.

Kept apart from :mod:`phorque.adapters.config` so that policies (which must stay free of I/O) can
declare the options they read without importing the file loader.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class OptionValueError(ValueError):
    """A value has the wrong form; the loader adds the file, section and option."""


class Secret:
    """A credential. Its repr and str never show the value; ``reveal()`` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


#: Integers beyond this cannot take part in float arithmetic (times, prices) exactly, or at all.
LARGEST_INT = 2 ** 53


def shown(text: str, limit: int = 60) -> str:
    """A value quoted for a message, cut short: a huge value must not make a huge message."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def _int(text: str, minimum: int | None = None, maximum: int | None = None) -> int:
    try:
        value = int(text.strip(), 10)
    except ValueError:
        raise OptionValueError(f"{shown(text)} is not an integer") from None
    if abs(value) > LARGEST_INT:
        raise OptionValueError(f"{shown(text)} is too large")
    if minimum is not None and value < minimum:
        raise OptionValueError(f"{value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise OptionValueError(f"{value} is above the maximum {maximum}")
    return value


def _float(text: str, minimum: float | None = None, maximum: float | None = None) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise OptionValueError(f"{shown(text)} is not a number") from None
    if math.isnan(value):
        raise OptionValueError(f"{shown(text)} is not a number")
    if math.isinf(value):
        raise OptionValueError(f"{shown(text)} is not a finite number")
    if minimum is not None and value < minimum:
        raise OptionValueError(f"{value:g} is below the minimum {minimum:g}")
    if maximum is not None and value > maximum:
        raise OptionValueError(f"{value:g} is above the maximum {maximum:g}")
    return value


_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise OptionValueError(f"{shown(text)} is not a boolean (use true or false)")


def _list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.replace("\n", ",").split(",") if part.strip())


@dataclass(frozen=True)
class Option:
    """One option of a section: its converter, default and documentation."""

    convert: Callable[[str], Any]
    default: Any = None
    required: bool = False
    secret: bool = False
    help: str = ""
    #: An empty value is a value of its own (``""``), not "use the default".
    keep_empty: bool = False

    def parse(self, text: str) -> Any:
        value = self.convert(text)
        return Secret(value) if self.secret else value


def int_option(default: int | None = None, *, minimum: int | None = None, maximum: int | None = None,
               required: bool = False, help: str = "") -> Option:
    return Option(lambda t: _int(t, minimum, maximum), default, required, help=help)


def float_option(default: float | None = None, *, minimum: float | None = None,
                 maximum: float | None = None, required: bool = False, help: str = "") -> Option:
    return Option(lambda t: _float(t, minimum, maximum), default, required, help=help)


def bool_option(default: bool, *, help: str = "") -> Option:
    return Option(_bool, default, help=help)


def str_option(default: str | None = None, *, required: bool = False, secret: bool = False,
               choices: tuple[str, ...] | None = None, keep_empty: bool = False,
               help: str = "") -> Option:
    def convert(text: str) -> str:
        value = text.strip()
        if required and not value:
            raise OptionValueError("is empty")
        if choices is not None and value.lower() not in choices:
            raise OptionValueError(f"{shown(value)} is not one of: {', '.join(choices)}")
        return value.lower() if choices is not None else value

    return Option(convert, default, required, secret=secret, help=help, keep_empty=keep_empty)


def list_option(default: tuple[str, ...] = (), *, help: str = "") -> Option:
    return Option(_list, default, help=help)


def budget_option(help: str = "") -> Option:
    """A spending limit: a number >= 0, or ``unlimited``/empty for no limit (None)."""

    def convert(text: str) -> float | None:
        if text.strip().lower() in {"", "unlimited", "none", "inf"}:
            return None
        return _float(text, 0.0)

    return Option(convert, None, help=help)
