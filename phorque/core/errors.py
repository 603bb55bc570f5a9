"""Phorque's error types: every failure that leaves a module is one of these.

    PhorqueError
     ├── ConfigError          a configuration mistake: stops start-up (exit status 2)
     ├── TorqueError          a Torque command or file could not be used
     │    └── CommandError    a command failed, timed out or could not be started
     ├── CloudError           a cloud API call failed (carries the cloud's name)
     │    └── CloudUnreachable    no answer: connection refused, timeout, TLS failure
     ├── StateError           the state store could not be read or written
     └── TransientError       skip this evaluation and try again at the next one

Foreign exceptions (botocore, subprocess, sqlite3) are translated once, at the edge that
calls them, and re-raised ``from`` the original so the cause stays in tracebacks.
"""

from __future__ import annotations

from collections.abc import Sequence


class PhorqueError(Exception):
    """Base class of every error Phorque raises on purpose."""


class ConfigError(PhorqueError):
    """A configuration file is unreadable or wrong.

    The message names the file, the section and the option, e.g.
    ``/etc/phorque/phorque.conf: [Cloud-hotel] max_instances: 'lots' is not an integer``.
    """

    def __init__(self, path: str, section: str | None, option: str | None, problem: str):
        self.path = path
        self.section = section
        self.option = option
        self.problem = problem
        where = path
        if section is not None:
            where += f": [{_cut(section)}]"
            if option is not None:
                where += f" {_cut(option)}"
        super().__init__(f"{where}: {problem}")


def _cut(name: str, limit: int = 60) -> str:
    """A section or option name for a message: configparser takes any text before "=" or "]"
    as one, so a broken file can make it huge."""
    return name if len(name) <= limit else name[:limit] + "..."


class TorqueError(PhorqueError):
    """Torque could not be read or changed."""


class CommandError(TorqueError):
    """An external command failed.

    ``returncode`` is None when the command could not be started or timed out.
    """

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str, reason: str = ""):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.reason = reason
        shown = " ".join(self.argv)
        if reason:
            msg = f"{shown}: {reason}"
        else:
            msg = f"{shown}: exit status {returncode}"
        if stderr.strip():
            msg += f": {stderr.strip()[:500]}"
        super().__init__(msg)

    @property
    def timed_out(self) -> bool:
        return self.reason.startswith("timed out")


class CloudError(PhorqueError):
    """A cloud API call failed. ``code`` is the API's error code when it gave one."""

    def __init__(self, cloud: str, operation: str, message: str, code: str | None = None,
                 throttled: bool = False):
        self.cloud = cloud
        self.operation = operation
        self.code = code
        self.throttled = throttled
        detail = f" ({code})" if code else ""
        super().__init__(f"cloud {cloud}: {operation}{detail}: {message}")


class CloudUnreachable(CloudError):
    """The cloud's endpoint did not answer (refused, timed out, TLS failure)."""


class StateError(PhorqueError):
    """The state store is unusable."""


class TransientError(PhorqueError):
    """Something passing went wrong: skip this evaluation, the next one will retry."""
