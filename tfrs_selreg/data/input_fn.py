"""The ``tf.data`` input function: a prepared folder's TFRecords as batches of feature dicts.

Files are listed per split (``{split}-*.tfrecord``), read in parallel with ``interleave``, optionally
shuffled, batched as serialized strings and only then parsed with ``tf.io.parse_example`` (one
vectorized parse per batch instead of one per record), and prefetched.

Which features are parsed follows the roles of ``tfrs_selreg.data.schema``: ``serving`` and
``example`` features always, ``training_only`` features (teacher and probe pairs) only for the train
split, as in TF Ranking's separate training-only feature spec. The exporter reuses
:func:`feature_spec` with the ``serving`` role alone, so a SavedModel parses ``user_id`` and
``history`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import tensorflow as tf

from tfrs_selreg.data import prepared, schema

if TYPE_CHECKING:
    from tfrs_selreg.data.in_memory import InMemorySplit

_DTYPES = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}


def feature_spec(spec: schema.Schema, roles: Sequence[str]) -> dict[str, tf.io.FixedLenFeature]:
    """``{name: tf.io.FixedLenFeature}`` of the schema's features with one of ``roles``.

    Shapes and defaults come from the schema: a list feature of length ``n`` defaults to ``n`` copies of
    its padding value, so an example may omit it (e.g. a serving request without ``history``).
    """
    out = {}
    for f in spec.by_role(*roles):
        default = [f.default] * f.shape[0] if f.shape else f.default
        out[f.name] = tf.io.FixedLenFeature(f.shape, _DTYPES[f.dtype], default_value=default)
    if not out:
        raise ValueError(f"no feature of the schema has a role in {list(roles)}; "
                         f"roles are {schema.ROLE_SERVING!r}, {schema.ROLE_EXAMPLE!r}, {schema.ROLE_TRAINING_ONLY!r}.")
    return out


def split_files(prepared_dir: str, split: str) -> list[str]:
    """The sorted TFRecord shards of ``split``; raises ``FileNotFoundError`` when there are none."""
    if split not in schema.SPLITS:
        raise ValueError(f"split must be one of {schema.SPLITS}, got {split!r}.")
    pattern = prepared.split_pattern(prepared_dir, split)
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(
            f"no TFRecord files match {pattern}: {prepared_dir!r} has no {split!r} split. "
            "Point --prepared to a folder written by `tfrs-selreg prepare`.")
    return files


def make_dataset(
    prepared_dir: str,
    split: str,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int | None,
    include_training_only: bool | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
    shuffle_buffer: int = 10_000,
    in_memory: InMemorySplit | None = None,
) -> tf.data.Dataset:
    """Batches of ``{feature name: Tensor [batch, *shape]}`` from one split of a prepared folder.

    Args:
      prepared_dir: a folder written by ``tfrs-selreg prepare`` (local or ``gs://``).
      split: ``train``, ``val`` or ``test``.
      batch_size: examples per batch.
      shuffle: shuffle file order and examples (buffer ``shuffle_buffer``), reshuffled every pass.
      seed: seed of both shuffles; with a seed the element order is deterministic.
      include_training_only: parse the teacher/probe features; defaults to ``split == "train"``. Only
        training records carry them, so asking for them on another split is an error.
      repeat: repeat forever (for ``fit`` with ``steps_per_epoch``).
      drop_remainder: drop a last partial batch.
      shuffle_buffer: examples in the shuffle buffer.
      in_memory: this split already parsed (:class:`~tfrs_selreg.data.in_memory.InMemorySplit`, with the
        features of these roles at least): batches are gathered from its columns of these roles (ids as
        indices) and no record is read again. ``shuffle`` is then a uniform permutation of all examples
        per pass (no buffer).
    """
    if include_training_only is None:
        include_training_only = split == "train"
    if include_training_only and split != "train":
        raise ValueError(f"only the train split carries training-only features; got split={split!r} "
                         "with include_training_only=True.")
    files = split_files(prepared_dir, split)
    roles = [schema.ROLE_SERVING, schema.ROLE_EXAMPLE]
    if include_training_only:
        roles.append(schema.ROLE_TRAINING_ONLY)
    spec = feature_spec(schema.Schema.load(prepared_dir), roles)
    if in_memory is None:
        ds = tf.data.Dataset.from_tensor_slices(files)
        if shuffle:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if shuffle:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(lambda records: tf.io.parse_example(records, spec), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)
    if len(in_memory.file_sizes) != len(files) or not set(spec) <= set(in_memory.columns):
        raise ValueError(f"in_memory holds {len(in_memory.file_sizes)} file(s) with features "
                         f"{sorted(in_memory.columns)}; {prepared_dir!r} split {split!r} has {len(files)} with "
                         f"{sorted(spec)}: load it from the same split, with these roles at least.")
    return _in_memory_batches(in_memory, tuple(spec), batch_size=batch_size, shuffle=shuffle, seed=seed,
                              repeat=repeat, drop_remainder=drop_remainder)


def _in_memory_batches(in_memory: InMemorySplit, names: Sequence[str], *, batch_size: int, shuffle: bool,
                       seed: int | None, repeat: bool, drop_remainder: bool) -> tf.data.Dataset:
    """Batches of the columns ``names`` gathered from ``in_memory``; with ``shuffle`` a new uniform
    permutation of all rows every pass (pass ``e`` uses the stateless seed ``(seed, e)``).

    Every ``tf.data`` element is a whole batch of row numbers: tf.data's per-element cost (about 10 us
    per record for interleave + shuffle on 2 cores) would otherwise be most of the input's cost.
    """
    n = in_memory.num_records
    full = n // batch_size
    if full == 0 and (drop_remainder or n == 0):
        raise ValueError(f"batch_size {batch_size} is larger than the {n} example(s) of the split, and a partial "
                         "batch is dropped: lower --batch-size.")
    base_seed = tf.constant(seed if seed is not None else int(tf.random.uniform([], 0, 2**31 - 1, tf.int64)),
                            tf.int64)

    def one_pass(e: tf.Tensor) -> tf.data.Dataset:
        rows = tf.range(n, dtype=tf.int64)
        if shuffle:
            rows = tf.random.experimental.stateless_shuffle(rows, seed=tf.stack([base_seed, e]))
        batches = tf.data.Dataset.from_tensor_slices(tf.reshape(rows[:full * batch_size], [full, batch_size]))
        if not drop_remainder and n % batch_size:
            batches = batches.concatenate(tf.data.Dataset.from_tensors(rows[full * batch_size:]))
        return batches

    passes = tf.data.Dataset.range(2**62 if repeat else 1)
    ds = passes.flat_map(one_pass).map(lambda rows: in_memory.rows(rows, names), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def placeholder_batch(spec: schema.Schema, roles: Sequence[str], batch_size: int = 2) -> dict[str, tf.Tensor]:
    """A batch of padding values in the shapes of ``roles``' features: builds a model's variables."""
    out = {}
    for name, f in feature_spec(spec, roles).items():
        out[name] = tf.fill([batch_size, *f.shape], tf.constant(f.default_value if not f.shape
                                                                else f.default_value[0], f.dtype))
    return out
