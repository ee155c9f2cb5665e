"""Score fusion of a trained run with the teacher: the headroom of the teacher's knowledge.

    score(u, i) = z_u(model(u, i)) + beta_{b(i)} * z_u(teacher(u, i))

``z_u`` standardizes a user's scores over the whole catalog (mean 0, s.d. 1); ``teacher`` is the
embedding teacher's cosine (:class:`~tfrs_selreg.evaluation.reference.EmbeddingTeacherRanker`, all its
labels encode); ``b(i)`` is the item's training-popularity quartile over the catalog (0 rarest). The
``beta`` are fitted on the **validation** split for overall NDCG@20: one global beta over
:data:`BETA_GRID` first, then coordinate ascent over the buckets (until no bucket changes, at most
:data:`MAX_PASSES` passes); ties keep the earlier value. The fitted betas then rank the requested split.

Fusion needs the teacher at serving time, so it is a reference, not a product option: it measures how
much of the teacher's knowledge a method could recover.

:func:`disagreement_table` says where the teacher beats the model: on validation pairs (each
held-out item against :data:`NEGATIVES` items drawn uniformly from the user's unseen items, seeded), how
often model and teacher order the pair right, and how often the teacher is right where the two disagree,
by segment (cold-start users, long-tail positive or negative, popularity quartile of the positive, fifths
of the model's and of the teacher's margin, and which of the two prefers the rarer item).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from tfrs_selreg.data.popularity import QUARTILES as BUCKETS
from tfrs_selreg.data.popularity import popularity_buckets
from tfrs_selreg.evaluation.ranking import OVERALL, RankingEvaluator

BETA_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
MAX_PASSES = 2
NEGATIVES = 20
FIT_METRIC = "ndcg@20"


def standardized(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean, over its standard deviation (a constant row becomes 0)."""
    scores = np.asarray(scores, np.float64)
    std = scores.std(axis=1, keepdims=True)
    return ((scores - scores.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)).astype(np.float32)


def score_matrix(evaluator: RankingEvaluator, score_all, batch_users: int = 256) -> np.ndarray:
    """``[users, num_items]`` standardized scores of ``score_all`` for every user of ``evaluator``."""
    rows = [standardized(evaluator.scores(score_all, start, min(start + batch_users, evaluator.num_users)))
            for start in range(0, evaluator.num_users, batch_users)]
    return np.concatenate(rows)


@dataclasses.dataclass(frozen=True)
class Fusion:
    """Fitted fusion weights: ``betas[b]`` for popularity bucket ``b`` of ``bucket[i]``."""

    betas: tuple[float, ...]
    bucket: np.ndarray

    def scores(self, model: np.ndarray, teacher: np.ndarray) -> np.ndarray:
        return model + np.asarray(self.betas, np.float32)[self.bucket][None, :] * teacher


def _mean_metric(evaluator: RankingEvaluator, scores: np.ndarray, metric: str = FIT_METRIC) -> float:
    result = evaluator.evaluate_scores(lambda start, stop: scores[start:stop], segments=(OVERALL,))
    return float(np.mean(result[OVERALL].values[metric]))


def fit(evaluator: RankingEvaluator, model: np.ndarray, teacher: np.ndarray, bucket: np.ndarray,
        grid: Sequence[float] = BETA_GRID) -> tuple[Fusion, list[dict]]:
    """The betas that maximize ``evaluator``'s overall NDCG@20 (see the module docstring), and the trace
    ``[{betas, ndcg@20}]`` of every evaluated setting."""
    buckets = int(bucket.max()) + 1
    trace: list[dict] = []
    seen: dict[tuple[float, ...], float] = {}

    def value(betas: tuple[float, ...]) -> float:
        if betas not in seen:
            seen[betas] = _mean_metric(evaluator, Fusion(betas, bucket).scores(model, teacher))
            trace.append({"betas": list(betas), FIT_METRIC: seen[betas]})
        return seen[betas]

    best = max(((b,) * buckets for b in grid), key=value)  # max keeps the first of equal values
    for _ in range(MAX_PASSES):
        changed = False
        for k in range(buckets):
            candidates = [best[:k] + (b,) + best[k + 1:] for b in grid]
            top = max(candidates, key=value)
            if value(top) > value(best):
                best, changed = top, True
        if not changed:
            break
    return Fusion(best, bucket), trace


def _fifths(values: np.ndarray) -> np.ndarray:
    edges = np.quantile(values, [0.2, 0.4, 0.6, 0.8]) if values.size else np.zeros(4)
    return np.searchsorted(edges, values, side="right")


def disagreement_table(evaluator: RankingEvaluator, model: np.ndarray, teacher: np.ndarray,
                       popularity: np.ndarray, *, negatives: int = NEGATIVES, seed: int = 0) -> list[dict]:
    """Rows ``{segment, pairs, model_accuracy, teacher_accuracy, disagreements, teacher_wins}`` (see the
    module docstring); ``teacher_wins`` is the teacher's share of right answers where the two disagree."""
    rng = np.random.default_rng(seed)
    bucket = popularity_buckets(popularity)
    users, pos, neg = [], [], []
    for start in range(0, evaluator.num_users, 1024):
        stop = min(start + 1024, evaluator.num_users)
        held, excluded = evaluator.masks(start, stop)
        for r in range(stop - start):
            candidates = np.flatnonzero(~(held[r] | excluded[r]))
            if candidates.size == 0:
                continue
            for p in np.flatnonzero(held[r]):
                drawn = rng.choice(candidates, negatives, replace=candidates.size < negatives)
                users += [start + r] * negatives
                pos += [p] * negatives
                neg += drawn.tolist()
    users, pos, neg = np.array(users, np.int64), np.array(pos, np.int64), np.array(neg, np.int64)
    model_margin = model[users, pos] - model[users, neg]
    teacher_margin = teacher[users, pos] - teacher[users, neg]
    model_right, teacher_right = model_margin > 0, teacher_margin > 0
    disagree = model_right != teacher_right
    # On a disagreement one of the two prefers the positive and the other the negative.
    teacher_pick = np.where(teacher_right, pos, neg)
    model_pick = np.where(model_right, pos, neg)
    long_tail = evaluator.long_tail
    segments = [("overall", np.ones_like(disagree)), ("cold-start users", evaluator.cold_start[users]),
                ("long-tail positive", long_tail[pos]), ("long-tail negative", long_tail[neg])]
    segments += [(f"positive in popularity quartile {q + 1} (1 rarest)", bucket[pos] == q) for q in range(BUCKETS)]
    model_fifth, teacher_fifth = _fifths(np.abs(model_margin)), _fifths(np.abs(teacher_margin))
    segments += [(f"model margin fifth {q + 1} (1 smallest)", model_fifth == q) for q in range(5)]
    segments += [(f"teacher margin fifth {q + 1} (1 smallest)", teacher_fifth == q) for q in range(5)]
    segments += [("teacher prefers a rarest-quartile item, model a head-quartile item",
                  disagree & (bucket[teacher_pick] == 0) & (bucket[model_pick] == BUCKETS - 1)),
                 ("teacher prefers a head-quartile item, model a rarest-quartile item",
                  disagree & (bucket[teacher_pick] == BUCKETS - 1) & (bucket[model_pick] == 0))]
    rows = []
    for name, where in segments:
        d = where & disagree
        rows.append({"segment": name, "pairs": int(where.sum()),
                     "model_accuracy": float(model_right[where].mean()) if where.any() else math.nan,
                     "teacher_accuracy": float(teacher_right[where].mean()) if where.any() else math.nan,
                     "disagreements": int(d.sum()),
                     "teacher_wins": float(teacher_right[d].mean()) if d.any() else math.nan})
    return rows


def format_disagreement(rows: Sequence[dict]) -> str:
    """The disagreement table as markdown."""
    lines = ["| pairs (validation) | n | model right | teacher right | disagreements | teacher wins |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [f"{r[k]:.3f}" if isinstance(r[k], float) and math.isfinite(r[k]) else "-"
                 for k in ("model_accuracy", "teacher_accuracy")]
        wins = r["teacher_wins"]
        lines.append(f"| {r['segment']} | {r['pairs']:,} | {cells[0]} | {cells[1]} | {r['disagreements']:,} | "
                     + (f"{wins:.3f}" if math.isfinite(wins) else "-") + " |")
    return "\n".join(lines)

