"""The prepare job's ``tf.train.Example`` records: padded histories and one record per interaction."""

from __future__ import annotations

import functools
from typing import Optional, Sequence

from tfrs_selreg.data import example_codec as codec
from tfrs_selreg.data import schema
from tfrs_selreg.data.labels import LabelPair

# --- tf.train.Example records ----------------------------------------------------------------


# Map entries in sorted key order, as ``example_codec.encode_example`` writes them.
_BASE_ORDER = sorted((schema.USER_ID, schema.ITEM_ID, schema.HISTORY, schema.TIMESTAMP, schema.RATING,
                         schema.HISTORY_LENGTH, schema.COLD_START, schema.ITEM_POPULARITY, schema.LONG_TAIL))
_TRAINING_ORDER = sorted(_BASE_ORDER + [
    schema.TEACHER_ITEM_I, schema.TEACHER_ITEM_J, schema.TEACHER_PREF, schema.TEACHER_CONFIDENCE, schema.TEACHER_MASK,
    schema.PROBE_ITEM_I, schema.PROBE_ITEM_J, schema.PROBE_PREF, schema.PROBE_CONFIDENCE, schema.PROBE_TRUTH,
    schema.PROBE_MASK])


def padded_history(items: Sequence[str], length: int) -> list[str]:
    """The last ``length`` items, oldest first, left-padded with '' (newest item in the last slot)."""
    tail = list(items[-length:]) if length else []
    return [""] * (length - len(tail)) + tail


def make_example(
    *,
    user_id: str,
    item_id: str,
    history: Sequence[str],
    timestamp: int,
    rating: Optional[float],
    history_length: int,
    cold_start: bool,
    item_popularity: int,
    long_tail: bool,
    teacher_pairs: Optional[Sequence[LabelPair]] = None,
    probe_pairs: Optional[Sequence[LabelPair]] = None,
    num_teacher_pairs: int = 0,
    num_probe_pairs: int = 0,
) -> bytes:
    """One serialized ``tf.train.Example`` in the layout of ``schema.build_schema``.

    Records are written with :mod:`example_codec` (byte-identical to protobuf's deterministic
    serialization, several times faster).

    ``teacher_pairs`` and ``probe_pairs`` are :class:`~tfrs_selreg.data.labels.LabelPair` rows (a probe's
    ``truth`` is written, a teacher pair's is not); both are padded to the schema's ``P`` and ``Q``.
    When both are ``None`` (validation/test records) the training-only features are omitted.
    """
    return UserExamples(user_id, history_length, cold_start).example(
        item_id, history_entry(history), timestamp, rating, item_popularity, long_tail,
        teacher_pairs, probe_pairs, num_teacher_pairs, num_probe_pairs)


def history_entry(history: Sequence[str]) -> bytes:
    """The ``history`` map entry of the item ids ``history`` (already padded)."""
    return encoded_history_entry([codec.string_list_entry(item) for item in history])


def encoded_history_entry(slots: Sequence[bytes]) -> bytes:
    """The ``history`` map entry of item ids already encoded by ``example_codec.string_list_entry``."""
    payload = b"".join(slots)
    return codec.entry_prefix(schema.HISTORY, codec.BYTES_LIST, len(payload)) + payload


class UserExamples:
    """:func:`make_example` for the records of one user, with the parts its records share encoded once.

    The map entries of an ``Example`` are in key order, and that order puts the user's own entries
    (``cold_start``, ``history_length``, ``user_id``), an item's (``item_id``, ``item_popularity``,
    ``long_tail``), the probe pairs' and the teacher pairs' each in one run (checked below), so a record
    is the concatenation of blocks: the user's, encoded here, an item's and the pairs', cached across
    users, and the history, timestamp and rating entries. :meth:`histories` gives the history entries of
    the records of a user's training sequence (record ``k``: the ``L`` items before item ``k``).
    """

    def __init__(self, user_id: str, history_length: int, cold_start: bool):
        self._cold = codec.int64_entry(schema.COLD_START, int(cold_start))
        self._length = codec.int64_entry(schema.HISTORY_LENGTH, history_length)
        self._user = codec.string_entry(schema.USER_ID, user_id)

    def example(self, item_id: str, history: bytes, timestamp: int, rating: Optional[float], item_popularity: int,
                long_tail: bool, teacher_pairs: Optional[Sequence[LabelPair]] = None,
                probe_pairs: Optional[Sequence[LabelPair]] = None, num_teacher_pairs: int = 0,
                num_probe_pairs: int = 0) -> bytes:
        """One record, ``history`` from :func:`history_entry` (or :meth:`histories`); arguments as in
        :func:`make_example`."""
        item = _item_block(item_id, item_popularity, bool(long_tail))
        rating_entry = codec.float_entry(schema.RATING, 0.0 if rating is None else float(rating))
        packed = codec.varint(timestamp)
        stamp = codec.entry_prefix(schema.TIMESTAMP, codec.INT64_LIST, len(packed)) + packed
        if teacher_pairs is None and probe_pairs is None:
            return codec.encode_entries((self._cold, history, self._length, item, rating_entry, stamp, self._user))
        probes = _pair_block(tuple(probe_pairs or ()), num_probe_pairs, schema.PROBE_MASK, _PROBE_COLUMNS)
        teachers = _pair_block(tuple(teacher_pairs or ()), num_teacher_pairs, schema.TEACHER_MASK,
                               _TEACHER_COLUMNS)
        return codec.encode_entries((self._cold, history, self._length, item, probes, rating_entry, teachers,
                                     stamp, self._user))

    @staticmethod
    def histories(items: Sequence[str], length: int) -> list[bytes]:
        """``history`` entries of ``padded_history(items[:k], length)`` for ``k = 0 .. len(items)``."""
        slots = [codec.EMPTY_STRING_ENTRY] * length + [codec.string_list_entry(item) for item in items]
        return [encoded_history_entry(slots[k:k + length]) for k in range(len(items) + 1)]


_TEACHER_COLUMNS = (schema.TEACHER_ITEM_I, schema.TEACHER_ITEM_J, schema.TEACHER_PREF, schema.TEACHER_CONFIDENCE)
_PROBE_COLUMNS = (schema.PROBE_ITEM_I, schema.PROBE_ITEM_J, schema.PROBE_PREF, schema.PROBE_CONFIDENCE,
                  schema.PROBE_TRUTH)
_ITEM_KEYS = (schema.ITEM_ID, schema.ITEM_POPULARITY, schema.LONG_TAIL)
# The block layout of UserExamples.example, which must be the map entries' key order.
if [schema.COLD_START, schema.HISTORY, schema.HISTORY_LENGTH, *_ITEM_KEYS, schema.RATING, schema.TIMESTAMP,
        schema.USER_ID] != _BASE_ORDER or [
        schema.COLD_START, schema.HISTORY, schema.HISTORY_LENGTH, *_ITEM_KEYS, *sorted(_PROBE_COLUMNS + (
            schema.PROBE_MASK,)), schema.RATING, *sorted(_TEACHER_COLUMNS + (schema.TEACHER_MASK,)),
        schema.TIMESTAMP, schema.USER_ID] != _TRAINING_ORDER:
    raise AssertionError("the feature names changed their sort order: update UserExamples.example's blocks")


@functools.lru_cache(maxsize=1 << 18)
def _item_block(item_id: str, item_popularity: int, long_tail: bool) -> bytes:
    return (codec.string_entry(schema.ITEM_ID, item_id) + codec.int64_entry(schema.ITEM_POPULARITY, item_popularity)
            + codec.int64_entry(schema.LONG_TAIL, int(long_tail)))


# A user's records carry the same rows whenever the user has at most num_slots of them: the whole
# entries are cached for that case, each row's encoded fields for the others (rows sampled per record).
@functools.lru_cache(maxsize=1 << 12)
def _pair_block(rows: tuple[LabelPair, ...], num_slots: int, mask: str, columns: tuple[str, ...]) -> bytes:
    """The map entries of pair features padded to ``num_slots``, in key order: ``columns`` name the
    features of the ``LabelPair`` fields in order (item ids: '' pads; numbers: 0.0 pads); ``mask`` is 1.0
    on real pairs."""
    pad = num_slots - len(rows)
    pieces = list(zip(*[_row_pieces(r) for r in rows])) if rows else [()] * len(LabelPair._fields)
    out = [(mask, codec.entry(mask, codec.float_feature([1.0] * len(rows) + [0.0] * pad)))]
    for field, key, encoded in zip(LabelPair._fields, columns, pieces):
        if field in _ITEM_FIELDS:
            feature = codec.encoded_string_feature(list(encoded) + [codec.EMPTY_STRING_ENTRY] * pad)
        else:
            feature = codec.packed_float_feature(b"".join(encoded) + codec.FLOAT_ZERO * pad)
        out.append((key, codec.entry(key, feature)))
    return b"".join(e for _, e in sorted(out))


_ITEM_FIELDS = ("item_i", "item_j")


@functools.lru_cache(maxsize=1 << 14)
def _row_pieces(row: LabelPair) -> tuple[bytes, ...]:
    """Each field of ``row`` encoded as its slot of a ``BytesList`` (item ids) or packed ``FloatList``."""
    return tuple(codec.string_list_entry(getattr(row, f)) if f in _ITEM_FIELDS
                 else codec.packed_float(float(getattr(row, f))) for f in LabelPair._fields)
