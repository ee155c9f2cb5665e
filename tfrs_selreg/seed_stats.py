"""Statistics over seeds, one helper for the experiment tables, the run report and the plots."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """``(mean, sample standard deviation (ddof=1), n)`` of the finite values; the s.d. is NaN for fewer
    than two values, the mean too for none."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return math.nan, math.nan, 0
    return float(finite.mean()), float(finite.std(ddof=1)) if finite.size > 1 else math.nan, int(finite.size)
