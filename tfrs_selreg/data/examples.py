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
    entries = {
        schema.USER_ID: codec.string_entry(schema.USER_ID, user_id),
        schema.ITEM_ID: codec.string_entry(schema.ITEM_ID, item_id),
        schema.HISTORY: codec.entry(schema.HISTORY, codec.string_feature(history)),
        schema.TIMESTAMP: codec.entry(schema.TIMESTAMP, codec.int64_feature([timestamp])),
        schema.RATING: codec.float_entry(schema.RATING, 0.0 if rating is None else float(rating)),
        schema.HISTORY_LENGTH: codec.int64_entry(schema.HISTORY_LENGTH, history_length),
        schema.COLD_START: codec.int64_entry(schema.COLD_START, int(cold_start)),
        schema.ITEM_POPULARITY: codec.int64_entry(schema.ITEM_POPULARITY, item_popularity),
        schema.LONG_TAIL: codec.int64_entry(schema.LONG_TAIL, int(long_tail)),
    }
    if teacher_pairs is None and probe_pairs is None:
        return codec.encode_entries([entries[key] for key in _BASE_ORDER])
    entries.update(_pair_entries(teacher_pairs, num_teacher_pairs, schema.TEACHER_MASK, (
        schema.TEACHER_ITEM_I, schema.TEACHER_ITEM_J, schema.TEACHER_PREF, schema.TEACHER_CONFIDENCE)))
    entries.update(_pair_entries(probe_pairs, num_probe_pairs, schema.PROBE_MASK, (
        schema.PROBE_ITEM_I, schema.PROBE_ITEM_J, schema.PROBE_PREF, schema.PROBE_CONFIDENCE, schema.PROBE_TRUTH)))
    return codec.encode_entries([entries[key] for key in _TRAINING_ORDER])


def _pair_entries(rows: Optional[Sequence[LabelPair]], num_slots: int, mask: str,
                  columns: Sequence[str]) -> tuple[tuple[str, bytes], ...]:
    """Map entries ``(name, entry)`` of pair features padded to ``num_slots``: ``columns`` name the
    features of the ``LabelPair`` fields in order (item ids: '' pads; numbers: 0.0 pads); ``mask`` is 1.0
    on real pairs."""
    return _padded_pair_entries(tuple(rows or ()), num_slots, mask, tuple(columns))


# A user's records carry the same rows whenever the user has at most num_slots of them: the whole
# entries are cached for that case, each row's encoded fields for the others (rows sampled per record).
@functools.lru_cache(maxsize=1 << 12)
def _padded_pair_entries(rows: tuple[LabelPair, ...], num_slots: int, mask: str,
                         columns: tuple[str, ...]) -> tuple[tuple[str, bytes], ...]:
    pad = num_slots - len(rows)
    pieces = list(zip(*[_row_pieces(r) for r in rows])) if rows else [()] * len(LabelPair._fields)
    out = [(mask, codec.entry(mask, codec.float_feature([1.0] * len(rows) + [0.0] * pad)))]
    for field, key, encoded in zip(LabelPair._fields, columns, pieces):
        if field in _ITEM_FIELDS:
            feature = codec.encoded_string_feature(list(encoded) + [codec.EMPTY_STRING_ENTRY] * pad)
        else:
            feature = codec.packed_float_feature(b"".join(encoded) + codec.FLOAT_ZERO * pad)
        out.append((key, codec.entry(key, feature)))
    return tuple(out)


_ITEM_FIELDS = ("item_i", "item_j")


@functools.lru_cache(maxsize=1 << 14)
def _row_pieces(row: LabelPair) -> tuple[bytes, ...]:
    """Each field of ``row`` encoded as its slot of a ``BytesList`` (item ids) or packed ``FloatList``."""
    return tuple(codec.string_list_entry(getattr(row, f)) if f in _ITEM_FIELDS
                 else codec.packed_float(float(getattr(row, f))) for f in LabelPair._fields)
