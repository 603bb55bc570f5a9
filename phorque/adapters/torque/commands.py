"""Reading and changing Torque through its own commands (qstat, pbsnodes, qmgr).

Commands are looked up in ``<cluster_directory>/bin/``, then on ``PATH``. Every call is an
argument vector with a timeout (:mod:`phorque.adapters.runner`). Names that go inside a ``qmgr``
directive are checked first: qmgr reads ``;`` and quotes itself, so a name that is not a plain
host name is refused rather than passed on.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field

from phorque.adapters.runner import Runner
from phorque.adapters.torque import xmlparse
from phorque.core.errors import CommandError, TorqueError
from phorque.core.model import NOTE_MARK, Job, Node

log = logging.getLogger("phorque.torque.commands")

# RFC 1123 host names (and dotted IPv4), as Torque node names must be resolvable host names.
# Used with fullmatch and \Z: "$" would also accept a name ending in a newline, which qmgr would
# read as the end of the directive.
_HOST_RE = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9\-_]{0,62})(?:\.[A-Za-z0-9\-_]{1,63})*")
_PROPERTY_RE = re.compile(r"[A-Za-z0-9_\-.]{1,64}")
NOTE_LIMIT = 200
# A job id as pbs_server writes it: a sequence number, an array index or ``[]``, the server.
_JOB_ID_RE = re.compile(r"\d{1,12}(?:\[\d{0,9}\])?(?:\.[A-Za-z0-9\-_.]{1,253})?")
#: Job ids asked of one ``qstat`` (it connects to pbs_server once per id it is given).
JOBS_PER_QSTAT = 200
#: qstat's answer for an id pbs_server no longer (or never) knew: the job ended meanwhile.
_UNKNOWN_JOB = "unknown job id"


class UnsafeName(TorqueError):
    """A name that cannot be passed to qmgr safely."""


def is_host_name(name: str) -> bool:
    return bool(_HOST_RE.fullmatch(name)) and ".." not in name


def clean_note(text: str) -> str:
    """A one-line printable note (pbsnodes stores it verbatim and prints it unescaped)."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return flat[:NOTE_LIMIT]


def phorque_note(text: str) -> str:
    """A note marked as Phorque's, so an administrator's own offline is told apart."""
    return clean_note(f"{NOTE_MARK} {text}")


class NodeNotReady(TorqueError):
    """Torque refused a change to a node it has just created: its new node list has not yet
    reached the moms (``MOM-list-not-sent``). Nothing changed; the same call works later."""


# pbsnodes -o/-c/-N report a failed change on stderr and exit 0 (pbsnodes.c prints the error of
# each node it could not change and goes on), so the exit status cannot be trusted.
_PBSNODES_FAILED = "error setting"
_NOT_SENT = "hasn't been sent out to the cluster yet"


def _mentions(error: CommandError, *phrases: str) -> bool:
    text = error.stderr.lower()
    return any(p.lower() in text for p in phrases)


@dataclass
class Torque:
    """The Torque server, through its commands."""

    cluster_directory: str = "/usr/local"
    timeout: float = 30.0
    runner: Runner | None = None
    #: The jobs of the last whole-queue read, so that the next one parses only what changed.
    job_memo: xmlparse.JobMemo = field(default_factory=xmlparse.JobMemo, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.runner is None:
            self.runner = Runner(self.timeout)

    # -- helpers -------------------------------------------------------------------------
    def command(self, name: str) -> str:
        """The path of a Torque command: ``<cluster_directory>/bin/<name>``, else ``PATH``."""
        candidate = os.path.join(self.cluster_directory, "bin", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
        found = shutil.which(name)
        if found:
            return found
        raise CommandError([name], None, "",
                           f"not found in {os.path.join(self.cluster_directory, 'bin')} or on PATH")

    def _run(self, name: str, args: Sequence[str], check: bool = True):
        assert self.runner is not None
        return self.runner.run([self.command(name), *args], check=check)

    # -- reading -------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        """Every job, array sub-jobs included (``qstat -f -x -t``)."""
        assert self.runner is not None
        argv = [self.command("qstat"), "-f", "-x", "-t"]
        return self.runner.stream(
            argv, lambda out: list(xmlparse.parse_jobs(out, "qstat -f -x -t", memo=self.job_memo)))

    def jobs_named(self, ids: Sequence[str]) -> list[Job]:
        """The jobs with these ids, array sub-jobs of an ``N[]`` id included (``qstat -f -x -t
        ID...``, in batches). An id pbs_server does not know is left out: the job has ended
        (and been purged) since it was named. Any other failure raises TorqueError."""
        assert self.runner is not None
        wanted = [i for i in dict.fromkeys(ids) if _JOB_ID_RE.fullmatch(i)]
        found: list[Job] = []
        for start in range(0, len(wanted), JOBS_PER_QSTAT):
            batch = wanted[start:start + JOBS_PER_QSTAT]
            argv = [self.command("qstat"), "-f", "-x", "-t", *batch]
            result = self.runner.stream(
                argv, lambda out: list(xmlparse.parse_jobs(out, "qstat -f -x -t ID...", documents=True)),
                check=False, keep=True)
            if result.returncode != 0:
                # qstat goes on after an unknown id and exits with the first failure's status;
                # only "unknown job id" lines are an answer, anything else is a failed read.
                other = [line for line in result.stderr.splitlines()
                         if line.strip() and _UNKNOWN_JOB not in line.lower()]
                if other or _UNKNOWN_JOB not in result.stderr.lower():
                    raise CommandError(list(result.argv), result.returncode, result.stderr)
            found += result.stdout
        return found

    def nodes_named(self, names: Sequence[str]) -> list[Node] | None:
        """These nodes, read again now (``pbsnodes -x NAME...``); None when Torque does not know
        one of them (pbsnodes then prints nothing at all): read every node instead."""
        assert self.runner is not None
        wanted = [n for n in dict.fromkeys(names) if is_host_name(n)]
        if not wanted:
            return []
        argv = [self.command("pbsnodes"), "-x", "--", *wanted]
        try:
            found = self.runner.stream(argv, lambda out: list(xmlparse.parse_nodes(out, "pbsnodes -x")))
        except CommandError as exc:
            if _mentions(exc, "unknown node", "cannot locate", "has no node list"):
                return None
            raise
        if {n.name for n in found} != set(wanted):
            raise TorqueError(f"pbsnodes -x {' '.join(wanted[:5])}...: the answer lists other nodes "
                              "than those asked for; it cannot be trusted")
        return found

    def nodes(self) -> list[Node]:
        """Every node (``pbsnodes -x``)."""
        assert self.runner is not None
        argv = [self.command("pbsnodes"), "-x"]
        try:
            return self.runner.stream(argv, lambda out: list(xmlparse.parse_nodes(out, "pbsnodes -x")))
        except CommandError as exc:
            # A server with no node at all (a cloud-only cluster before its first node) says so
            # and exits 1; that is an answer, not a failure.
            if exc.returncode is not None and _mentions(exc, "has no node list"):
                return []
            raise

    def node(self, name: str) -> Node | None:
        """One node, read again now; None when Torque says it does not know it.

        An answer that does not list the node although it was asked for it is not "unknown"
        (Torque says so with an error): it cannot be trusted, and raises TorqueError.
        """
        assert self.runner is not None
        argv = [self.command("pbsnodes"), "-x", "--", name]
        try:
            found = self.runner.stream(argv, lambda out: list(xmlparse.parse_nodes(out, "pbsnodes -x")))
        except CommandError as exc:
            # A server with no node at all answers "has no node list": it does not know this one.
            if _mentions(exc, "unknown node", "cannot locate") or (
                    exc.returncode is not None and _mentions(exc, "has no node list")):
                return None
            raise
        for node in found:
            if node.name == name:
                return node
        raise TorqueError(f"pbsnodes -x -- {name}: the answer does not list {name} "
                          f"({len(found)} other node(s)); it cannot be trusted")

    # -- changing ------------------------------------------------------------------------
    def _qmgr(self, directive: str) -> None:
        self._run("qmgr", ["-c", directive])

    def add_node(self, name: str, np: int, properties: Sequence[str] = (), note: str = "",
                 gpus: int = 0) -> bool:
        """Create a node with ``np`` cores, ``gpus`` GPUs and these properties, which pbs_server
        matches against ``nodes=...:gpus=N:prop`` requests. Returns False when it already
        existed (not an error)."""
        if not is_host_name(name):
            raise UnsafeName(f"refusing to create node {name!r}: not a plain host name")
        attrs = [f"np={int(np)}"]
        if gpus > 0:
            attrs.append(f"gpus={int(gpus)}")
        props = [p for p in properties if p]
        for prop in props:
            if not _PROPERTY_RE.fullmatch(prop):
                raise UnsafeName(f"refusing node property {prop!r}")
        if props:
            attrs.append(f'properties="{",".join(props)}"')
        try:
            self._qmgr(f"create node {name} {','.join(attrs)}")
        except CommandError as exc:
            if _mentions(exc, "already exists"):
                log.info("node %s already exists in Torque", name)
                return False
            raise
        if note:
            try:
                self.set_note(name, note)
            except NodeNotReady:
                # A real server refuses notes on a node for ~10 s after creating it. The node is
                # Phorque's by its instance and the state, not by this note; it is set later.
                log.info("node %s created; Torque takes no note on it until the moms have its "
                         "node list", name)
        return True

    def delete_node(self, name: str) -> bool:
        """Delete a node. Returns False when Torque did not know it (not an error)."""
        if not is_host_name(name):
            raise UnsafeName(f"refusing to delete node {name!r}: not a plain host name")
        try:
            self._qmgr(f"delete node {name}")
        except CommandError as exc:
            if _mentions(exc, "unknown node", "cannot locate"):
                log.info("node %s was already gone from Torque", name)
                return False
            if _mentions(exc, "has been deleted"):
                # Torque deleted the node but reports the jobs it purged as an error.
                log.error("node %s deleted, but Torque purged jobs on it: %s", name, exc.stderr.strip())
                return True
            raise
        return True

    def _pbsnodes_change(self, args: Sequence[str]) -> None:
        """Run a changing pbsnodes; raise when it failed, whatever its exit status says.

        Raises NodeNotReady for a node whose creation has not reached the moms yet, and
        CommandError for any other failure (an unknown node among them)."""
        result = self._run("pbsnodes", args)
        failed = [line for line in result.stderr.splitlines() if _PBSNODES_FAILED in line.lower()]
        if not failed:
            return
        argv = list(result.argv)
        if all(_NOT_SENT in line for line in failed):
            raise NodeNotReady(f"{' '.join(argv)}: {failed[0].strip()}")
        raise CommandError(argv, result.returncode, result.stderr,
                           "pbsnodes reported a failure (it exits 0 when it fails)")

    def offline(self, name: str, note: str) -> None:
        """Mark a node offline (running jobs go on; no new job starts there)."""
        self._pbsnodes_change(["-o", "-N", clean_note(note), "--", name])

    def clear_offline(self, name: str, note: str = "") -> None:
        """Clear a node's offline mark, and set its note."""
        self._pbsnodes_change(["-c", "-N", clean_note(note), "--", name])

    def set_note(self, name: str, note: str) -> None:
        self._pbsnodes_change(["-N", clean_note(note), "--", name])

    def rerun(self, job_id: str) -> None:
        """Requeue a running job (``qrerun -f``: forced, since the job's mom may be gone with its
        instance; pbs_server then requeues it without the mom's word). Raises CommandError when
        pbs_server refuses, e.g. ``job is not rerunnable``."""
        self._run("qrerun", ["-f", "--", job_id])

    def purge(self, job_id: str) -> None:
        """Purge a job from pbs_server (``qdel -p``) without its mom's word: for a job whose node
        is gone with its instance, which would otherwise stay running on a dead node (and hold
        up the node's deletion while pbs_server tries to reach that mom)."""
        self._run("qdel", ["-p", "--", job_id])

    def schedule(self) -> None:
        """Ask pbs_server to run a scheduling cycle now."""
        self._qmgr("set server scheduling=true")
