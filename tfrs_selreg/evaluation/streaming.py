"""Full-ranking evaluation in bounded memory: users read a chunk at a time from the users files.

``evaluate_stream(data, split, L, model)`` gives the same per-user values, in the same order (sorted
by user id), as ``RankingEvaluator(data, split, L).evaluate(model)``, which holds every user's items
at once. Here at most ``chunk_users`` users' queries and items are held; what grows with the number
of users is only the output, one id and one float per metric per user. The model's item side is
computed once (``all_items_scorer``) for all chunks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from tfrs_selreg.data.prepared import PreparedData, PreparedFolderError, User
from tfrs_selreg.evaluation.ranking import KS, SEGMENTS, CatalogColumns, RankingEvaluator, SegmentResult, held_out

CHUNK_USERS = 8192


def _chunks(users: Iterable[User], split: str, size: int) -> Iterator[list[User]]:
    """Runs of up to ``size`` users that have a held-out item of ``split``."""
    it = (u for u in users if held_out(u, split))
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def merge(parts: Sequence[dict[str, SegmentResult]]) -> dict[str, SegmentResult]:
    """One result per segment from the results of disjoint sets of users, rows sorted by user id."""
    out = {}
    for name in parts[0]:
        ids = np.concatenate([p[name].user_ids for p in parts])
        order = np.argsort(ids, kind="stable")
        values = {k: np.concatenate([p[name].values[k] for p in parts])[order] for k in parts[0][name].values}
        out[name] = SegmentResult(ids[order], values, sum(p[name].items for p in parts))
    return out


def evaluate_stream(data: PreparedData, split: str, history_length: int, model, *, ks: Sequence[int] = KS,
                    batch_users: int = 256, chunk_users: int = CHUNK_USERS,
                    segments: Sequence[str] = SEGMENTS) -> dict[str, SegmentResult]:
    """Ranks the whole catalog for every user of ``split``, ``chunk_users`` users in memory at a time.

    ``model`` has ``score_all`` (and optionally ``all_items_scorer``), as for ``RankingEvaluator.evaluate``.
    """
    if chunk_users < 1:
        raise ValueError(f"chunk_users must be >= 1, got {chunk_users}.")
    catalog = CatalogColumns.of(data)
    score_all = model.all_items_scorer() if hasattr(model, "all_items_scorer") else model.score_all
    parts = []
    for chunk in _chunks(data.iter_users(), split, chunk_users):
        try:
            evaluator = RankingEvaluator(data, split, history_length, users=chunk, catalog=catalog)
        except PreparedFolderError:
            continue  # held-out items outside the catalog only
        parts.append(evaluator.evaluate_scores(lambda a, b, e=evaluator: e.scores(score_all, a, b), ks=ks,
                                               batch_users=batch_users, segments=segments))
    if not parts:
        raise PreparedFolderError(f"{data.directory}: no user has a {split!r} item in the catalog; nothing to "
                                  f"evaluate (was it prepared without a {split} split?).")
    return merge(parts)
