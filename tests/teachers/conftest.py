"""Fixtures of the teacher tests: small prepared folders (the side files a teacher job reads).

The Beam ``prepare`` job writes prepared folders; these fixtures write only the side files
(``items.jsonl``, ``users-00000-of-00001.jsonl``, ``stats.json``, ``vocab/``) that the scoring job reads through
``PreparedData``, from synthetic data or from a leave-last-out split of the bundled MovieLens
latest-small (last item test, second to last validation, the rest training). The ``popularity``
teacher registered here is a cheap real teacher for tests of the job's cache and bookkeeping.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import pathlib
import random
from typing import Optional, Sequence

import pytest

from tfrs_selreg.data import prepared
from tfrs_selreg.data.labels import LabelRow
from tfrs_selreg.data.prepare_stats import PrepareStats, Thresholds
from tfrs_selreg.data.prepared import Item, User
from tfrs_selreg.teachers.base import ScoringRequest, ScoringResult, Teacher, register

BUNDLED = pathlib.Path(__file__).resolve().parents[2] / "tfrs_selreg" / "data" / "bundled" / "ml-latest-small"
COLD_START_MAX_HISTORY = 3
LONG_TAIL_FRACTION = 0.2


def write_prepared(directory: str, items: list[Item], users: list[User], seed: int = 0) -> str:
    """Writes a prepared folder's side files; items are written in catalog order (popularity desc)."""
    items = sorted(items, key=lambda it: (-it.popularity, it.item_id))
    users = sorted(users, key=lambda u: u.user_id)
    os.makedirs(os.path.join(directory, "vocab"), exist_ok=True)
    with open(os.path.join(directory, prepared.ITEMS_FILE), "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(dataclasses.asdict(it)) + "\n")
    with open(os.path.join(directory, prepared.users_shard_name(0, 1)), "w", encoding="utf-8") as f:
        for u in users:
            f.write(json.dumps(dataclasses.asdict(u)) + "\n")
    with open(os.path.join(directory, prepared.ITEMS_VOCAB), "w", encoding="utf-8") as f:
        f.writelines(it.item_id + "\n" for it in items)
    with open(os.path.join(directory, prepared.USERS_VOCAB), "w", encoding="utf-8") as f:
        f.writelines(u.user_id + "\n" for u in users)
    tail = [it.popularity for it in items if it.long_tail]
    stats = PrepareStats(
        dataset="fixture", users=len(users), items=len(items), seed=seed,
        thresholds=Thresholds(cold_start_max_history=COLD_START_MAX_HISTORY, long_tail_fraction=LONG_TAIL_FRACTION,
                              long_tail_max_popularity=max(tail) if tail else 0))
    with open(os.path.join(directory, prepared.STATS_FILE), "w", encoding="utf-8") as f:
        f.write(stats.to_text())
    return directory


def leave_last_out(sequences: dict[str, list[str]], catalog: dict[str, Item]) -> tuple[list[Item], list[User]]:
    """Splits chronological sequences (last -> test, second to last -> val) and sets the segment flags.

    Popularity counts training interactions; the bottom ``LONG_TAIL_FRACTION`` of the catalog by
    popularity is long-tail; users with at most ``COLD_START_MAX_HISTORY`` training items are cold-start.
    """
    users = []
    popularity = {item_id: 0 for item_id in catalog}
    for user_id, seq in sequences.items():
        train, val, test = seq[:-2], seq[-2:-1], seq[-1:]
        for it in train:
            popularity[it] += 1
        users.append(User(user_id, tuple(train), tuple(val), tuple(test), len(train),
                          len(train) <= COLD_START_MAX_HISTORY))
    ranked = sorted(catalog, key=lambda i: (popularity[i], i))
    tail = set(ranked[:int(len(ranked) * LONG_TAIL_FRACTION)])
    items = [dataclasses.replace(catalog[i], popularity=popularity[i], long_tail=i in tail) for i in catalog]
    return items, users


def movielens_slice(max_user: int) -> tuple[list[Item], list[User]]:
    """Users ``1..max_user`` of the bundled ml-latest-small and the movies they rated."""
    sequences: dict[str, list[tuple[int, str]]] = {}
    with open(BUNDLED / "ratings.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if int(row["userId"]) <= max_user:
                sequences.setdefault(row["userId"], []).append((int(row["timestamp"]), row["movieId"]))
    rated = {item for seq in sequences.values() for _, item in seq}
    catalog = {}
    with open(BUNDLED / "movies.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["movieId"] in rated:
                genres = tuple(g for g in row["genres"].split("|") if g != "(no genres listed)")
                catalog[row["movieId"]] = Item(row["movieId"], title=row["title"], categories=genres)
    ordered = {u: [item for _, item in sorted(seq)] for u, seq in sequences.items()}
    return leave_last_out(ordered, catalog)


# Two clearly separated tastes: a user's items come from one theme, so a text teacher can tell.
THEMES = {
    "space": ["rocket", "galaxy", "astronaut", "alien planet", "star fleet", "orbit station"],
    "romance": ["love letter", "wedding", "first date", "heartbreak", "honeymoon", "sweetheart"],
    "cooking": ["pasta recipe", "bakery", "chef kitchen", "spicy curry", "chocolate cake", "grill"],
}


def synthetic_data(num_users: int = 30, items_per_theme: int = 40, seed: int = 0,
                   cold_start_users: int = 6) -> tuple[list[Item], list[User]]:
    """Themed items and users who each stick to one theme; some users are cold-start.

    Popularity is skewed (low item index = popular) so the popular pool and the long tail differ.
    """
    rng = random.Random(seed)
    catalog: dict[str, Item] = {}
    by_theme: dict[str, list[str]] = {}
    for theme, words in THEMES.items():
        ids = []
        for k in range(items_per_theme):
            item_id = f"{theme[:2]}{k:03d}"
            title = f"{words[k % len(words)].title()} {theme} story {k}"
            catalog[item_id] = Item(item_id, title=title, categories=(theme,))
            ids.append(item_id)
        by_theme[theme] = ids
    sequences = {}
    themes = sorted(THEMES)
    for u in range(num_users):
        ids = by_theme[themes[u % len(themes)]]
        length = (3 + rng.randrange(3)) if u < cold_start_users else 8 + rng.randrange(12)
        weights = [1.0 / (1 + k) for k in range(len(ids))]
        seq: list[str] = []
        while len(seq) < length:
            pick = rng.choices(ids, weights=weights)[0]
            if pick not in seq:
                seq.append(pick)
        sequences[f"u{u:03d}"] = seq
    return leave_last_out(sequences, catalog)


@pytest.fixture(scope="session")
def synthetic():
    """``(items, users)`` of :func:`synthetic_data`."""
    return synthetic_data()


@pytest.fixture(scope="session")
def movielens():
    """``(items, users)`` of the first 40 users of the bundled ml-latest-small."""
    if not (BUNDLED / "ratings.csv").exists():
        pytest.skip(f"{BUNDLED} is absent: the bundled MovieLens copy is not installed")
    return movielens_slice(max_user=40)


@pytest.fixture
def synthetic_prepared(tmp_path) -> str:
    items, users = synthetic_data()
    return write_prepared(str(tmp_path / "prepared"), items, users)


@register("popularity")
class PopularityTeacher(Teacher):
    """A cheap real teacher for job tests: prefers the more popular item of a pair.

    ``pref = sigmoid(log(1 + pop_i) - log(1 + pop_j))``. Requests of ``fail_users`` fail with
    ``http_429`` and a raw response that quotes the API key read from ``api_key_env`` (as a careless
    server might), so tests can check that no key is written. ``scored`` records the user of every
    request scored in this process.
    """

    name = "popularity"
    template_text = "pref = sigmoid(log(1 + pop_i) - log(1 + pop_j))"
    scored: list = []

    def __init__(self, fail_users: Sequence[str] = (), api_key_env: Optional[str] = None):
        self.fail_users = set(fail_users)
        self.api_key_env = api_key_env

    @property
    def model(self) -> str:
        return "log-popularity"

    def score_batch(self, requests: Sequence[ScoringRequest]) -> list[ScoringResult]:
        out = []
        for r in requests:
            PopularityTeacher.scored.append(r.user_id)
            if r.user_id in self.fail_users:
                key = os.environ.get(self.api_key_env or "", "")
                out.append(ScoringResult(r.content_hash(), [], failure="http_429", model_calls=1,
                                         raw=f"429 Too Many Requests (Authorization: Bearer {key})"))
                continue
            pop = {it.item_id: it.popularity for it in (*r.context, *r.candidates)}
            rows = []
            for p in r.pairs:
                pref = 1.0 / (1.0 + math.exp(math.log1p(pop[p.item_j]) - math.log1p(pop[p.item_i])))
                rows.append(LabelRow(r.user_id, p.item_i, p.item_j, pref, kind=p.kind, truth=p.truth,
                                     teacher=self.name))
            out.append(ScoringResult(r.content_hash(), rows, model_calls=1, tokens_in=10, tokens_out=2))
        return out


@pytest.fixture
def popularity_teacher():
    """The ``popularity`` teacher's class, with its record of scored requests cleared."""
    PopularityTeacher.scored.clear()
    return PopularityTeacher
