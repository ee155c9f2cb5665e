"""A sample top-k of a trained run for a warm and a cold-start test user, with item titles.

The users are the first warm and the first cold-start user, in sorted user-id order, among the users
that :class:`~tfrs_selreg.evaluation.ranking.RankingEvaluator` evaluates on the ``test`` split (users
with a test item in the catalog). Their queries, held-out items and excluded items are the evaluator's
own: the model scores the whole catalog from the user's ``user_id`` and last ``L`` training items, and
the items the user interacted with before the test (training and validation items) are never
recommended, exactly as when the metrics are computed.
"""

from __future__ import annotations

import numpy as np

from tfrs_selreg.data import schema
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.evaluation.ranking import RankingEvaluator
from tfrs_selreg.runs import folder as run_lib

WARM = "warm"
COLD_START = "cold_start"


def sample_users(evaluator: RankingEvaluator) -> dict[str, int]:
    """``{"warm": row, "cold_start": row}``: the evaluator row of the first user of each kind by user id."""
    out: dict[str, int] = {}
    for row in sorted(range(evaluator.num_users), key=lambda r: str(evaluator.user_ids[r])):
        kind = COLD_START if evaluator.cold_start[row] else WARM
        out.setdefault(kind, row)
    return {kind: out[kind] for kind in (WARM, COLD_START) if kind in out}


def sample_top_k(run_dir: str, prepared_dir: str | None = None, *, k: int = 10,
                 recent_history: int = 5) -> list[dict]:
    """The top ``k`` of the run's model for one warm and one cold-start test user.

    Returns one dict per user (warm first; a kind without a test user is left out)::

        {"kind": "warm" | "cold_start", "user_id": ..., "history_length": |H(u)|,
         "recent_history": [{"item_id", "title"}, ...],   # last ``recent_history`` training items, newest last
         "test_items": [{"item_id", "title"}, ...],
         "top": [{"rank", "item_id", "title", "score", "held_out"}, ...]}  # score: the model's logit

    ``held_out`` marks a test item of the user; training and validation items are excluded.
    """
    config, model = run_lib.load_run(run_dir, prepared_dir)
    data = PreparedData(prepared_dir or config.prepared)
    evaluator = RankingEvaluator(data, "test", schema.Schema.load(data.directory).history_length)
    vocabulary = data.item_vocabulary()
    titles = {item.item_id: item.title for item in data.items()}
    users = {user.user_id: user for user in data.users()}

    def named(item_id: str) -> dict:
        return {"item_id": item_id, "title": titles.get(item_id, "")}

    out = []
    for kind, row in sample_users(evaluator).items():
        scores = evaluator.scores(model.score_all, row, row + 1)[0]
        held_out, excluded = (m[0] for m in evaluator.masks(row, row + 1))
        candidates = np.flatnonzero(~excluded)
        # Highest score first; ties by catalog order, so the list is deterministic.
        order = candidates[np.lexsort((candidates, -scores[candidates]))][:k]
        user = users[str(evaluator.user_ids[row])]
        out.append({
            "kind": kind,
            "user_id": user.user_id,
            "history_length": user.history_length,
            "recent_history": [named(i) for i in user.train_items[-recent_history:]] if recent_history else [],
            "test_items": [named(i) for i in user.test_items],
            "top": [dict(rank=rank, score=float(scores[col]), held_out=bool(held_out[col]),
                         **named(vocabulary[col])) for rank, col in enumerate(order, start=1)],
        })
    return out
