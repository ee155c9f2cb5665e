"""Reading: the dataset reader's rows as interactions and catalog items, malformed rows tagged for the dead letters."""

from __future__ import annotations

import os
import socket
from typing import Any, Optional

import apache_beam as beam

from beam_pipelines.prepare.options import (
    COUNTS,
    REASON_BELOW_MIN_RATING,
    REASON_DUPLICATE_ITEM,
    REASON_UNKNOWN_ITEM,
    REJECTED,
)
from tfrs_selreg.data import label_files, readers
from tfrs_selreg.data.readers import lines

# Count keys of the interaction rows each worker process read: PrepareStats.rows_read_by_worker.
ROWS_BY_WORKER = "interaction_rows_read_by/"
# Output of ReadInteractions: accepted rows per element read.
ACCEPTED_ROWS = "accepted_rows"
# Tags of the values the shuffle by user brings together (what CoGroupByKey would add, see build_pipeline).
INTERACTIONS, LABELS = "interactions", "labels"


# Multi-output DoFn: Beam would infer a Union with TaggedOutput and reject the keyed main output.
@beam.typehints.with_output_types(Any)
class ReadInteractions(beam.DoFn):
    """Reader output -> ``(user_id, (INTERACTIONS, [(item_id, timestamp, rating, line), ...]))``; bad rows
    tagged; the number of accepted rows (``ACCEPTED_ROWS``).

    An element is a :class:`~tfrs_selreg.data.readers.lines.LineRange` of the interactions file, read
    with the side input ``first_lines`` (the number of each range's first line), or ``data_dir`` for a
    format the reader reads whole. Rows naming an item missing from the ``catalog`` side input (the list
    of items) are rejected as ``unknown_item``, so the million-row stream is not shuffled by item.
    Accepted rows are grouped by user within at most ``FLUSH_ROWS`` rows before they leave the DoFn
    (combiner lifting by hand), so the shuffle by user moves a few lists per user instead of one element
    per row where a user's rows lie together. The values come tagged for the shuffle by user (see
    ``pipeline.build_pipeline``). Rows read are also counted per worker process (``ROWS_BY_WORKER``).
    """

    FLUSH_ROWS = 100_000

    def __init__(self, reader: readers.DatasetReader, min_rating: Optional[float]):
        self._reader = reader
        self._min_rating = min_rating
        self._catalog, self._known = None, frozenset()

    def _known_ids(self, catalog: list) -> frozenset:
        if catalog is not self._catalog:  # the same side input object for every range of a bundle
            self._catalog, self._known = catalog, frozenset(item.item_id for item in catalog)
        return self._known

    def _rows(self, element, first_lines):
        if first_lines is None:
            yield from self._reader.read_interactions(element)
            return
        for entry in lines.range_lines(element, first_lines[(element.file.path, element.index)]):
            if isinstance(entry, readers.Rejected):
                yield entry
            else:
                yield from self._reader.parse_interaction_line(element.file, *entry)

    def process(self, element, catalog, first_lines=None):
        known = self._known_ids(catalog)
        # Counted here and emitted once: a count element per row would double the rows Beam moves.
        read = below_min_rating = buffered = accepted = 0
        by_user: dict[str, list] = {}
        for row in self._rows(element, first_lines):
            read += 1
            if isinstance(row, readers.Rejected):
                yield beam.pvalue.TaggedOutput(REJECTED, reject_record("interactions", row.source,
                                                                        row.line, row.reason, row.raw))
            elif row.item_id not in known:
                yield beam.pvalue.TaggedOutput(REJECTED, reject_record(
                    "interactions", row.source, row.line, REASON_UNKNOWN_ITEM,
                    f"user_id={row.user_id} item_id={row.item_id}"))
            elif self._min_rating is not None and (row.rating is None or row.rating < self._min_rating):
                below_min_rating += 1
            else:
                by_user.setdefault(row.user_id, []).append((row.item_id, row.timestamp, row.rating, row.line))
                buffered += 1
                if buffered >= self.FLUSH_ROWS:
                    yield from _tagged(by_user)
                    accepted += buffered
                    by_user, buffered = {}, 0
        yield from _tagged(by_user)
        yield beam.pvalue.TaggedOutput(ACCEPTED_ROWS, accepted + buffered)
        yield from counts(interaction_rows_read=read, **{REASON_BELOW_MIN_RATING: below_min_rating})
        if read:
            yield beam.pvalue.TaggedOutput(COUNTS, (f"{ROWS_BY_WORKER}{socket.gethostname()}:{os.getpid()}", read))


def _tagged(by_user: dict[str, list]):
    for user_id, rows in by_user.items():
        yield user_id, (INTERACTIONS, rows)


def counts(**counts: int):
    """``COUNTS`` outputs of the non-zero counts (zeros add nothing to the sums)."""
    for key, value in counts.items():
        if value:
            yield beam.pvalue.TaggedOutput(COUNTS, (key, value))


@beam.typehints.with_output_types(Any)
class ReadItems(beam.DoFn):
    """Reader output -> one element, the catalog: a list of ``Item``, one per item id (the first row of an
    id in reading order wins; the later ones are rejected as ``duplicate_item``); bad rows tagged.

    The items file is read whole by one call, so the catalog is deduplicated here, not in a shuffle by
    item id and a ``ToList`` (which cost seconds on one worker at 100k items: docs/results/scale.md).
    """

    def __init__(self, reader: readers.DatasetReader):
        self._reader = reader

    def process(self, data_dir: str):
        read, catalog = 0, {}
        for position, row in enumerate(self._reader.read_items(data_dir)):
            read += 1
            if isinstance(row, readers.Rejected):
                yield beam.pvalue.TaggedOutput(REJECTED, reject_record("items", row.source, row.line,
                                                                        row.reason, row.raw))
            elif row.item_id in catalog:
                yield beam.pvalue.TaggedOutput(REJECTED, reject_record(
                    "items", "catalog", position + 1, REASON_DUPLICATE_ITEM, f"item_id={row.item_id}"))
            else:
                catalog[row.item_id] = row
        yield list(catalog.values())
        yield from counts(item_rows_read=read)


def reject_record(what: str, source: str, line: int, reason: str, raw: str) -> dict:
    return {"input": what, "source": source, "line": line, "reason": reason, "raw": raw[:500]}


@beam.typehints.with_output_types(Any)
class ParseLabels(beam.DoFn):
    """Label file -> ``(user_id, (LABELS, (LabelRow, path, line)))``; malformed or invalid rows go to the dead
    letter."""

    def process(self, path: str):
        rows = 0
        for out in label_files.read_label_file(path):
            rows += 1
            if isinstance(out, label_files.Rejected):
                yield beam.pvalue.TaggedOutput(REJECTED, reject_record("labels", out.path, out.line, out.reason,
                                                                        out.raw))
            else:
                row, line = out
                yield row.user_id, (LABELS, (row, path, line))
        yield from counts(label_rows_read=rows)
