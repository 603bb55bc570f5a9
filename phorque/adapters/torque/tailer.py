"""Following Torque's accounting log while pbs_server writes it.

pbs_server appends to ``server_priv/accounting/YYYYMMDD``, named by its local date, and opens the
next day's file lazily with the first record after midnight (``acct_open``). So the tailer reads
its current file to the end, and moves on only when a later-named file exists: once it does,
Torque will not write to the old one again. Several days may pass without a record, so the next
file is the next name in order, not tomorrow's date. ``pbs_server -A FILE`` pins a single file;
pass that file instead of the directory and there is no moving on.

Every poll reopens the current file by name and compares it with the saved position:

- a different inode means the file was replaced: read the new one from its start;
- a size below the saved offset means it was truncated: warn and read it again from the start;
- a missing file (deleted, or pruned by ``accounting_keep_days`` while Phorque was stopped)
  is passed over as soon as a later file exists.

Only regular files are read (a symlink to one too). A FIFO, a device or a symlink to one among
the day files is skipped with a logged error: opening a FIFO for reading blocks until a writer
comes, and a device never ends, either of which would stop the daemon, its watcher or its first
evaluation. Files are opened non-blocking and checked with ``fstat`` before the first read, so a
file swapped for a FIFO after the directory was listed is caught too.

A partial last line is left unread until its newline arrives, so :attr:`position` always sits
at the start of a line; saved after the caller has handled the records of a poll, it lets a
restarted tailer go on without reading a line twice or missing one. A line longer than
:data:`~phorque.adapters.torque.lines.MAX_LINE` is dropped with a warning as it streams by.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from dataclasses import asdict, dataclass
from typing import Any, cast

from phorque.adapters.private import replace_atomically
from phorque.adapters.torque.accounting import AccountingParser, Record
from phorque.adapters.torque.lines import MAX_LINE, Block, LineReader

log = logging.getLogger("phorque.torque.tailer")

_DAY_FILE = re.compile(r"\d{8}")


class NotRegularFile(OSError):
    """A day file that is a FIFO, a device or a socket: never read."""


def open_regular(path: str) -> Any:
    """Open ``path`` for reading without ever blocking; :class:`NotRegularFile` unless it is a
    regular file (after following symlinks)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"{path} is not a regular file ({_kind(mode)}); it is not read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a file"


@dataclass(frozen=True)
class TailPosition:
    """Where reading goes on: the file's name (``20261125``), its inode and a byte offset.

    The offset is the start of a line. ``inode`` 0 accepts whatever file has that name. A
    position with an empty ``file`` lies before every file of the directory.
    """

    file: str
    inode: int
    offset: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TailPosition:
        """Raises ValueError unless ``data`` is a dict with a str file and int inode and offset."""
        if not isinstance(data, dict):
            raise ValueError(f"not a position: {data!r}")
        file, inode, offset = data.get("file"), data.get("inode"), data.get("offset")
        if not isinstance(file, str) or "/" in file or file in (".", ".."):
            raise ValueError(f"bad file name in position: {file!r}")
        for name, value in (("inode", inode), ("offset", offset)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"bad {name} in position: {value!r}")
        # Both checked in the loop above, which the type checker does not follow.
        return cls(file, cast(int, inode), cast(int, offset))


class PositionFile:
    """A tail position kept in a small JSON file, replaced atomically on each save."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)

    def load(self) -> TailPosition | None:
        """The saved position; None when there is none or it cannot be read (with a warning)."""
        try:
            with open(self.path, encoding="utf-8") as stream:
                return TailPosition.from_dict(json.load(stream))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s: cannot read the saved accounting position (%s); starting afresh",
                        self.path, exc)
            return None

    def save(self, position: TailPosition) -> None:
        """Write a temporary file (mode 0600), fsync it and rename it over the old one."""
        replace_atomically(self.path, json.dumps(position.to_dict()), ".position-")


class AccountingTailer:
    """Reads new accounting records as they are written; see the module's docstring.

    ``directory`` is ``server_priv/accounting`` or a single pinned file (``pbs_server -A``);
    ``single_file`` says which, and is guessed from what exists when left None. Without a
    position the tailer starts at the end of the newest file, or at its start with
    ``from_start``.
    """

    def __init__(self, directory: str | os.PathLike[str], position: TailPosition | None = None,
                 parser: AccountingParser | None = None, from_start: bool = False,
                 *, single_file: bool | None = None):
        path = os.fspath(directory)
        self.single = os.path.isfile(path) if single_file is None else single_file
        self.directory = os.path.dirname(path) if self.single else path
        self._single_name = os.path.basename(path) if self.single else ""
        self.parser = parser if parser is not None else AccountingParser(path)
        self._skipping = False
        self._warned = ""
        self._refused: set[str] = set()  # day names that are not regular files, logged once
        if position is None:
            position = self._initial(from_start)
        elif self.single and position.file != self._single_name:
            log.warning("%s: saved position names %r; reading the file from its start",
                        path, position.file)
            position = TailPosition(self._single_name, 0, 0)
        self._pos = position

    @property
    def position(self) -> TailPosition:
        """The position just after the last line returned (or skipped as malformed)."""
        return self._pos

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _names(self) -> list[str]:
        if self.single:
            return [self._single_name]
        try:
            entries = [e for e in os.scandir(self.directory) if _DAY_FILE.fullmatch(e.name)]
        except OSError as exc:
            self._warn_once(f"list {self.directory}",
                            "%s: cannot list the accounting directory: %s", self.directory, exc)
            return []
        names = []
        for entry in entries:
            try:
                mode = entry.stat().st_mode  # follows a symlink; never opens the file
            except OSError:
                continue  # deleted meanwhile, or a dangling symlink
            if stat.S_ISREG(mode):
                names.append(entry.name)
            elif entry.name not in self._refused:
                self._refused.add(entry.name)
                log.error("%s is not a regular file (%s); the accounting tailer skips it",
                          entry.path, _kind(mode))
        return sorted(names)

    def _later(self) -> str | None:
        """The first file named after the current one, if any."""
        if self.single:
            return None
        current = self._pos.file
        for name in self._names():
            if name > current:
                return name
        return None

    def _initial(self, from_start: bool) -> TailPosition:
        names = self._names()
        if not names:
            # Every file that appears from now on holds only new records.
            return TailPosition("", 0, 0)
        name = names[-1]
        try:
            with open_regular(self._path(name)) as stream:
                inode = os.fstat(stream.fileno()).st_ino
                if from_start:
                    return TailPosition(name, inode, 0)
                return TailPosition(name, inode, self._line_start_before_end(stream))
        except OSError as exc:
            log.warning("%s: cannot open: %s", self._path(name), exc)
            return TailPosition(name, 0, 0)

    def _line_start_before_end(self, stream: Any) -> int:
        """The offset after the last newline: a line being written now is a new record."""
        size = stream.seek(0, os.SEEK_END)
        start = max(0, size - MAX_LINE)
        stream.seek(start)
        tail = stream.read(size - start)
        newline = tail.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        if start == 0:
            return 0
        self._skipping = True  # inside an over-long line: skip to its end
        return size

    def poll(self, limit: int | None = None) -> list[Record]:
        """The records of complete lines written since the last poll, in order (at most ``limit``)."""
        out: list[Record] = []
        if limit is not None and limit <= 0:
            return out
        while True:
            if not self._pos.file:
                first = self._later()
                if first is None:
                    return out
                self._switch(first)
            # Look for a later file before reading: once it exists, the current file is final,
            # so reading it to the end afterwards cannot miss a line written in between.
            later = self._later()
            stopped, pending = self._read_current(out, limit, later)
            if stopped or later is None:
                return out
            if pending:
                self.parser.reject("incomplete last line", f"{pending} bytes",
                                   f"{self._path(self._pos.file)}@{self._pos.offset}")
            self._switch(later)

    def _switch(self, name: str) -> None:
        log.info("accounting: now reading %s", self._path(name))
        self._pos = TailPosition(name, 0, 0)
        self._skipping = False

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        """Warn about a lasting problem once, not at every poll, until it clears."""
        if self._warned != key:
            log.warning(message, *args)
            self._warned = key

    def _read_current(self, out: list[Record], limit: int | None,
                      later: str | None) -> tuple[bool, int]:
        """Read complete lines of the current file into ``out``.

        Returns ``(stopped, pending)``: whether the limit stopped the reading, and how many bytes
        of a partial last line were left unread.
        """
        pos = self._pos
        path = self._path(pos.file)
        try:
            stream = open_regular(path)
        except NotRegularFile as exc:
            if pos.file not in self._refused:
                self._refused.add(pos.file)
                log.error("%s", exc)
            return False, 0
        except FileNotFoundError:
            if later is None:
                self._warn_once(f"gone {path}", "%s: the current accounting file is gone; "
                                "waiting for a later one", path)
            else:
                log.warning("%s is gone; going on with %s", path, later)
            return False, 0
        except OSError as exc:
            self._warn_once(f"open {path}", "%s: cannot open: %s", path, exc)
            return False, 0
        self._warned = ""
        with stream:
            stat = os.fstat(stream.fileno())
            offset = pos.offset
            if pos.inode and stat.st_ino != pos.inode:
                log.warning("%s was replaced (inode %d, was %d); reading it from the start",
                            path, stat.st_ino, pos.inode)
                offset = 0
                self._skipping = False
            elif stat.st_size < offset:
                log.warning("%s was truncated to %d bytes (position %d); reading it again "
                            "from the start", path, stat.st_size, offset)
                offset = 0
                self._skipping = False
            self._pos = pos = TailPosition(pos.file, stat.st_ino, offset)
            stream.seek(offset)
            return self._read_lines(stream, path, out, limit)

    def _read_lines(self, stream: Any, path: str, out: list[Record],
                    limit: int | None) -> tuple[bool, int]:
        parser = self.parser

        def overlong(head: bytes) -> None:
            parser.reject(f"longer than {MAX_LINE} bytes", head, f"{path}@{reader.offset}")

        name, inode = self._pos.file, self._pos.inode
        reader = LineReader(stream, self._pos.offset, skipping=self._skipping, on_overlong=overlong)
        for block in reader.blocks():
            room = None if limit is None else limit - len(out)

            def locate(i: int, b: Block = block) -> str:
                return f"{path}@{b.offset_after(i)}"
            used = parser.feed_lines(block.lines, out, room, locate)
            if used < len(block.lines) or (limit is not None and len(out) >= limit):
                self._pos = TailPosition(name, inode, block.offset_after(used))
                self._skipping = False
                return True, 0
            self._pos = TailPosition(name, inode, reader.offset)
        self._pos = TailPosition(name, inode, reader.offset)
        self._skipping = reader.skipping
        return False, reader.pending
