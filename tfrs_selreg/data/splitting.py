"""Per-user splitting logic of the prepare job: dedupe, split (and cold-start simulation), segments, sampling.

Everything here is deterministic given the seed: randomness comes from :func:`unit_hash`, a stable
hash of the seed and the names involved (Python's ``hash`` is salted per process, so it is never
used), which makes outputs identical across runs, workers and runners.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from typing import Callable, Iterable, Optional

# One interaction of a user as it travels through the pipeline: (item_id, timestamp, rating, line).
Interaction = tuple[str, int, Optional[float], int]

SPLIT_LEAVE_LAST_OUT = "leave_last_out"
SPLIT_TEMPORAL = "temporal"
SPLIT_MODES = (SPLIT_LEAVE_LAST_OUT, SPLIT_TEMPORAL)


def unit_hash(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) from ``parts``."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return struct.unpack(">Q", digest)[0] / 2.0**64


def unit_hasher(*parts: object) -> Callable[[object], float]:
    """``f`` with ``f(last) == unit_hash(*parts, last)``: the shared ``parts`` are hashed once, for the
    many values of ``last`` (one per record) that follow them."""
    prefix = hashlib.blake2b(("\x1f".join(map(str, parts)) + "\x1f").encode("utf-8"), digest_size=8)

    def f(last: object) -> float:
        h = prefix.copy()
        h.update(str(last).encode("utf-8"))
        return struct.unpack(">Q", h.digest())[0] / 2.0**64
    return f


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
