"""Complete lines from a growing binary file, a block at a time, in bounded memory.

Torque's accounting log is read both whole (the replay) and while pbs_server appends to it (the
tailer). Both need the same things: text decoded with bad bytes replaced, a partial last line held
back until its newline arrives, the byte offset after every line (so a position can be saved),
and a cap on line length so that a file without newlines cannot make memory grow without end.

Reading a block, decoding it in one call and splitting it on ``"\\n"`` costs about what Python's
own line iteration does. A newline byte never occurs inside a UTF-8 sequence, so cutting a block
after its last newline never splits a character, and the decoded text has exactly as many
``"\\n"`` as the bytes. The partial line after the cut is not copied into the next block: the
stream is rewound to its start, so it must be seekable (a regular file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

#: Lines longer than this (bytes) are discarded: Torque's longest real lines are a few KiB.
MAX_LINE = 1 << 20
#: Bytes read per call; small enough to stay in the CPU's cache while it is split.
BLOCK_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Block:
    """Complete lines read in one go.

    ``lines`` are decoded and without their newline; ``data[:length]`` holds the same lines as
    bytes, joined by newlines; ``start`` is the byte offset of the first line in the file.
    ``terminated`` is false only for the last line of a complete file that lacks its newline.
    """

    lines: list[str]
    data: bytes
    length: int
    start: int
    terminated: bool = True

    @property
    def end(self) -> int:
        """The byte offset just after the last line (and its newline)."""
        return self.start + self.length + self.terminated

    def offset_after(self, count: int) -> int:
        """The byte offset just after the first ``count`` lines (their newlines included)."""
        if count <= 0:
            return self.start
        if count >= len(self.lines):
            return self.end
        pos = -1
        find = self.data.find
        for _ in range(count):
            pos = find(b"\n", pos + 1)
        return self.start + pos + 1


def _decode(data: bytes, length: int) -> list[str]:
    return str(memoryview(data)[:length], "utf-8", "replace").split("\n")


class LineReader:
    """Reads complete lines of a seekable binary stream from ``offset`` on.

    The stream must be positioned at ``offset``. ``offset`` always tells where the first unread
    line begins: after a block is handed out it points past that block. A partial line at the
    end of the stream is left unread (``pending`` counts its bytes) unless ``final`` is passed
    to :meth:`blocks`, for a file that is complete and merely lacks its last newline.

    A line longer than ``max_line`` is never held whole: ``on_overlong(head)`` is called with its
    first bytes and it is skipped. If its end has not been written yet, ``skipping`` stays true
    (pass it to the next reader of the same file) until the newline is found.
    """

    def __init__(self, stream: IO[bytes], offset: int = 0, *, max_line: int = MAX_LINE,
                 block_size: int = BLOCK_SIZE, skipping: bool = False,
                 on_overlong: Callable[[bytes], None] | None = None):
        self._stream = stream
        self.offset = offset
        self.max_line = max_line
        self.block_size = max(1, min(block_size, max_line))
        self.skipping = skipping
        self.pending = 0
        self._on_overlong = on_overlong

    def blocks(self, final: bool = False) -> Iterator[Block]:
        """Blocks of complete lines until the end of the stream."""
        stream = self._stream
        size = self.block_size
        while True:
            data = stream.read(size)
            if not data:
                self.pending = 0
                return
            if self.skipping:
                newline = data.find(b"\n")
                if newline < 0:
                    self.offset += len(data)
                    continue
                self.offset += newline + 1
                self.skipping = False
                stream.seek(self.offset)
                continue
            cut = data.rfind(b"\n")
            if cut < 0:
                data = self._one_long_line(data)
                if not data:
                    continue  # over-long: skipped
                cut = data.rfind(b"\n")
                if cut < 0:  # the end of the stream, inside a line
                    self.pending = len(data)
                    if final:
                        start = self.offset
                        self.offset += len(data)
                        self.pending = 0
                        yield Block(_decode(data, len(data)), data, len(data), start, False)
                    return
            start = self.offset
            self.offset = start + cut + 1
            self.pending = len(data) - cut - 1
            yield Block(_decode(data, cut), data, cut, start)
            if self.pending:
                stream.seek(self.offset)

    def _one_long_line(self, data: bytes) -> bytes:
        """Read on until a newline or the end of the stream, up to ``max_line`` bytes.

        Returns the bytes read, or ``b""`` when the line was over-long and has been skipped.
        """
        parts = [data]
        total = len(data)
        while True:
            if total > self.max_line:
                self._overlong(parts[0])
                self.offset += total
                self.skipping = True
                return b""
            more = self._stream.read(self.block_size)
            if not more:
                return b"".join(parts)
            newline = more.find(b"\n")
            if newline >= 0 and total + newline > self.max_line:
                self._overlong(parts[0])
                self.offset += total + newline + 1
                self._stream.seek(self.offset)
                return b""
            parts.append(more)
            total += len(more)
            if newline >= 0:
                return b"".join(parts)

    def _overlong(self, head: bytes) -> None:
        if self._on_overlong is not None:
            self._on_overlong(head[:200])
