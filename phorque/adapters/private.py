"""Creating Phorque's own files and directories with safe modes, whatever the umask.

The state database, the lock, the accounting position and the log are Phorque's alone: they are
created readable by their owner only (0600, in directories of mode 0700). A missing parent
directory is created 0755, never group- or world-writable, so that another user cannot swap the
state directory for one of their own even when Phorque runs under a permissive umask (``000``).
Modes are passed to ``mkdir``/``open`` rather than set afterwards, so no moment exists when the
file is more open than it should be. Files and directories that exist already are left as the
administrator made them.
"""

from __future__ import annotations

import os
import tempfile

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PARENT_DIR = 0o755


def private_dir(path: str | os.PathLike[str]) -> None:
    """Create the directory ``path`` (0700) and its missing parents (0755). Raises OSError."""
    real = os.path.abspath(path)
    if os.path.isdir(real):
        return
    parent = os.path.dirname(real)
    missing = []
    while parent and not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):
        _mkdir(directory, PARENT_DIR)
    _mkdir(real, PRIVATE_DIR)


def _mkdir(path: str, mode: int) -> None:
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


def private_file(path: str | os.PathLike[str]) -> None:
    """Create the file ``path`` empty and owner-only (0600) unless it exists. Raises OSError."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC, PRIVATE_FILE))


def replace_atomically(path: str, text: str, prefix: str) -> None:
    """Write ``text`` to ``path`` so that a reader, or a crash, sees the old file or the new one,
    never half of one: a temporary file (mode 0600) beside it, fsynced, renamed over it, and the
    directory fsynced so that the rename survives a power cut. Raises OSError."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
