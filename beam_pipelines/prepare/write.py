"""Writing: TFRecord shards, the catalog and vocabularies, the users files."""

from __future__ import annotations

import collections
import os
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil

from beam_pipelines.prepare.options import REJECTED
from beam_pipelines.prepare.user_examples import user_records
from tfrs_selreg.data import prepared, schema
from tfrs_selreg.data.prepare_config import PrepareConfig

USER_IDS = "user_ids"


@beam.typehints.with_output_types(Any)
class WriteShard(beam.DoFn):
    """``(shard, [(UserSplit, label rows) or None])`` -> the shard's files: ``{split}-SSSSS-of-NNNNN.tfrecord``
    (records ordered by their seeded sort key) and ``users-SSSSS-of-NNNNN.jsonl`` (users by id); emits
    the counts, the rejected label rows (``REJECTED``) and the ids of users with training items
    (``USER_IDS``). ``None`` marks a shard that may have no user, so that every file of the set exists.

    A shard's users arrive in one group and its records are built here, so the only shuffle after the
    one by user moves the users' splits, not the (about ten times larger) encoded records; a shard's
    memory is bounded by ``--examples-per-shard``.
    """

    def __init__(self, config: PrepareConfig, output: str, with_labels: bool):
        self._config, self._output, self._with_labels = config, output, with_labels

    def process(self, element, catalog, num_shards):
        shard, values = element
        users = sorted((v for v in values if v is not None), key=lambda v: v[0].user_id)
        records: dict[str, list] = {split: [] for split in schema.SPLITS}
        counts: collections.Counter = collections.Counter()
        user_lines = []
        for split, label_rows in users:
            out = user_records(split, label_rows, catalog, self._config, self._with_labels)
            for name, rows in out.records.items():
                records[name] += rows
            for reject in out.rejected:
                yield beam.pvalue.TaggedOutput(REJECTED, reject)
            counts.update(out.counts)
            user_lines.append(out.user.to_json())
            if out.user.train_items:
                yield beam.pvalue.TaggedOutput(USER_IDS, out.user.user_id)
        for name in schema.SPLITS:
            path = os.path.join(self._output, f"{name}-{shard:05d}-of-{num_shards:05d}.tfrecord")
            # Beam's own TFRecord framing (what WriteToTFRecord writes, CRCs by google-crc32c) instead of
            # tf.io.TFRecordWriter: importing TensorFlow costs each worker process seconds.
            with FileSystems.create(path) as f:
                for _, record in sorted(records[name]):
                    _TFRecordUtil.write_record(f, record)
            counts[f"{name}_records"] += len(records[name])
        write_text(os.path.join(self._output, prepared.users_shard_name(shard, num_shards)), user_lines)
        counts["users_written"] += len(user_lines)
        yield from counts.items()


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


def write_user_vocabulary(output: str):
    """Writes ``vocab/users.txt`` (sorted): the ids alone are the one per-user list on one worker."""
    def write(user_ids: list[str]):
        write_text(os.path.join(output, prepared.USERS_VOCAB), sorted(user_ids))
        return "user_vocabulary", len(user_ids)
    return write
