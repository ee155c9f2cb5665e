"""One statistics helper over seeds: the experiment tables (also the run report's) and the plots agree."""

import math

import pytest

from tfrs_selreg.experiment import results
from tfrs_selreg.seed_stats import mean_std


def test_mean_and_sample_std_of_the_finite_values():
    assert mean_std([0.70, None, 0.74, float("nan")]) == (pytest.approx(0.72), pytest.approx(0.02 * math.sqrt(2)), 2)
    mean, std, n = mean_std([0.5])
    assert (mean, n) == (0.5, 1) and math.isnan(std)  # no s.d. from one seed (results.md and report.md alike)
    mean, std, n = mean_std([None])
    assert n == 0 and math.isnan(mean) and math.isnan(std)


def test_the_tables_show_no_spread_for_one_seed():
    metrics = {s: {"auc": 0.5, "users": 3} for s in results.SEGMENTS}
    runs = [results.RunOutput("b", "none", seed, metrics) for seed in (0, 1)]
    one = results.to_markdown(results.aggregate(runs[:1], dataset="d", baseline="none", gates={"none": "none"},
                                                metrics=("auc",)))
    two = results.to_markdown(results.aggregate(runs, dataset="d", baseline="none", gates={"none": "none"},
                                                metrics=("auc",)))
    assert "| none | 0 | 0.5000 |" in one and "±" not in one
    assert "| none | 0, 1 | 0.5000 ± 0.0000 |" in two
