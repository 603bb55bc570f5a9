"""The one lock serializing every cloud mutation and the read that decides it.

The daemon, ``phorque-evaluate`` and the Torque hooks may run at the same moment; each takes this
lock around "describe the group, compute, set desired capacity / terminate", so no update is lost
and no launch is made twice. The lock is an advisory ``flock`` on ``lock_file`` (filelock), so a
process that dies releases it.
"""

from __future__ import annotations

import os

import filelock

LOCK_MODE = 0o600


def cloud_lock(path: str, timeout: float | None = None) -> filelock.FileLock:
    """A lock on ``path`` (created 0600, its directory created 0700 if missing).

    ``timeout`` is how long ``acquire()`` waits (None: forever); on expiry it raises
    :class:`filelock.Timeout`. Use it as a context manager::

        with cloud_lock(config.phorque.lock_path, timeout=60):
            view = provider.describe()
            provider.set_desired(...)
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=0o700, exist_ok=True)
    return filelock.FileLock(path, timeout=-1 if timeout is None else timeout, mode=LOCK_MODE)
