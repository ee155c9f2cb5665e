"""One statistics helper over seeds: the experiment tables, the run report and the plots agree."""

import math

import pytest

from tfrs_selreg.report import REPORT_METRICS, SEGMENTS, seed_summary_table
from tfrs_selreg.seed_stats import mean_std


def test_mean_and_sample_std_of_the_finite_values():
    assert mean_std([0.70, None, 0.74, float("nan")]) == (pytest.approx(0.72), pytest.approx(0.02 * math.sqrt(2)), 2)
    mean, std, n = mean_std([0.5])
    assert (mean, n) == (0.5, 1) and math.isnan(std)  # no s.d. from one seed (results.md and report.md alike)
    mean, std, n = mean_std([None])
    assert n == 0 and math.isnan(mean) and math.isnan(std)


def test_the_report_shows_no_spread_for_one_seed():
    metrics = {s: {m: 0.5 for m in REPORT_METRICS} for s in SEGMENTS}
    one, two = seed_summary_table({("none", 0): metrics}), seed_summary_table({("none", 0): metrics,
                                                                                ("none", 1): metrics})
    assert "0.5000 |" in one[2] and "±" not in one[2]
    assert "0.5000 ± 0.0000" in two[2]
