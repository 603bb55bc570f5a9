"""Where each file of a sandbox cluster lives.

The tree mirrors a Torque home (``$TORQUE_HOME``) so that Phorque can be pointed at it with
``cluster_directory = DIR`` and ``torque_home = DIR``::

    DIR/server_name                     the server's name, as in a real Torque home
    DIR/bin/{qsub,qstat,qdel,pbsnodes,qmgr,qrerun}
    DIR/server_priv/accounting/YYYYMMDD
    DIR/server_priv/jobs/<id>.JB .SC .TA, subfolders 0-9 (as pbs_server creates them)
    DIR/server_priv/arrays/<id>.AR, subfolders 0-9
    DIR/server_priv/nodes               one line per node, rewritten on create/delete
    DIR/sandbox/state.db                the sandbox's own state (sqlite, WAL)
    DIR/sandbox/lock                    every change is made holding this lock
    DIR/sandbox/server.lock             held by the running server; holds its pid
    DIR/sandbox/server.sock             where the server takes the commands' requests
    DIR/sandbox/server.log              the server's own log
    DIR/sandbox/faults.json             fault injection for tests (see faults.py)
    DIR/sandbox/hosts                   node names that resolve (see hosts.py)
"""

from __future__ import annotations

import os

COMMANDS = ("qsub", "qstat", "qdel", "pbsnodes", "qmgr", "qrerun")


class Layout:
    """The paths of one sandbox cluster rooted at ``root``."""

    __slots__ = ("root",)

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def __repr__(self) -> str:
        return f"Layout({self.root!r})"

    @classmethod
    def from_command(cls, script: str) -> Layout:
        """The cluster a ``DIR/bin/<command>`` script belongs to."""
        return cls(os.path.dirname(os.path.dirname(os.path.abspath(script))))

    def _join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def bin(self) -> str:
        return self._join("bin")

    def command(self, name: str) -> str:
        return self._join("bin", name)

    @property
    def server_name_file(self) -> str:
        return self._join("server_name")

    @property
    def server_priv(self) -> str:
        return self._join("server_priv")

    @property
    def accounting(self) -> str:
        return self._join("server_priv", "accounting")

    @property
    def jobs(self) -> str:
        return self._join("server_priv", "jobs")

    @property
    def arrays(self) -> str:
        return self._join("server_priv", "arrays")

    @property
    def nodes_file(self) -> str:
        return self._join("server_priv", "nodes")

    @property
    def state_dir(self) -> str:
        return self._join("sandbox")

    @property
    def database(self) -> str:
        return self._join("sandbox", "state.db")

    @property
    def lock(self) -> str:
        return self._join("sandbox", "lock")

    @property
    def server_lock(self) -> str:
        return self._join("sandbox", "server.lock")

    @property
    def server_log(self) -> str:
        return self._join("sandbox", "server.log")

    @property
    def faults(self) -> str:
        return self._join("sandbox", "faults.json")

    @property
    def hosts(self) -> str:
        return self._join("sandbox", "hosts")

    def exists(self) -> bool:
        return os.path.isfile(self.database)
