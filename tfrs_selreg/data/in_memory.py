"""A split's TFRecords parsed once into memory, with ids already mapped to vocabulary indices.

``tf.data`` spends most of an input step on per-record work (reading, shuffling and batching
serialized records), not on parsing. :class:`InMemorySplit` parses every record of a split once, maps
``user_id`` to its user index and every item-valued feature (``history``, ``item_id``, the teacher and
probe items) to its item index with the same lookup the models use (:func:`vocabulary_lookup`), and
keeps one column per feature. :func:`~tfrs_selreg.data.input_fn.make_dataset` then draws batches as
``tf.gather`` of a batch of row numbers, shuffled by a uniform permutation of all rows per pass; no
``tf.data`` element is a single record.

Memory: :func:`estimate_bytes` is the size of the columns (4 bytes per index and float, 8 per other
integer, for every slot of every feature). On ML-1M (988k training records, ``L = 10``, ``P = 8``,
``Q = 4``) that is about 0.3 GB; a split above the caller's bound is streamed instead.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfrs_selreg.data import input_fn, schema
from tfrs_selreg.data.prepared import PreparedData

_PARSE_BATCH = 8192


def vocabulary_lookup(vocabulary: Sequence[str], name: str) -> tf.keras.layers.StringLookup:
    """Id -> index over ``vocabulary``: the id on line ``k`` has index ``k + 1``; unknown ids and ``""`` 0."""
    return tf.keras.layers.StringLookup(vocabulary=list(vocabulary), num_oov_indices=1, mask_token=None, name=name)


def _column_bytes(feature: schema.FeatureSpec) -> int:
    slots = math.prod(feature.shape) if feature.shape else 1
    return slots * (8 if feature.dtype == "int64" else 4)


def estimate_bytes(spec: schema.Schema, roles: Sequence[str], records: int) -> int:
    """Bytes of the columns of ``records`` records holding the features of ``roles``."""
    return records * sum(_column_bytes(f) for f in spec.by_role(*roles))


@dataclasses.dataclass(frozen=True)
class InMemorySplit:
    """Columns ``{feature: [records, *shape]}`` of one split, rows in file order, file by file.

    Attributes:
      columns: string features as int32 indices (``user_id`` users, item-valued features items),
        other features as parsed.
      file_sizes: records per TFRecord file, in the sorted file order of ``input_fn.split_files``.
    """

    columns: dict[str, tf.Tensor]
    file_sizes: tuple[int, ...]

    @property
    def num_records(self) -> int:
        return sum(self.file_sizes)

    @property
    def nbytes(self) -> int:
        return sum(int(np.prod(c.shape)) * c.dtype.size for c in self.columns.values())

    @classmethod
    def load(cls, prepared_dir: str, split: str, roles: Sequence[str],
             names: Sequence[str] | None = None, max_records: int | None = None) -> InMemorySplit:
        """Parses the records of ``split`` (features of ``roles``, or only ``names`` of them) and maps ids to
        indices; with ``max_records``, only the first that many in file order are read."""
        data = PreparedData(prepared_dir)
        spec = schema.Schema.load(prepared_dir)
        features = input_fn.feature_spec(spec, roles)
        if names is not None:
            features = {name: features[name] for name in names}
        lookups = {schema.USER_ID: vocabulary_lookup(data.user_vocabulary(), "user_lookup")}
        items = vocabulary_lookup(data.item_vocabulary(), "item_lookup")
        for name, f in features.items():
            if f.dtype == tf.string and name != schema.USER_ID:
                lookups[name] = items
        def parse(records: tf.Tensor) -> dict[str, tf.Tensor]:
            batch = tf.io.parse_example(records, features)
            return {name: tf.cast(lookups[name](value), tf.int32) if name in lookups else value
                    for name, value in batch.items()}

        parts: dict[str, list[np.ndarray]] = {name: [] for name in features}
        sizes = []
        left = max_records
        for path in input_fn.split_files(prepared_dir, split):
            if left is not None and left <= 0:
                break
            size = 0
            records = tf.data.TFRecordDataset(path)
            if left is not None:
                records = records.take(left)
            batches = records.batch(_PARSE_BATCH).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
            for batch in batches.prefetch(tf.data.AUTOTUNE):
                for name, value in batch.items():
                    parts[name].append(value.numpy())
                size += len(parts[name][-1])
            sizes.append(size)
            if left is not None:
                left -= size
        columns = {}
        for name, f in features.items():
            dtype = np.int32 if name in lookups else f.dtype.as_numpy_dtype
            columns[name] = tf.constant(np.concatenate(parts[name]) if parts[name]
                                        else np.zeros([0, *f.shape], dtype))
        return cls(columns, tuple(sizes))

    def rows(self, rows: tf.Tensor, names: Sequence[str] | None = None) -> dict[str, tf.Tensor]:
        """The batch of row numbers ``rows [B]``: ``{feature: [B, *shape]}`` for the features ``names``
        (default: all)."""
        return {name: tf.gather(self.columns[name], rows) for name in (self.columns if names is None else names)}
