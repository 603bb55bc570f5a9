"""The one lock serializing every cloud mutation and the read that decides it.

The daemon, ``phorque-evaluate`` and the Torque hooks may run at the same moment; each takes this
lock around "describe the group, compute, set desired capacity / terminate", so no update is lost
and no launch is made twice. The lock is an advisory ``flock`` on ``lock_file`` (filelock), so a
process that dies releases it.

Within one process, every call for the same path returns the same lock object: taking it again
in the same thread nests (no self-deadlock), while other threads wait like other processes do.
"""

from __future__ import annotations

import os
import threading

import filelock

from phorque.adapters.private import private_dir

LOCK_MODE = 0o600

_LOCKS: dict[str, filelock.FileLock] = {}
_GUARD = threading.Lock()


def cloud_lock(path: str, timeout: float | None = None) -> filelock.FileLock:
    """The lock on ``path`` (created 0600, its directory created 0700 if missing).

    ``timeout`` is how long this thread's ``acquire()`` waits (None: forever); on expiry it
    raises :class:`filelock.Timeout`. Use it as a context manager::

        with cloud_lock(config.phorque.lock_path, timeout=60):
            view = provider.describe()
            provider.set_desired(...)
    """
    real = os.path.abspath(path)
    private_dir(os.path.dirname(real))
    with _GUARD:
        lock = _LOCKS.get(real)
        if lock is None:
            # thread_local (the default): each thread has its own hold count, fd and timeout.
            lock = _LOCKS[real] = filelock.FileLock(real, mode=LOCK_MODE)
    lock.timeout = -1 if timeout is None else timeout
    return lock
