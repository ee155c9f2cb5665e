"""Full-ranking metrics of a batch of users, vectorized over a ``[users, items]`` score matrix.

For user ``u`` with held-out positives ``P_u`` and excluded items ``E_u`` (items the user interacted
with before: the training items, plus the validation items when evaluating test), the candidates are
``C_u = items \\ E_u`` and the negatives ``N_u = C_u \\ P_u``. Then

- ``AUC_u = 1 / (|P_u| |N_u|) * sum_{p in P_u, n in N_u} ( [s_p > s_n] + 0.5 [s_p = s_n] )``, computed from
  average ranks (Mann-Whitney): ``(sum_{p} rank_C(p) - |P_u| (|P_u| + 1) / 2) / (|P_u| |N_u|)``, each rank
  counted by comparing the positive with its row (no sort);
- ``Recall@k_u = |P_u ∩ top_k(C_u)| / |P_u|``;
- ``NDCG@k_u = sum_{r <= k, item_r in P_u} 1 / log2(r + 1) / sum_{r = 1}^{min(k, |P_u|)} 1 / log2(r + 1)``,

with ``top_k(C_u)`` the ``k`` best-scored candidates (ties in any order). A user without positives gets
NaN for every metric, and a user without negatives NaN for AUC; :func:`mean_over_users` skips NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

AUC = "auc"
_COMPARE_BLOCK = 1 << 24


def recall_key(k: int) -> str:
    return f"recall@{k}"


def ndcg_key(k: int) -> str:
    return f"ndcg@{k}"


def ranking_metrics(scores: np.ndarray, positives: np.ndarray, excluded: np.ndarray,
                    ks: Sequence[int] = (10, 20)) -> dict[str, np.ndarray]:
    """Per-user ``auc``, ``recall@k`` and ``ndcg@k`` (arrays ``[users]``), see the module docstring.

    Args:
      scores: ``[U, N]`` float scores.
      positives: ``[U, N]`` bool, the held-out items ``P_u``.
      excluded: ``[U, N]`` bool, ``E_u``; must not overlap ``positives``.
      ks: cut-offs.

    >>> s = np.array([[0.9, 0.8, 0.1, 0.5]])
    >>> positives, excluded = np.array([[False, True, False, False]]), np.array([[True, False, False, False]])
    >>> m = ranking_metrics(s, positives, excluded, ks=(1,))
    >>> float(m["auc"][0]), float(m["recall@1"][0]), float(m["ndcg@1"][0])
    (1.0, 1.0, 1.0)
    """
    scores = np.asarray(scores)
    # Comparisons and the top-k are exact in the scores' own float type (the model's float32): no float64
    # copy of the [users, items] matrix.
    scores = scores if np.issubdtype(scores.dtype, np.floating) else scores.astype(np.float64)
    positives = np.asarray(positives, bool)
    excluded = np.asarray(excluded, bool)
    if scores.shape != positives.shape or scores.shape != excluded.shape:
        raise ValueError(f"scores {scores.shape}, positives {positives.shape} and excluded {excluded.shape} "
                         "must have the same [users, items] shape.")
    if np.logical_and(positives, excluded).any():
        raise ValueError("an item is both a held-out positive and excluded; exclusions must not contain positives.")
    masked = np.where(excluded, scores.dtype.type(-np.inf), scores)
    n_pos = np.count_nonzero(positives, axis=1)
    n_excluded = np.count_nonzero(excluded, axis=1)
    n_neg = scores.shape[1] - n_excluded - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (_positive_rank_sums(masked, positives, n_pos, n_excluded) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    out = {AUC: np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)}

    k_max = min(max(ks), scores.shape[1])
    top = np.argpartition(-masked, k_max - 1, axis=1)[:, :k_max]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(masked, top, axis=1), axis=1, kind="stable"), axis=1)
    hits = np.take_along_axis(positives, top, axis=1).astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k_max + 2))
    for k in ks:
        kk = min(k, k_max)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = hits[:, :kk].sum(axis=1) / n_pos
            ideal = np.cumsum(discounts)[np.clip(np.minimum(n_pos, kk), 1, None) - 1]
            ndcg = (hits[:, :kk] * discounts[:kk]).sum(axis=1) / ideal
        out[recall_key(k)] = np.where(n_pos > 0, recall, np.nan)
        out[ndcg_key(k)] = np.where(n_pos > 0, ndcg, np.nan)
    return out


def _positive_rank_sums(masked: np.ndarray, positives: np.ndarray, n_pos: np.ndarray,
                        n_excluded: np.ndarray) -> np.ndarray:
    """``sum_{p in P_u} rank_C(p)`` per user, ranks 1-based and averaged over ties, by counting.

    ``rank_C(p) = |{c in C_u: s_c < s_p}| + (|{c in C_u: s_c = s_p}| + 1) / 2`` (the Mann-Whitney average
    rank): one comparison of each positive with its row, no sort. Excluded items are ``-inf`` in
    ``masked``, below every candidate, and are subtracted from the count. Each user's first positive is
    compared with the whole matrix at once (no copy of its rows); further positives (users with several)
    are gathered in blocks of about ``_COMPARE_BLOCK`` elements.
    """
    sums = np.zeros(masked.shape[0])

    def add(r: np.ndarray, row_scores: np.ndarray, s_p: np.ndarray) -> None:
        less = np.count_nonzero(row_scores < s_p[:, None], axis=1) - n_excluded[r]
        equal = np.count_nonzero(row_scores == s_p[:, None], axis=1)
        np.add.at(sums, r, less + (equal + 1) / 2.0)

    if (n_pos > 0).all():
        every = np.arange(masked.shape[0])
        first = np.argmax(positives, axis=1)  # the first True of each row
        add(every, masked, masked[every, first])
        multi = np.flatnonzero(n_pos > 1)
        rows, cols = np.nonzero(positives[multi])
        rows = multi[rows]
        rest = cols != first[rows]
        rows, cols = rows[rest], cols[rest]
    else:
        rows, cols = np.nonzero(positives)
    # Positives in blocks, so that the [positives, items] comparison stays near _COMPARE_BLOCK elements.
    block = max(1, _COMPARE_BLOCK // max(1, masked.shape[1]))
    for start in range(0, rows.size, block):
        r, c = rows[start:start + block], cols[start:start + block]
        add(r, masked[r], masked[r, c])
    return sums


def mean_over_users(values: np.ndarray) -> float:
    """Mean of the finite per-user values; NaN when there are none."""
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
