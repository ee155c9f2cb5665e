"""Writing: TFRecord shards, the catalog and vocabularies, the users files."""

from __future__ import annotations

import os
from typing import Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil

from tfrs_selreg.data import prepared


class WriteShard(beam.DoFn):
    """Writes one shard of one split, records ordered by their seeded sort key (deterministic)."""

    def __init__(self, output: str):
        self._output = output

    def process(self, element, num_shards):
        (split, shard), values = element
        records = sorted(r for batch in values for r in batch)
        path = os.path.join(self._output, f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord")
        # Beam's own TFRecord framing (what WriteToTFRecord writes, CRCs by google-crc32c) instead of
        # tf.io.TFRecordWriter: importing TensorFlow costs each worker process seconds.
        with FileSystems.create(path) as f:
            for _, record in records:
                _TFRecordUtil.write_record(f, record)
        yield f"{split}_records", len(records)


def write_text(path: str, lines: Iterable[str]) -> None:
    with FileSystems.create(path) as f:
        for line in lines:
            f.write(line.encode("utf-8") + b"\n")


class WriteCatalog(beam.DoFn):
    """Writes vocab/items.txt and items.jsonl in catalog order."""

    def __init__(self, output: str):
        self._output = output

    def process(self, catalog):
        import dataclasses
        rows = []
        for item_id in catalog["order"]:
            item = dataclasses.replace(catalog["items"][item_id],
                                       popularity=catalog["popularity"][item_id],
                                       long_tail=item_id in catalog["long_tail"])
            rows.append(item.to_json())
        write_text(os.path.join(self._output, prepared.ITEMS_VOCAB), catalog["order"])
        write_text(os.path.join(self._output, prepared.ITEMS_FILE), rows)
        yield ("items", len(catalog["order"]))
        yield ("long_tail_items", len(catalog["long_tail"]))
        yield ("long_tail_max_popularity", catalog["long_tail_max_popularity"])
        yield ("items_with_training_interactions", sum(1 for v in catalog["popularity"].values() if v))


class WriteUsers(beam.DoFn):
    """Writes one users file, ``users-SSSSS-of-NNNNN.jsonl`` (users sorted by id); ``None`` rows mark a
    shard that has no user, so that every file of the set exists."""

    def __init__(self, output: str):
        self._output = output

    def process(self, element, num_shards):
        shard, rows = element
        rows = sorted(row for row in rows if row is not None)
        write_text(os.path.join(self._output, prepared.users_shard_name(shard, num_shards)),
                   [line for _, line in rows])
        yield "users_written", len(rows)


def write_user_vocabulary(output: str):
    """Writes ``vocab/users.txt`` (sorted): the ids alone are the one per-user list on one worker."""
    def write(user_ids: list[str]):
        write_text(os.path.join(output, prepared.USERS_VOCAB), sorted(user_ids))
        return "user_vocabulary", len(user_ids)
    return write
