"""Full-ranking metrics against values computed by hand on tiny score matrices."""

import math

import numpy as np
import pytest

from tfrs_selreg.evaluation import metrics

# Row 0: item 0 is excluded (a training item) although it has the best score; positives are items 1
# and 4; candidates ranked: 1 (.8), 3 (.5), 4 (.3), 2 (.1).
# Row 1: ties. Row 2: no positive. Row 3: every candidate is a positive (no negative).
SCORES = np.array([
    [0.9, 0.8, 0.1, 0.5, 0.3],
    [0.5, 0.5, 0.5, 0.2, 0.0],
    [0.1, 0.2, 0.3, 0.4, 0.5],
    [0.3, 0.2, 0.1, 0.0, 0.9],
])
POSITIVES = np.array([
    [0, 1, 0, 0, 1],
    [1, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
    [1, 1, 0, 0, 0],
], bool)
EXCLUDED = np.array([
    [1, 0, 0, 0, 0],
    [0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0],
    [0, 0, 1, 1, 1],
], bool)


def test_auc_by_hand():
    auc = metrics.ranking_metrics(SCORES, POSITIVES, EXCLUDED, ks=(1,))["auc"]
    # Row 0: .8 beats .1 and .5 (2), .3 beats .1 (1): 3 of 4 pairs. Excluded .9 plays no part.
    assert auc[0] == pytest.approx(0.75)
    # Row 1: .5 vs negatives .5, .5, .2 (item 4 excluded): 0.5 + 0.5 + 1 over 3.
    assert auc[1] == pytest.approx(2 / 3)
    assert math.isnan(auc[2]) and math.isnan(auc[3])


def test_recall_and_ndcg_by_hand():
    m = metrics.ranking_metrics(SCORES, POSITIVES, EXCLUDED, ks=(1, 2, 3))
    assert m["recall@1"][0] == pytest.approx(0.5)
    assert m["recall@2"][0] == pytest.approx(0.5)
    assert m["recall@3"][0] == pytest.approx(1.0)
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg@1"][0] == pytest.approx(1.0)
    assert m["ndcg@2"][0] == pytest.approx(1 / ideal)
    assert m["ndcg@3"][0] == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    # Row 3: two positives, ranked 1st (.3) and 2nd (.2) among the two candidates.
    assert m["recall@2"][3] == pytest.approx(1.0) and m["ndcg@2"][3] == pytest.approx(1.0)
    assert m["recall@1"][3] == pytest.approx(0.5) and m["ndcg@1"][3] == pytest.approx(1.0)
    assert all(math.isnan(m[k][2]) for k in m)


def test_k_larger_than_catalog():
    m = metrics.ranking_metrics(SCORES[:1], POSITIVES[:1], EXCLUDED[:1], ks=(20,))
    assert m["recall@20"][0] == pytest.approx(1.0)
    assert m["ndcg@20"][0] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))


def test_auc_matches_pairwise_definition_on_random_scores():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(6, 30)).astype(float)  # many ties
    positives = rng.random((6, 30)) < 0.2
    excluded = (rng.random((6, 30)) < 0.3) & ~positives
    auc = metrics.ranking_metrics(scores, positives, excluded, ks=(5,))["auc"]
    for u in range(6):
        pos = scores[u, positives[u]]
        neg = scores[u, ~positives[u] & ~excluded[u]]
        expected = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean()
        assert auc[u] == pytest.approx(expected)


def test_positive_and_excluded_overlap_is_an_error():
    with pytest.raises(ValueError, match="both a held-out positive and excluded"):
        metrics.ranking_metrics(SCORES, POSITIVES, EXCLUDED | POSITIVES)


def test_mean_over_users_skips_nan():
    assert metrics.mean_over_users(np.array([0.5, np.nan, 1.0])) == pytest.approx(0.75)
    assert math.isnan(metrics.mean_over_users(np.array([np.nan])))


def test_auc_by_counting_with_ties_and_positives_in_several_blocks(monkeypatch):
    rng = np.random.default_rng(7)
    scores = np.round(rng.normal(size=(9, 40)), 1)  # many ties
    positives = rng.random((9, 40)) < 0.3
    excluded = (rng.random((9, 40)) < 0.2) & ~positives
    monkeypatch.setattr(metrics, "_COMPARE_BLOCK", 40 * 3)  # 3 positives per comparison block
    auc = metrics.ranking_metrics(scores, positives, excluded)["auc"]
    for u in range(9):
        p = scores[u][positives[u]]
        n = scores[u][~positives[u] & ~excluded[u]]
        expected = ((p[:, None] > n[None, :]) + 0.5 * (p[:, None] == n[None, :])).mean()
        assert auc[u] == pytest.approx(expected, abs=1e-12)


def test_float32_scores_give_the_float64_values():
    # The metrics compare scores in their own type; float32 scores must rank exactly as their float64 copy.
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=(7, 50)), 1).astype(np.float32)  # ties
    positives = rng.random((7, 50)) < 0.1
    positives[np.arange(7), rng.integers(0, 50, 7)] = True  # every row has one (the no-copy path)
    excluded = (rng.random((7, 50)) < 0.2) & ~positives
    single = metrics.ranking_metrics(scores, positives, excluded, ks=(5, 20))
    double = metrics.ranking_metrics(scores.astype(np.float64), positives, excluded, ks=(5, 20))
    for key, values in double.items():
        np.testing.assert_array_equal(single[key], values, err_msg=key)
