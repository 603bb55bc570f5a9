"""A command invocation as the sandbox server receives it, and what every command shares.

The Torque commands run inside the server (see :mod:`phorque_testbed.sandbox.wire` for their client
side): each gets a :class:`Request` (its arguments, working directory, environment, user and
standard input) and returns a :class:`Reply` (output, error output, exit status).
"""

from __future__ import annotations

import os

from phorque_testbed.sandbox.wire import REQUEST_MAGIC


class Request:
    """One command as a client sent it."""

    __slots__ = ("command", "cwd", "argv", "env", "stdin", "uid", "gid")

    def __init__(self, command: str, argv: list[str], cwd: str = "/", env: dict[str, str] | None = None,
                 stdin: bytes = b"", uid: int | None = None, gid: int | None = None):
        self.command = command
        self.argv = argv
        self.cwd = cwd
        self.env = env if env is not None else {}
        self.stdin = stdin
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid

    @property
    def user(self) -> str:
        import pwd
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return self.env.get("USER") or str(self.uid)

    @property
    def group(self) -> str:
        import grp
        try:
            return grp.getgrgid(self.gid).gr_name
        except KeyError:
            return str(self.gid)

    @property
    def host(self) -> str:
        """The submit host: clients run on the server's machine."""
        return os.uname().nodename

    @property
    def requestor(self) -> str:
        """``user@host``, as pbs_server records who asked (D records)."""
        return f"{self.user}@{self.host}"

    def text(self) -> str:
        return self.stdin.decode("utf-8", "replace")

    def path(self, name: str) -> str:
        return name if os.path.isabs(name) else os.path.join(self.cwd, name)


def decode_request(data: bytes) -> Request:
    """A request as :func:`phorque_testbed.sandbox.wire.encode_request` wrote it; ValueError if not."""
    head, _, rest = data.partition(b"\n")
    parts = head.split(b" ")
    if len(parts) != 8 or parts[0] != REQUEST_MAGIC:
        raise ValueError("not a sandbox request")
    uid, gid = int(parts[1]), int(parts[2])
    sizes = [int(p) for p in parts[3:]]
    if sum(sizes) != len(rest):
        raise ValueError("truncated request")
    fields = []
    at = 0
    for size in sizes:
        fields.append(rest[at:at + size])
        at += size

    def text(raw: bytes) -> str:
        return raw.decode("utf-8", "surrogateescape")

    command, cwd, argv, env, stdin = fields
    environment = {}
    for item in env.split(b"\0") if env else []:
        key, _, value = text(item).partition("=")
        environment[key] = value
    return Request(text(command), [text(a) for a in argv.split(b"\0")] if argv else [],
                   text(cwd), environment, stdin, uid, gid)


class Reply:
    """What a command prints and its exit status."""

    __slots__ = ("out", "err", "code")

    def __init__(self, out: str = "", err: str = "", code: int = 0):
        self.out = out
        self.err = err
        self.code = code


def getopt(argv: list[str], spec: str) -> tuple[list[tuple[str, str]], list[str]]:
    """GNU getopt as Torque's clients use it: options may follow operands, ``--`` ends them.

    ``spec`` is getopt's: letters, with ``:`` after those that take a value. Raises
    ValueError(letter) for an unknown option or a missing value.
    """
    options: list[tuple[str, str]] = []
    operands: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            operands.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            continue
        j = 1
        while j < len(arg):
            letter = arg[j]
            at = spec.find(letter)
            if at == -1 or letter == ":":
                raise ValueError(letter)
            if spec[at + 1:at + 2] == ":":
                value = arg[j + 1:]
                if not value:
                    if i >= len(argv):
                        raise ValueError(letter)
                    value = argv[i]
                    i += 1
                options.append((letter, value))
                break
            options.append((letter, ""))
            j += 1
    return options, operands


def job_id(text: str, server: str) -> str:
    """A job id as given on a command line, completed with the server name (``12`` ->
    ``12.srv``)."""
    text = text.strip()
    return text if "." in text else f"{text}.{server}"
