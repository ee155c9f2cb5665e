"""The seeded draws of prompt planning: generators keyed by strings, and sampling with exclusions."""

from __future__ import annotations

import random
from typing import Sequence


def seeded_rng(seed: int, *parts: str) -> random.Random:
    """A generator seeded by ``seed`` and ``parts``: the same on every machine and in every process."""
    # A string seed is hashed with SHA-512 by `random`, so it does not depend on PYTHONHASHSEED.
    return random.Random("\x00".join([str(seed), *parts]))


def sample_excluding(rng: random.Random, population: Sequence[str], k: int, exclude: set) -> list[str]:
    """``k`` distinct items of ``population`` not in ``exclude`` (fewer when not enough exist).

    Rejection sampling keeps a draw from a large catalog O(k); the explicit filter is the fallback
    when most of the population is excluded.
    """
    chosen: list[str] = []
    taken = set()
    if not population or k < 1:
        return chosen
    for _ in range(8 * k + 16):
        item = population[rng.randrange(len(population))]
        if item not in exclude and item not in taken:
            chosen.append(item)
            taken.add(item)
            if len(chosen) == k:
                return chosen
    rest = [it for it in population if it not in exclude and it not in taken]
    return chosen + rng.sample(rest, min(k - len(chosen), len(rest)))
