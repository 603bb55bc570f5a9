"""Streams that behave like a command's pipe, for the parsers' tests."""

from __future__ import annotations

import io


class Trickle(io.RawIOBase):
    """A pipe that hands out at most ``size`` bytes per read, as a slow qstat would."""

    def __init__(self, data: bytes, size: int):
        self._data, self._pos, self._size = data, 0, size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._size if n is None or n < 0 else min(n, self._size)
        out = self._data[self._pos:self._pos + n]
        self._pos += len(out)
        return out
