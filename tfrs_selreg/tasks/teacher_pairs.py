""":class:`TeacherPairs`: a user's teacher and probe pairs looked up at training time.

``prepare --labels`` writes a user's sampled pairs into every training record. A model with its own
``tf.data`` pipeline gets the same pairs from this layer instead: ``user_id [B]`` in, the training-only
features of :mod:`tfrs_selreg.data.schema` out (``teacher_*`` ``[B, P]``, ``probe_*`` ``[B, Q]``, and
``history_length [B]``), sampled from the user's joined label rows by :mod:`tfrs_selreg.data.pair_sampling`
with ``salt`` in place of the record's index: for ``salt = k`` the pairs are exactly those of the user's
``k``-th training record in a folder prepared with the same labels, seed, ``P`` and ``Q``. By default
``salt`` is the layer's training-call counter (one new sample per step). Unknown users get no pairs (mask
0, items ``""``, ``history_length`` 0).

Held in memory (``memory_bytes()``): a ``tf.lookup`` hash table of the user ids, 64 bytes per user of
per-user columns and hash-table values, and 16 bytes per teacher pair (20 for a probe); per call,
``[B, P + 1]`` int64 keys (``O(P)`` work per user, whatever its number of rows).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_selreg.data import label_files, label_join, pair_sampling, schema
from tfrs_selreg.data.prepared import PreparedData

_TEACHER_OUT = (schema.TEACHER_ITEM_I, schema.TEACHER_ITEM_J, schema.TEACHER_PREF, schema.TEACHER_CONFIDENCE)
_PROBE_OUT = (schema.PROBE_ITEM_I, schema.PROBE_ITEM_J, schema.PROBE_PREF, schema.PROBE_CONFIDENCE,
              schema.PROBE_TRUTH)
_USER_COLUMNS = ("teacher_prefix", "probe_prefix", "history_length", "teacher_start", "teacher_count", "probe_start",
                 "probe_count")


class _PairTable:
    """One kind's rows, flat and grouped by user (``offsets [U + 1]``; each user's start and count go to
    the per-user columns), packed as one int32 matrix ``[R + 1, C]`` (floats by their bits) so that a
    lookup is one gather; row ``R`` is padding (item ``pad_item``, numbers 0)."""

    def __init__(self, offsets: np.ndarray, columns: dict[str, np.ndarray], pad_item: int) -> None:
        self.pad_row = int(offsets[-1]) if len(offsets) else 0
        self.max_rows = int(np.diff(offsets).max()) if len(offsets) > 1 else 0
        self.names = tuple(columns)
        self.floats = tuple(k not in ("item_i", "item_j") for k in self.names)
        packed = np.stack([np.asarray(v, np.float32).view(np.int32) if f else np.asarray(v, np.int32)
                           for v, f in zip(columns.values(), self.floats)], axis=1).reshape(-1, len(self.names))
        pad = np.array([[0 if f else pad_item for f in self.floats]], np.int32)
        self.packed = tf.constant(np.concatenate([packed, pad]))
        self.nbytes = int(self.packed.shape.num_elements()) * 4

    def gather(self, flat: tf.Tensor) -> dict[str, tf.Tensor]:
        """The columns of rows ``flat [B, m]``: int32 items, float32 numbers."""
        values = tf.unstack(tf.gather(self.packed, flat), axis=-1)
        return {k: tf.bitcast(v, tf.float32) if f else v for k, v, f in zip(self.names, values, self.floats)}


class TeacherPairs(tf.keras.layers.Layer):
    """``user_id [B]`` -> the user's ``[P]`` teacher pairs and ``[Q]`` probe pairs (module docstring).

    Build it with :meth:`from_folders`. Args of the constructor (arrays, for a caller that has them):
      item_ids: the item vocabulary; pair items are indices into it.
      user_ids, history_length: per user.
      teacher, probes: ``(offsets [U + 1], {column: [R]})`` with columns ``item_i``, ``item_j`` (int32 item
        indices), ``pref``, ``confidence`` (float32) and, for probes, ``truth`` (float32); each user's rows
        in :func:`tfrs_selreg.data.label_join.join_user`'s order.
      teacher_pairs, probe_pairs: ``P`` and ``Q``.
      seed: the sampling seed (the prepare seed, for its pairs).
      item_index: give the pairs' items as int64 indices, ``item_ids[k]`` -> ``k + 1`` and 0 for padding
        (the index of ``SelectiveLLMRegularization`` and of a ``StringLookup`` over ``item_ids`` with one
        OOV slot), instead of ids: the task then looks up no strings for the pairs it drops.
    """

    def __init__(self, item_ids: Sequence[str], user_ids: Sequence[str], history_length: Sequence[int],
                 teacher: tuple[np.ndarray, dict[str, np.ndarray]], probes: tuple[np.ndarray, dict[str, np.ndarray]],
                 *, teacher_pairs: int = 8, probe_pairs: int = 4, seed: int = 0, item_index: bool = False,
                 join_counts: dict | None = None, **kwargs: Any) -> None:
        super().__init__(trainable=False, **kwargs)
        if not (1 <= teacher_pairs < 2**21 and 0 <= probe_pairs < 2**21):
            raise ValueError(f"TeacherPairs: teacher_pairs must be in 1 .. 2^21 - 1 and probe_pairs in 0 .. 2^21 - 1 "
                             f"(tfrs_selreg.data.pair_sampling), got {teacher_pairs} and {probe_pairs}.")
        self.teacher_pairs, self.probe_pairs, self.seed = int(teacher_pairs), int(probe_pairs), int(seed)
        self.item_index = bool(item_index)
        self.num_users = len(user_ids)
        self.join_counts = dict(join_counts or {})
        self._items = tf.constant(list(item_ids) + [""], tf.string)  # index len(item_ids): padding
        # Unknown users map to row U, whose counts and history length are 0.
        self._users = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(user_ids), tf.string),
                                                tf.range(len(user_ids), dtype=tf.int64)), default_value=len(user_ids))
        pad_item = -1 if self.item_index else len(item_ids)  # index mode: -1 + 1 = 0, the padding index
        self._teacher, self._probes = _PairTable(*teacher, pad_item), _PairTable(*probes, pad_item)
        keys = tf.constant([pair_sampling.user_key(u) for u in user_ids], tf.int64)
        per_user = np.zeros((len(user_ids) + 1, len(_USER_COLUMNS)), np.int64)
        head = pair_sampling.tf_mix(tf.constant(self.seed & (pair_sampling.MODULUS - 1), tf.int64), keys)
        for column, kind in ((0, pair_sampling.TEACHER), (1, pair_sampling.PROBE)):
            per_user[:-1, column] = pair_sampling.tf_mix(head, tf.constant(kind, tf.int64)).numpy()  # user_prefix
        per_user[:-1, 2] = np.asarray(history_length, np.int64)
        for column, (offsets, _) in ((3, teacher), (5, probes)):
            offsets = np.asarray(offsets, np.int64)
            per_user[:-1, column], per_user[:-1, column + 1] = offsets[:-1], np.diff(offsets)
        self._per_user = tf.constant(per_user)  # one gather gives a batch's user columns
        self._user_bytes = per_user.nbytes + 8 * len(user_ids)  # and the hash table's values
        # Every replica of a distributed step advances it alike: the first replica's update stands.
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    @classmethod
    def from_folders(cls, labels: str, prepared: str, *, teacher_pairs: int | None = None,
                     probe_pairs: int | None = None, seed: int | None = None, **kwargs: Any) -> TeacherPairs:
        """From a labels folder (or file, or glob) written by ``tfrs-selreg score`` and the prepared folder it
        scored: its users (histories, validation and test items) and catalog.

        ``teacher_pairs``, ``probe_pairs`` and ``seed`` default to the folder's ``prepare_config.json``.
        Rows are joined as ``prepare --labels`` joins them; ``join_counts`` says how many were kept and why
        the others were not (malformed, unknown user or item, validation/test leakage).
        """
        data = PreparedData(prepared)
        config = data.prepare_config()
        if config is not None:
            teacher_pairs = config.teacher_pairs if teacher_pairs is None else teacher_pairs
            probe_pairs = config.probe_pairs if probe_pairs is None else probe_pairs
            seed = config.seed if seed is None else seed
        files = label_files.list_label_files(labels)
        if not files:
            raise FileNotFoundError(f"{labels}: no label files (*.jsonl[.gz], *.tfrecord[.gz]); pass the --output "
                                    "folder of `tfrs-selreg score`.")
        counts: collections.Counter = collections.Counter()
        by_user: dict[str, list] = collections.defaultdict(list)
        for path in files:
            for out in label_files.read_label_file(path):
                if isinstance(out, label_files.Rejected):
                    counts[f"rejected_{out.reason}"] += 1
                else:
                    by_user[out[0].user_id].append(out)
        item_ids = data.item_vocabulary()
        index = {item: k for k, item in enumerate(item_ids)}
        user_ids, lengths, teacher, probes = [], [], _Builder(False), _Builder(True)
        for user in data.iter_users():
            t, p, rejected = label_join.join_user(by_user.pop(user.user_id, ()), index,
                                                  set(user.val_items) | set(user.test_items))
            counts.update(f"rejected_{reason}" for _, _, reason in rejected)
            counts["joined_teacher"] += len(t)
            counts["joined_probe"] += len(p)
            user_ids.append(user.user_id)
            lengths.append(len(user.train_items))
            teacher.add(t, index)
            probes.add(p, index)
        counts["rejected_unknown_user"] += sum(len(rows) for rows in by_user.values())
        return cls(item_ids, user_ids, lengths, teacher.build(), probes.build(), teacher_pairs=teacher_pairs or 8,
                   probe_pairs=4 if probe_pairs is None else probe_pairs, seed=seed or 0,
                   join_counts={k: v for k, v in sorted(counts.items()) if v}, **kwargs)

    def memory_bytes(self) -> int:
        """Bytes of the pair and user arrays (the hash table's own overhead comes on top)."""
        return self._teacher.nbytes + self._probes.nbytes + self._user_bytes

    def call(self, user_ids: tf.Tensor, salt: tf.Tensor | int | None = None, training: Any = None
             ) -> dict[str, tf.Tensor]:
        """The pair features of the users ``user_ids [B]``; ``salt`` a scalar or ``[B]`` int (default: the
        call counter, advanced by each call with ``training=True``)."""
        user_ids = tf.reshape(tf.convert_to_tensor(user_ids, tf.string), [-1])
        if salt is None:
            salt = self.step.assign_add(1) - 1 if training else self.step.read_value()
        salt = tf.broadcast_to(tf.cast(salt, tf.int64), tf.shape(user_ids))
        columns = tf.unstack(tf.gather(self._per_user, self._users.lookup(user_ids)), axis=-1)
        user = dict(zip(_USER_COLUMNS, columns))
        out = {schema.HISTORY_LENGTH: user["history_length"]}
        out.update(self._sample(self._teacher, user["teacher_prefix"], user["teacher_start"], user["teacher_count"],
                                salt, self.teacher_pairs, _TEACHER_OUT, schema.TEACHER_MASK))
        out.update(self._sample(self._probes, user["probe_prefix"], user["probe_start"], user["probe_count"],
                                salt, self.probe_pairs, _PROBE_OUT, schema.PROBE_MASK))
        return out

    def _sample(self, table: _PairTable, prefixes, start, count, salt, size: int, names, mask_name):
        if table.max_rows > size:
            chosen = pair_sampling.tf_slot_rows(prefixes, salt, count, size)
        else:
            chosen = tf.range(size, dtype=tf.int64)[None, :]
        real = chosen < count[:, None]
        columns = table.gather(tf.where(real, start[:, None] + chosen, table.pad_row))
        if self.item_index:
            item = lambda column: tf.cast(column, tf.int64) + 1  # noqa: E731  (padding: -1 + 1 = 0)
        else:
            item = lambda column: tf.gather(self._items, column)  # noqa: E731
        out = {names[0]: item(columns["item_i"]), names[1]: item(columns["item_j"]),
               names[2]: columns["pref"], names[3]: columns["confidence"], mask_name: tf.cast(real, tf.float32)}
        if len(names) > 4:
            out[names[4]] = columns["truth"]
        return out


class _Builder:
    """Collects one kind's rows user by user into :class:`_PairTable` arrays."""

    def __init__(self, probes: bool) -> None:
        self.probes = probes
        self.offsets = [0]
        self.rows: list = []

    def add(self, pairs, index: dict[str, int]) -> None:
        self.rows += [(index[p.item_i], index[p.item_j], p.pref, p.confidence, p.truth) for p in pairs]
        self.offsets.append(len(self.rows))

    def build(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        rows = np.array(self.rows, np.float64).reshape(-1, 5)
        columns = {"item_i": rows[:, 0].astype(np.int32), "item_j": rows[:, 1].astype(np.int32),
                   "pref": rows[:, 2].astype(np.float32), "confidence": rows[:, 3].astype(np.float32)}
        if self.probes:
            columns["truth"] = rows[:, 4].astype(np.float32)
        return np.array(self.offsets, np.int64), columns
