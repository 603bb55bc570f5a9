"""The Torque commands' client side: send the request to the sandbox server, print its answer.

Like a real Torque client, ``bin/qsub`` and the others do no work themselves: they connect to
the server (a Unix socket, ``DIR/sandbox/server.sock``), send their arguments, working
directory, environment, user and, for qsub and qmgr reading a script or directives from it,
their standard input; the server answers with the output, the error output and the exit status.
When nothing listens, the command fails as a Torque client fails when pbs_server is down.

This module is all a command imports, so it is kept to the interpreter's own modules (``_socket``
rather than ``socket``, which costs several milliseconds of start-up) and must not import the
rest of Phorque.

Protocol, one request per connection:

- request: ``PHQ1 <uid> <gid> <len>...\\n`` then the fields command, cwd, argv and environment
  (each NUL-joined) and stdin, as raw bytes of the given lengths;
- answer: ``PHR1 <exit status> <len out> <len err> <flags>\\n`` then the output and the error
  output; the flag ``hang`` asks the command to never return (an injected fault).
"""

from __future__ import annotations

import _socket  # the C module behind ``socket``: a fraction of its import cost
import os
import sys

SOCKET_NAME = "server.sock"
REQUEST_MAGIC = b"PHQ1"
ANSWER_MAGIC = b"PHR1"
ECONNREFUSED = 111
QSUB_OPTIONS = "a:A:c:C:d:D:e:fF:hIj:k:l:L:m:M:nN:o:p:P:q:r:S:t:T:u:v:VW:x:Xz"
QMGR_OPTIONS = "ac:enz"


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _scan(argv: list[str], spec: str) -> tuple[set[str], bool]:
    """The option letters in ``argv`` and whether it holds an operand, read as getopt reads
    them with ``spec`` (a full parse is the server's business)."""
    letters: set[str] = set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            return letters, i < len(argv)
        if not arg.startswith("-") or arg == "-":
            return letters, True
        j = 1
        while j < len(arg):
            letters.add(arg[j])
            at = spec.find(arg[j])
            if at != -1 and spec[at + 1:at + 2] == ":":
                if j + 1 == len(arg):
                    i += 1  # the value is the next argument
                break
            j += 1
    return letters, False


def reads_stdin(command: str, argv: list[str]) -> bool:
    """qsub reads its script from stdin when given no file; qmgr its directives without -c."""
    if command == "qsub":
        return not _scan(argv, QSUB_OPTIONS)[1]
    if command == "qmgr":
        return "c" not in _scan(argv, QMGR_OPTIONS)[0]
    return False


def encode_request(command: str, cwd: str, argv: list[str], env: dict[str, str], stdin: bytes,
                   uid: int, gid: int) -> bytes:
    fields = [_encode(command), _encode(cwd), b"\0".join(_encode(a) for a in argv),
              b"\0".join(_encode(f"{k}={v}") for k, v in env.items()), stdin]
    header = b" ".join([REQUEST_MAGIC, str(uid).encode(), str(gid).encode(),
                        *(str(len(f)).encode() for f in fields)])
    return header + b"\n" + b"".join(fields)


def _read_all(sock: _socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def decode_answer(data: bytes) -> tuple[int, bytes, bytes, str]:
    """``(status, out, err, flags)`` from an answer; raises ValueError when it is malformed."""
    head, _, rest = data.partition(b"\n")
    parts = head.split(b" ")
    if len(parts) != 5 or parts[0] != ANSWER_MAGIC:
        raise ValueError("not a sandbox server answer")
    status, n_out, n_err = int(parts[1]), int(parts[2]), int(parts[3])
    if len(rest) != n_out + n_err:
        raise ValueError("truncated answer")
    return status, rest[:n_out], rest[n_out:], parts[4].decode()


def _server_name(root: str) -> str:
    try:
        with open(os.path.join(root, "server_name"), encoding="utf-8") as handle:
            return handle.read().strip() or "localhost"
    except OSError:
        return "localhost"


def _address(server: str) -> str:
    """The server's address as the client prints it; the sandbox's server is on this machine,
    so a name that does not resolve is 127.0.0.1."""
    try:
        return _socket.gethostbyname(server)
    except (OSError, UnicodeError):
        return "127.0.0.1"


def unreachable(command: str, server: str) -> tuple[int, str]:
    """What a Torque 6.1.3 client prints, and its exit status, when pbs_server does not answer:
    pbs_connect's ``Unable to communicate with HOST(ADDR)`` first, then the command's own line
    (qmgr's names no server: it asks the default one, whose name it does not know)."""
    refused = "Connection refused"
    first = f"Unable to communicate with {server}({_address(server)})\n{refused}\n"
    if command == "pbsnodes":
        return 1, f"{first}pbsnodes: cannot connect to server {server}, error={ECONNREFUSED} ({refused})\n"
    if command == "qmgr":
        return 3, f"{first}qmgr: cannot connect to server  (errno={ECONNREFUSED}) {refused}\n"
    return ECONNREFUSED, f"{first}{command}: cannot connect to server {server} (errno={ECONNREFUSED}) {refused}\n"


def _hang() -> None:
    import time
    while True:
        time.sleep(3600)


def main(command: str, script: str, argv: list[str]) -> int:
    """Run one command of the cluster that holds ``script`` (``DIR/bin/<command>``)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(script)))
    cwd = os.getcwd()
    stdin = sys.stdin.buffer.read() if reads_stdin(command, argv) and sys.stdin else b""
    request = encode_request(command, cwd, argv, dict(os.environ), stdin, os.getuid(), os.getgid())
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        # Connect by a relative name: a socket path may not exceed 107 bytes, a folder may.
        os.chdir(os.path.join(root, "sandbox"))
        sock.connect(SOCKET_NAME)
        sock.sendall(request)
        sock.shutdown(_socket.SHUT_WR)
        status, out, err, flags = decode_answer(_read_all(sock))
    except (OSError, ValueError):
        status, message = unreachable(command, _server_name(root))
        sys.stderr.write(message)
        return status
    finally:
        sock.close()
    if flags == "hang":
        _hang()
    try:
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
        sys.stderr.buffer.write(err)
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    return status
