"""Sliced full-ranking evaluation of one split: every held-out item against every unseen item.

Each evaluated user is one query: its ``user_id`` and its last ``L`` training items as ``history``
(the history a validation or test record carries, see ``tfrs_selreg.data.schema``). The model scores
the whole catalog for a batch of users at once (``RecommenderModel.score_all``: a matrix product for
the two-tower model, batched pairs for DCN); no Python loop runs per user.

Held-out items are the split's items of the user; excluded items are what the user interacted with
before: the training items, plus the validation items when evaluating ``test``. Segments:

- ``overall``: every user with a held-out item;
- ``cold_start``: the same values restricted to cold-start users (the users files' ``cold_start``);
- ``long_tail``: positives restricted to held-out long-tail items; the user's other held-out items
  are neither positives nor negatives (they are interactions, so they are excluded).

Each segment reports the mean over its users and the counts of users and held-out items.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from tfrs_selreg.data import examples, schema
from tfrs_selreg.data.prepared import PreparedData, PreparedFolderError, User
from tfrs_selreg.evaluation import metrics

OVERALL = "overall"
COLD_START = "cold_start"
LONG_TAIL = "long_tail"
SEGMENTS = (OVERALL, COLD_START, LONG_TAIL)
KS = (10, 20)
USER_ID_KEY = "user_id"


@dataclasses.dataclass
class SegmentResult:
    """Per-user values of one segment: ``user_ids [n]`` and ``{metric: [n]}``, and held-out item count."""

    user_ids: np.ndarray
    values: dict[str, np.ndarray]
    items: int

    def summary(self) -> dict[str, float]:
        out = {name: metrics.mean_over_users(v) for name, v in self.values.items()}
        out.update(users=int(self.user_ids.size), items=int(self.items))
        return out


@dataclasses.dataclass(frozen=True)
class CatalogColumns:
    """The catalog as the evaluator's columns: ``column[item_id]`` (line of ``vocab/items.txt``) and
    ``long_tail [num_items]``."""

    column: dict[str, int]
    long_tail: np.ndarray

    @classmethod
    def of(cls, data: PreparedData) -> "CatalogColumns":
        vocabulary = data.item_vocabulary()
        tail = {item.item_id for item in data.items() if item.long_tail}
        return cls({item: k for k, item in enumerate(vocabulary)}, np.array([i in tail for i in vocabulary], bool))

    @property
    def num_items(self) -> int:
        return int(self.long_tail.size)


def held_out(user: User, split: str) -> tuple[str, ...]:
    """The user's items of ``split`` (``val`` or ``test``)."""
    return user.test_items if split == "test" else user.val_items


def _sample(data: PreparedData, split: str, column: dict[str, int], max_users: int, seed: int) -> list[User]:
    """A seeded sample of ``max_users`` of the users with an item of ``split`` in the catalog, sorted by id,
    read in two passes over the users files (the first keeps only ids)."""
    def evaluable(user: User) -> bool:
        return any(i in column for i in held_out(user, split))
    ids = sorted(u.user_id for u in data.iter_users() if evaluable(u))
    if len(ids) > max_users:
        ids = [ids[k] for k in np.sort(np.random.default_rng(seed).choice(len(ids), max_users, replace=False))]
    keep = set(ids)
    return sorted((u for u in data.iter_users() if u.user_id in keep), key=lambda u: u.user_id)


class RankingEvaluator:
    """The queries, held-out and excluded items of one split, ready to rank with any backbone.

    Args:
      data: the prepared folder.
      split: ``val`` or ``test``.
      history_length: ``L`` of the schema.
      max_users: evaluate a seeded sample of at most this many of the folder's users (``None``: all).
      seed: seed of that sample.
      users: the users to evaluate, in this order (default: every user of ``data``, sorted by id); users
        without an item of ``split`` in the catalog are skipped.
      catalog: ``CatalogColumns.of(data)``, when the caller already has it.
    """

    def __init__(self, data: PreparedData, split: str, history_length: int, *, max_users: int | None = None,
                 seed: int = 0, users: Iterable[User] | None = None, catalog: CatalogColumns | None = None) -> None:
        if split not in ("val", "test"):
            raise ValueError(f"evaluation ranks the 'val' or 'test' split, got {split!r}.")
        self.split = split
        catalog = catalog or CatalogColumns.of(data)
        column = catalog.column
        self.long_tail = catalog.long_tail
        self.num_items = catalog.num_items

        if users is None:
            users = data.users() if max_users is None else _sample(data, split, column, max_users, seed)
        elif max_users is not None:
            raise ValueError("max_users samples the folder's users; pass users or max_users, not both.")
        user_ids, histories, cold, pos_rows, pos_cols, exc_rows, exc_cols = [], [], [], [], [], [], []
        for user in users:
            held = held_out(user, split)
            positives = sorted({column[i] for i in held if i in column})
            if not positives:
                continue
            seen = user.train_items + (user.val_items if split == "test" else ())
            excluded = sorted({column[i] for i in seen if i in column} - set(positives))
            row = len(user_ids)
            user_ids.append(user.user_id)
            histories.append(examples.padded_history(user.train_items, history_length))
            cold.append(user.cold_start)
            pos_rows += [row] * len(positives)
            pos_cols += positives
            exc_rows += [row] * len(excluded)
            exc_cols += excluded
        if not user_ids:
            raise PreparedFolderError(f"{data.directory}: no user has a {split!r} item in the catalog; nothing to "
                                      f"evaluate (was it prepared without a {split} split?).")
        self.user_ids = np.array(user_ids, object)
        self.histories = np.array(histories, object).reshape(len(user_ids), history_length)
        self.cold_start = np.array(cold, bool)
        self._positives = (np.array(pos_rows, np.int64), np.array(pos_cols, np.int64))
        self._excluded = (np.array(exc_rows, np.int64), np.array(exc_cols, np.int64))

    @property
    def num_users(self) -> int:
        return int(self.user_ids.size)

    def _dense(self, rows_cols, start: int, stop: int) -> np.ndarray:
        rows, cols = rows_cols
        inside = (rows >= start) & (rows < stop)
        out = np.zeros([stop - start, self.num_items], bool)
        out[rows[inside] - start, cols[inside]] = True
        return out

    def scores(self, score_all, start: int, stop: int) -> np.ndarray:
        """``[stop - start, num_items]`` logits of users ``start:stop`` against the whole catalog.

        ``score_all`` is a model's ``score_all`` (or its ``all_items_scorer()``). Column ``k`` is the item on
        line ``k`` of ``vocab/items.txt`` (the model's OOV column 0 is dropped).
        """
        return score_all({
            schema.USER_ID: tf.constant(self.user_ids[start:stop].astype(str)),
            schema.HISTORY: tf.constant(self.histories[start:stop].astype(str)),
        }).numpy()[:, 1:]  # column 0 is the OOV slot, never a candidate

    def masks(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """``(held_out, excluded)``: boolean ``[stop - start, num_items]`` masks of users ``start:stop``."""
        return self._dense(self._positives, start, stop), self._dense(self._excluded, start, stop)

    def evaluate(self, model, *, ks: Sequence[int] = KS, batch_users: int = 256,
                 segments: Sequence[str] = SEGMENTS) -> dict[str, SegmentResult]:
        """Ranks every item for every user with ``model.score_all``; per-user values by segment.

        A model with ``all_items_scorer`` computes its item side once for all batches of users.
        """
        score_all = model.all_items_scorer() if hasattr(model, "all_items_scorer") else model.score_all
        return self.evaluate_scores(lambda start, stop: self.scores(score_all, start, stop), ks=ks,
                                    batch_users=batch_users, segments=segments)

    def evaluate_scores(self, scores_of, *, ks: Sequence[int] = KS, batch_users: int = 256,
                        segments: Sequence[str] = SEGMENTS) -> dict[str, SegmentResult]:
        """As :meth:`evaluate`, with ``scores_of(start, stop) -> [stop - start, num_items]`` giving the scores."""
        parts = {name: [] for name in segments}
        for start in range(0, self.num_users, batch_users):
            stop = min(start + batch_users, self.num_users)
            scores = scores_of(start, stop)
            positives, excluded = self.masks(start, stop)
            rows = np.arange(start, stop)
            overall = metrics.ranking_metrics(scores, positives, excluded, ks)
            if OVERALL in parts:
                parts[OVERALL].append((rows, overall, positives.sum()))
            if COLD_START in parts:
                cold = self.cold_start[start:stop]
                parts[COLD_START].append((rows[cold], {k: v[cold] for k, v in overall.items()},
                                          positives[cold].sum()))
            if LONG_TAIL in parts:
                tail_positives = positives & self.long_tail[None, :]
                has = tail_positives.any(axis=1)
                values = metrics.ranking_metrics(scores[has], tail_positives[has],
                                                 (excluded | (positives & ~tail_positives))[has], ks)
                parts[LONG_TAIL].append((rows[has], values, tail_positives.sum()))
        out = {}
        for name, chunks in parts.items():
            rows = np.concatenate([c[0] for c in chunks])
            values = {k: np.concatenate([c[1][k] for c in chunks]) for k in chunks[0][1]}
            out[name] = SegmentResult(self.user_ids[rows].astype(str), values, int(sum(c[2] for c in chunks)))
        return out
