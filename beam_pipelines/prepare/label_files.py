"""Teacher label files (``*.jsonl[.gz]``, ``*.tfrecord[.gz]``): listing, reading line by line, parsing rows."""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.prepare.options import REJECTED
from beam_pipelines.prepare.read import counts, reject_record
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


@beam.typehints.with_output_types(Any)
class ParseLabels(beam.DoFn):
    """Label file -> ``(user_id, LabelRow)``; malformed or invalid rows go to the dead letter."""

    def process(self, path: str):
        if ".tfrecord" in os.path.basename(path):
            yield from self._tfrecords(path)
            return
        line_no = 0
        with _open_lines(path) as f:
            for line_no, raw in enumerate(_lines(f, path), start=1):
                if line_no == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
                if not raw.strip():
                    continue  # a blank line holds no row
                try:
                    row = labels_lib.parse_json(raw.decode("utf-8"))
                except (ValueError, UnicodeDecodeError, TypeError) as e:
                    yield beam.pvalue.TaggedOutput(REJECTED, reject_record(
                        "labels", path, line_no, labels_lib.REJECT_MALFORMED,
                        f"{e}: {raw[:400].decode('utf-8', 'replace')}"))
                    continue
                yield from self._checked(path, line_no, row)
        yield from counts(label_rows_read=line_no)

    def _tfrecords(self, path: str):
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
                yield beam.pvalue.TaggedOutput(REJECTED, reject_record(
                    "labels", path, n, labels_lib.REJECT_MALFORMED, str(e)))
                continue
            yield from self._checked(path, n, row)
        yield from counts(label_rows_read=n)

    def _checked(self, path, line_no, row):
        reason = labels_lib.check_values(row)
        if reason:
            yield beam.pvalue.TaggedOutput(REJECTED, reject_record(
                "labels", path, line_no, reason, row.to_json()))
        else:
            yield row.user_id, (row, path, line_no)
