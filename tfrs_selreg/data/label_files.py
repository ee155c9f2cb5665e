"""Teacher label files (``*.jsonl[.gz]``, ``*.tfrecord[.gz]``): listing, reading line by line, parsing rows.

Read by ``prepare --labels`` (a Beam DoFn per file) and by :class:`tfrs_selreg.tasks.TeacherPairs` (in process).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import zlib
from collections.abc import Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from tfrs_selreg.data import labels as labels_lib


def list_label_files(path: str) -> list[str]:
    """Label files named by ``--labels``: a file, a glob, or a folder holding them."""
    pattern = path
    if not any(c in path for c in "*?[") and not _is_label_file(path):
        pattern = path.rstrip("/") + "/*"
    matches = FileSystems.match([pattern])[0].metadata_list
    return sorted(m.path for m in matches if _is_label_file(m.path))


_BOM = b"\xef\xbb\xbf"


class LabelFileError(ValueError):
    """A label file that cannot be read at all (corrupt compression or framing); names the file."""


@contextlib.contextmanager
def _open_lines(path: str):
    """``path`` opened for reading lines; ``.gz`` through :mod:`gzip`, which, unlike Beam's
    ``CompressedFile``, raises on a truncated stream instead of ending early and losing its rows."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        if not path.endswith(".gz"):
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as f:
            yield f


def _lines(f, path: str):
    """The lines of ``f``; a broken compressed stream is a :class:`LabelFileError` that names ``path``."""
    while True:
        try:
            line = f.readline()
        except (OSError, EOFError, zlib.error) as e:
            raise LabelFileError(f"{path}: unreadable ({type(e).__name__}: {e}); is it a complete gzip file? "
                                 "Re-write or remove it.") from None
        if not line:
            return
        yield line


def _is_label_file(path: str) -> bool:
    name = os.path.basename(path)
    return any(name.endswith(s) for s in (".jsonl", ".jsonl.gz", ".tfrecord", ".tfrecord.gz"))


@dataclasses.dataclass(frozen=True)
class Rejected:
    """A label row that cannot be used: where it is, why, and its text (cut to 400 characters)."""

    path: str
    line: int
    reason: str
    raw: str


def read_label_file(path: str) -> Iterator[tuple[labels_lib.LabelRow, int] | Rejected]:
    """The rows of one label file as ``(row, line)`` (the record number for TFRecords), and a
    :class:`Rejected` for each malformed or invalid row; raises :class:`LabelFileError` on an unreadable file."""
    if ".tfrecord" in os.path.basename(path):
        yield from _tfrecords(path)
        return
    with _open_lines(path) as f:
        for line_no, raw in enumerate(_lines(f, path), start=1):
            if line_no == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            if not raw.strip():
                continue  # a blank line holds no row
            try:
                row = labels_lib.parse_json(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError, TypeError) as e:
                yield Rejected(path, line_no, labels_lib.REJECT_MALFORMED,
                               f"{e}: {raw[:400].decode('utf-8', 'replace')}")
                continue
            yield _checked(path, line_no, row)


def _tfrecords(path: str):
    import tensorflow as tf
    compression = "GZIP" if path.endswith(".gz") else ""
    n = 0
    records = tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator()
    while True:
        try:
            record = next(records)
        except StopIteration:
            break
        except tf.errors.OpError as e:
            raise LabelFileError(f"{path}: unreadable after record {n} ({type(e).__name__}: "
                                 f"{e.message.splitlines()[0]}); re-write or remove the file.") from None
        n += 1
        try:
            row = labels_lib.from_example_bytes(record)
        except (ValueError, IndexError, KeyError) as e:
            yield Rejected(path, n, labels_lib.REJECT_MALFORMED, str(e))
            continue
        yield _checked(path, n, row)


def _checked(path: str, line_no: int, row: labels_lib.LabelRow):
    reason = labels_lib.check_values(row)
    return Rejected(path, line_no, reason, row.to_json()) if reason else (row, line_no)
