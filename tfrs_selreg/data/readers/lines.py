"""Reading a file of one row per line in byte ranges, so that many workers read one large file.

A range ``[start, end)`` owns the lines that *begin* in it (a line begins at byte 0 or right after a
``\\n``); the lines of consecutive ranges are exactly the file's lines, each once. Line numbers are
global and 1-based, as :func:`tfrs_selreg.data.readers.base.text_lines` numbers them: the first line of
range ``k`` is ``1 + `` the number of lines the earlier ranges own (:func:`count_lines`, a first cheap
pass), so dead letters keep file and line, and readers that order rows by line order them the same.
Compressed files cannot be entered in the middle; they are one range read whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from tfrs_selreg.data.readers.base import REJECT_BAD_ENCODING, LineFile, Rejected, reject, text_lines

_BLOCK = 1 << 20


@dataclasses.dataclass(frozen=True)
class LineRange:
    """Bytes ``[start, end)`` of ``file``, range number ``index`` of the file's ranges (``end`` None: all)."""

    file: LineFile
    index: int
    start: int
    end: int | None


def is_compressed(path: str) -> bool:
    return CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED


def ranges(file: LineFile, range_bytes: int) -> list[LineRange]:
    """The file cut into ranges of about ``range_bytes`` (one range for a compressed or empty file)."""
    size = FileSystems.match([file.path])[0].metadata_list[0].size_in_bytes
    if is_compressed(file.path) or size == 0:
        return [LineRange(file, 0, 0, None)]
    starts = list(range(0, size, range_bytes))
    return [LineRange(file, k, s, min(s + range_bytes, size)) for k, s in enumerate(starts)]


def _owned(r: LineRange) -> Iterator[bytes]:
    """The raw lines (without ``\\n``) that begin in ``r``."""
    f = FileSystems.open(r.file.path, compression_type=CompressionTypes.UNCOMPRESSED)
    try:
        pos = r.start
        if r.start > 0:
            f.seek(r.start - 1)
            if f.read(1) != b"\n":  # r.start is inside a line that an earlier range owns
                pos += len(f.readline())
        while pos < r.end:
            line = f.readline()
            if not line:
                break
            pos += len(line)
            yield line[:-1] if line.endswith(b"\n") else line
    finally:
        f.close()


def count_lines(r: LineRange) -> int:
    """How many lines begin in ``r`` (blank ones included: they take a line number).

    A line begins at byte 0 and after every ``\\n`` but the file's last byte, so the lines that begin in
    ``[start, end)`` are ``[start == 0]`` plus the ``\\n`` bytes in ``[start - 1, end - 1)``: counted in
    blocks (``bytes.count``), not line by line.
    """
    if r.end is None:
        return 0  # the only range of its file: numbered from 1 whatever this says
    begin = max(r.start - 1, 0)
    left, n = r.end - 1 - begin, int(r.start == 0)
    f = FileSystems.open(r.file.path, compression_type=CompressionTypes.UNCOMPRESSED)
    try:
        f.seek(begin)
        while left > 0:
            block = f.read(min(_BLOCK, left))
            if not block:
                break
            n += block.count(b"\n")
            left -= len(block)
    finally:
        f.close()
    return n


def first_line_numbers(counts: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """``{(path, range index): number of its first line}`` from each range's :func:`count_lines`."""
    out, totals = {}, {}
    for path, index in sorted(counts):
        out[(path, index)] = 1 + totals.get(path, 0)
        totals[path] = totals.get(path, 0) + counts[(path, index)]
    return out


def range_lines(r: LineRange, first: int) -> Iterator[tuple[int, str] | Rejected]:
    """``(line number, text)`` of every non-blank line of ``r`` after the header, or a Rejected for a line
    that does not decode; the same entries :func:`text_lines` gives for those lines."""
    entries = text_lines(r.file.path, r.file.encoding) if r.end is None else _decoded(r, first)
    for entry in entries:
        if isinstance(entry, Rejected) or entry[0] > r.file.header_line:
            yield entry


def _decoded(r: LineRange, first: int) -> Iterator[tuple[int, str] | Rejected]:
    for number, raw in enumerate(_owned(r), start=first):
        raw = raw.rstrip(b"\r")
        try:
            line = raw.decode(r.file.encoding)
        except UnicodeDecodeError:
            if raw.strip():
                yield reject(r.file.path, number, REJECT_BAD_ENCODING, raw)
            continue
        if line and not line.isspace():
            yield number, line
