"""The block line reader under the tailer and the file parser: every line once, bounded."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from phorque.adapters.torque.lines import LineReader


def read_all(data: bytes, *, block_size: int, max_line: int, final: bool):
    """Lines, their start offsets, the over-long heads and the reader's final state."""
    overlong: list[bytes] = []
    reader = LineReader(io.BytesIO(data), block_size=block_size, max_line=max_line,
                        on_overlong=overlong.append)
    lines, starts = [], []
    for block in reader.blocks(final=final):
        lines.extend(block.lines)
        starts.extend(block.offset_after(i) for i in range(len(block.lines)))
        assert block.offset_after(len(block.lines)) == block.end
    return lines, starts, overlong, reader


def expected(data: bytes, max_line: int, final: bool):
    pieces = data.split(b"\n")
    complete, partial = pieces[:-1], pieces[-1]
    lines, starts, overlong = [], [], 0
    offset = 0
    for piece in complete:
        if len(piece) > max_line:
            overlong += 1
        else:
            lines.append(piece.decode("utf-8", "replace"))
            starts.append(offset)
        offset += len(piece) + 1
    if partial and len(partial) > max_line:
        overlong += 1
    elif partial and final:
        lines.append(partial.decode("utf-8", "replace"))
        starts.append(offset)
    return lines, starts, overlong, offset, partial


@given(st.lists(st.one_of(st.binary(max_size=40), st.just(b"\n"), st.just(b"\xe2\x82\n"),
                          st.text(max_size=30).map(str.encode)), max_size=40),
       st.integers(1, 48), st.integers(1, 64), st.booleans())
@settings(max_examples=300)
def test_reader_yields_every_line_once_with_its_offset(parts, block_size, max_line, final):
    data = b"".join(parts)
    lines, starts, overlong, reader = read_all(data, block_size=block_size, max_line=max_line,
                                               final=final)
    want_lines, want_starts, want_overlong, end_of_complete, partial = expected(
        data, max_line, final)
    assert lines == want_lines
    assert starts == want_starts
    assert len(overlong) == want_overlong
    if len(partial) > max_line:
        assert reader.offset == len(data) and reader.skipping
    elif final:
        assert reader.offset == len(data) and reader.pending == 0
    else:
        assert reader.offset == end_of_complete and reader.pending == len(partial)


def test_growing_file_partial_line_is_held_back():
    stream = io.BytesIO()
    stream.write(b"first\nsec")
    stream.seek(0)
    reader = LineReader(stream)
    assert [b.lines for b in reader.blocks()] == [["first"]]
    assert (reader.offset, reader.pending) == (6, 3)
    stream.seek(0, io.SEEK_END)
    stream.write(b"ond\nthird\n")
    stream.seek(reader.offset)
    again = LineReader(stream, reader.offset)
    assert [line for b in again.blocks() for line in b.lines] == ["second", "third"]
    assert again.offset == len(stream.getvalue())


def test_overlong_line_is_skipped_across_readers():
    stream = io.BytesIO(b"x" * 100)
    heads: list[bytes] = []
    reader = LineReader(stream, max_line=50, block_size=16, on_overlong=heads.append)
    assert list(reader.blocks()) == []
    assert reader.skipping and reader.offset == 100 and heads == [b"x" * 16]
    stream.seek(0, io.SEEK_END)
    stream.write(b"yyy\nok\n")
    stream.seek(100)
    after = LineReader(stream, 100, max_line=50, block_size=16, skipping=True)
    assert [line for b in after.blocks() for line in b.lines] == ["ok"]
    assert not after.skipping and after.offset == 107
