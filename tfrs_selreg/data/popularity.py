"""Popularity groups of a catalog: equal-count quantiles of the items' training popularity."""

from __future__ import annotations

import numpy as np

QUARTILES = 4


def popularity_buckets(popularity: np.ndarray, buckets: int = QUARTILES) -> np.ndarray:
    """``[num_items]`` bucket of each item: its popularity quantile (0 rarest, ``buckets - 1`` head).

    Items are ranked by popularity (ties by catalog order) and cut into equal-count groups, so a
    catalog where most items share one count still gets ``buckets`` groups.
    """
    order = np.argsort(np.asarray(popularity), kind="stable")
    out = np.empty(order.size, np.int64)
    out[order] = np.arange(order.size) * buckets // max(order.size, 1)
    return out
