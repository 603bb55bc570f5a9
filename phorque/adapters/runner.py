"""Running external commands: always an argument vector, never a shell, always a timeout.

A failure is a :class:`~phorque.core.errors.CommandError` carrying the command, its exit status and
its standard error. Commands run in their own process group so that a timeout also stops the
children of a wrapper script.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Generic, Literal, TypeVar, cast, overload

from phorque.core.errors import CommandError

log = logging.getLogger("phorque.runner")

T = TypeVar("T")

#: Standard error kept for messages; a command that floods it cannot exhaust memory.
STDERR_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Result(Generic[T]):
    """A finished command. ``stdout`` is its output as read (bytes for :meth:`Runner.run`,
    what the consumer returned for :meth:`Runner.stream` with ``keep``)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: T
    stderr: str


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass


def _read_stderr(handle: IO[bytes]) -> str:
    handle.seek(0)
    data = handle.read(STDERR_LIMIT)
    return data.decode("utf-8", errors="replace")


class Runner:
    """Runs commands with a default timeout. Stateless apart from that default."""

    def __init__(self, timeout: float = 30.0, env: dict[str, str] | None = None):
        self.timeout = timeout
        self.env = env

    def run(self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None,
            check: bool = True) -> Result[bytes]:
        """Run ``argv`` to completion and return its output.

        With ``check`` (the default) a non-zero exit raises CommandError; a timeout or a
        command that cannot be started always does.
        """
        return self.stream(argv, lambda out: out.read(), input=input, timeout=timeout, check=check,
                           keep=True)

    @overload
    def stream(self, argv: Sequence[str], consume: Callable[[IO[bytes]], T], *,
               input: bytes | None = ..., timeout: float | None = ..., check: bool = ...,
               keep: Literal[False] = ...) -> T: ...

    @overload
    def stream(self, argv: Sequence[str], consume: Callable[[IO[bytes]], T], *,
               input: bytes | None = ..., timeout: float | None = ..., check: bool = ...,
               keep: Literal[True]) -> Result[T]: ...

    def stream(self, argv: Sequence[str], consume: Callable[[IO[bytes]], T], *,
               input: bytes | None = None, timeout: float | None = None, check: bool = True,
               keep: bool = False) -> T | Result[T]:
        """Run ``argv`` and hand its standard output, as it arrives, to ``consume``.

        Returns what ``consume`` returns (wrapped in a Result when ``keep``). Memory stays
        bounded when ``consume`` reads incrementally, whatever the size of the output.
        """
        argv = [str(a) for a in argv]
        limit = self.timeout if timeout is None else timeout
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=err, env=self.env, start_new_session=True,
                    close_fds=True)
            except OSError as exc:
                raise CommandError(argv, None, "", f"cannot run: {exc.strerror or exc}") from exc
            expired = threading.Event()

            def on_timeout() -> None:
                expired.set()
                _kill_group(proc)

            timer = threading.Timer(limit, on_timeout)
            timer.daemon = True
            timer.start()
            failure: Exception | None = None
            outcome = None
            try:
                if input is not None:
                    threading.Thread(target=_feed, args=(proc, input), daemon=True).start()
                assert proc.stdout is not None
                try:
                    outcome = consume(proc.stdout)
                except Exception as exc:  # judged after the exit status is known
                    failure = exc
                # Drain what the consumer left so the child never blocks on a full pipe.
                try:
                    while proc.stdout.read(65536):
                        pass
                except (OSError, ValueError):
                    pass
                proc.stdout.close()
                returncode = proc.wait()
            except BaseException:
                _kill_group(proc)
                proc.wait()
                raise
            finally:
                timer.cancel()
            stderr = _read_stderr(err)
        if expired.is_set():
            raise CommandError(argv, None, stderr, f"timed out after {limit:g} s")
        if check and returncode != 0:
            raise CommandError(argv, returncode, stderr)
        if failure is not None:
            raise failure
        log.debug("ran %s: exit %d", argv, returncode)
        # consume returned (a failure was raised above), so outcome holds its value.
        value = cast(T, outcome)
        if keep:
            return Result(tuple(argv), returncode, value, stderr)
        return value


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
    except (BrokenPipeError, OSError):
        pass
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass
