"""Pure per-user logic of the prepare job: split, cold-start simulation, history, pair sampling, records.

Everything here is deterministic given the seed: randomness comes from :func:`unit_hash`, a stable
hash of the seed and the names involved (Python's ``hash`` is salted per process, so it is never
used), which makes outputs identical across runs, workers and runners.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import struct
from typing import Iterable, Optional, Sequence

from tfrs_selreg.data import example_codec as codec
from tfrs_selreg.data import schema
from tfrs_selreg.data.labels import LabelPair

# One interaction of a user as it travels through the pipeline: (item_id, timestamp, rating, line).
Interaction = tuple[str, int, Optional[float], int]

SPLIT_LEAVE_LAST_OUT = "leave_last_out"
SPLIT_TEMPORAL = "temporal"
SPLIT_MODES = (SPLIT_LEAVE_LAST_OUT, SPLIT_TEMPORAL)


def unit_hash(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) from ``parts``."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return struct.unpack(">Q", digest)[0] / 2.0**64


def shard_of(key: str, num_shards: int) -> int:
    return int(unit_hash("shard", key) * num_shards)


@dataclasses.dataclass(frozen=True)
class UserSplit:
    """A user's positives after dedup, split and cold-start simulation (each list chronological)."""

    user_id: str
    train: tuple[Interaction, ...]
    val: tuple[Interaction, ...]
    test: tuple[Interaction, ...]
    duplicates: int = 0
    simulated_cold_start: bool = False
    dropped_by_simulation: int = 0


def dedupe(interactions: Iterable[Interaction]) -> tuple[list[Interaction], int]:
    """Chronological order (timestamp, then source line); a repeated item keeps its first occurrence.

    Returns the kept interactions and the number of duplicates dropped.
    """
    ordered = sorted(interactions, key=lambda x: (x[1], x[3]))
    seen: set[str] = set()
    kept = []
    for it in ordered:
        if it[0] not in seen:
            seen.add(it[0])
            kept.append(it)
    return kept, len(ordered) - len(kept)


def split_user(
    user_id: str,
    interactions: Iterable[Interaction],
    *,
    mode: str,
    seed: int,
    cold_start_fraction: float = 0.0,
    val_cut: Optional[int] = None,
    test_cut: Optional[int] = None,
) -> UserSplit:
    """Splits one user's positives.

    ``leave_last_out``: the last interaction is the test item and the second to last the validation
    item; a user with 2 positives gets train + test, a user with 1 gets train only.
    ``temporal``: timestamp < ``val_cut`` is train, < ``test_cut`` is validation, the rest test.

    Cold-start simulation: a seeded ``cold_start_fraction`` of users keeps only its first 1 to 3
    training interactions (chosen per user by the seed); the rest are dropped and never used.
    """
    kept, duplicates = dedupe(interactions)
    if mode == SPLIT_LEAVE_LAST_OUT:
        if len(kept) >= 3:
            train, val, test = kept[:-2], kept[-2:-1], kept[-1:]
        elif len(kept) == 2:
            train, val, test = kept[:1], [], kept[1:]
        else:
            train, val, test = kept, [], []
    elif mode == SPLIT_TEMPORAL:
        if val_cut is None or test_cut is None:
            raise ValueError("temporal split needs val_cut and test_cut")
        train = [x for x in kept if x[1] < val_cut]
        val = [x for x in kept if val_cut <= x[1] < test_cut]
        test = [x for x in kept if x[1] >= test_cut]
    else:
        raise ValueError(f"split must be one of {SPLIT_MODES}, got {mode!r}")

    simulated, dropped = False, 0
    if cold_start_fraction > 0 and train and unit_hash(seed, "cold_start", user_id) < cold_start_fraction:
        keep = 1 + int(unit_hash(seed, "cold_start_keep", user_id) * 3)
        if len(train) > keep:
            dropped = len(train) - keep
            train = train[:keep]
        simulated = True
    return UserSplit(user_id, tuple(train), tuple(val), tuple(test), duplicates, simulated, dropped)


def long_tail_items(popularity: dict[str, int], fraction: float) -> tuple[set[str], int]:
    """The bottom ``fraction`` of items by training popularity, ties broken by item id.

    Returns the set and the largest popularity inside it (the recorded threshold).
    Items are ordered by (popularity ascending, item id ascending); the first ``ceil``-free
    ``round(fraction * n)`` of them are long-tail, so the count is exact and deterministic.
    """
    ordered = sorted(popularity.items(), key=lambda kv: (kv[1], kv[0]))
    n_tail = int(round(fraction * len(ordered)))
    tail = ordered[:n_tail]
    return {k for k, _ in tail}, (tail[-1][1] if tail else -1)


def catalog_order(popularity: dict[str, int]) -> list[str]:
    """Vocabulary order of items: popularity descending, then item id."""
    return [k for k, _ in sorted(popularity.items(), key=lambda kv: (-kv[1], kv[0]))]


def sample_pairs(rows: Sequence[tuple], k: int, *parts: object) -> list[tuple]:
    """Deterministic sample of at most ``k`` rows (all rows, in input order, when there are few)."""
    if len(rows) <= k:
        return list(rows)
    rng = random.Random("\x1f".join(map(str, parts)))
    return [rows[i] for i in sorted(rng.sample(range(len(rows)), k))]


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
                  columns: Sequence[str]) -> dict[str, bytes]:
    """Map entries of pair features padded to ``num_slots``: ``columns`` name the features of the
    ``LabelPair`` fields in order (item ids: '' pads; numbers: 0.0 pads); ``mask`` is 1.0 on real pairs."""
    rows = list(rows or ())
    pad = num_slots - len(rows)
    out = {mask: codec.entry(mask, codec.float_feature([1.0] * len(rows) + [0.0] * pad))}
    for field, key in zip(LabelPair._fields, columns):
        values = [getattr(r, field) for r in rows]
        feature = (codec.string_feature(values + [""] * pad) if field in ("item_i", "item_j")
                   else codec.float_feature([float(v) for v in values] + [0.0] * pad))
        out[key] = codec.entry(key, feature)
    return out


