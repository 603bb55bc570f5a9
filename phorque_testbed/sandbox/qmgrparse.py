"""Parsing qmgr directives (``create node n1 np=4,properties="gpu,bigmem"``).

A directive is ``command object [name] [attribute op value[, attribute op value]...]``, with
commands and object types abbreviable as qmgr allows (``c n n1``), operators ``=``, ``+=``
and ``-=``, and values that may be double-quoted (so they can hold commas and spaces).
"""

from __future__ import annotations

COMMANDS = ("active", "create", "delete", "set", "unset", "list", "print", "help", "quit", "exit")
OBJECTS = ("server", "queue", "node")


class QmgrSyntaxError(ValueError):
    """qmgr refuses the directive; the message is what it prints."""


class Directive:
    """One parsed directive."""

    __slots__ = ("command", "object", "name", "attributes")

    def __init__(self, command: str, obj: str, name: str | None,
                 attributes: list[tuple[str, str, str]]):
        self.command = command
        self.object = obj
        self.name = name
        self.attributes = attributes  # (attribute, operator, value)

    def __repr__(self) -> str:
        return f"Directive({self.command!r}, {self.object!r}, {self.name!r}, {self.attributes!r})"


def _expand(word: str, choices: tuple[str, ...]) -> str | None:
    for choice in choices:
        if word and choice.startswith(word):
            return choice
    return None


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _word(text: str, i: int, stops: str) -> tuple[str, int]:
    start = i
    while i < len(text) and text[i] not in stops:
        i += 1
    return text[start:i], i


def _operator(text: str, i: int) -> tuple[str | None, int]:
    for op in ("+=", "-=", "="):
        if text.startswith(op, i):
            return op, i + len(op)
    return None, i


def parse(text: str) -> Directive:
    text = text.strip()
    i = _skip(text, 0)
    word, i = _word(text, i, " \t")
    command = _expand(word, COMMANDS)
    if command is None:
        raise QmgrSyntaxError(f"qmgr: Illegal operation: {word}\n"
                              "Try 'help' if you are having trouble.")
    if command in ("help", "quit", "exit"):
        return Directive(command, "", None, [])
    i = _skip(text, i)
    word, i = _word(text, i, " \t")
    if not word:
        raise QmgrSyntaxError("qmgr: No object type given")
    obj = _expand(word, OBJECTS)
    if obj is None:
        raise QmgrSyntaxError(f"qmgr: Illegal object type: {word}.")
    i = _skip(text, i)
    name = None
    word, j = _word(text, i, " \t=")  # node names may hold '-' ("ip-10-0-1-5")
    if word:
        after = _skip(text, j)
        op, _ = _operator(text, after)
        if op is None:  # a name, not the first attribute
            name, i = word, _skip(text, j)
    attributes = []
    if command == "unset":  # names only: "unset queue batch is_transit, resources_default.nodes"
        names = [w.strip() for w in text[i:].split(",") if w.strip()]
        if not names:
            raise QmgrSyntaxError("qmgr: Syntax error")
        return Directive(command, obj, name, [(n, "", "") for n in names])
    while i < len(text):
        attr, i = _word(text, i, " \t=+-,")
        i = _skip(text, i)
        op, i = _operator(text, i)
        if not attr or op is None:
            raise QmgrSyntaxError("qmgr: Syntax error")
        i = _skip(text, i)
        if i < len(text) and text[i] == '"':
            end = text.find('"', i + 1)
            if end == -1:
                raise QmgrSyntaxError("qmgr: Syntax error")
            value, i = text[i + 1:end], end + 1
        else:
            value, i = _word(text, i, " \t,")
        attributes.append((attr, op, value))
        i = _skip(text, i)
        if i < len(text):
            if text[i] != ",":
                raise QmgrSyntaxError("qmgr: Syntax error")
            i = _skip(text, i + 1)
    # A node or queue directive without a name is no syntax error: qmgr looks for its active
    # objects (commands/qmgr.py).
    if command == "delete" and attributes and name is not None:
        raise QmgrSyntaxError("qmgr: Syntax error - operation does not allow attribute")
    return Directive(command, obj, name, attributes)
