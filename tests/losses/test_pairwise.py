"""Closed-form tests of the teacher-guided pairwise losses."""

import doctest

import numpy as np
import pytest
import tensorflow as tf

from tfrs_selreg.losses import pairwise
from tfrs_selreg.losses.pairwise import (
    budget_mask,
    pointwise_teacher_mse,
    selective_pairwise_hinge,
)


def _hinge_scores(hinges):
    """Scores whose hinge (margin 1, pref 0.9) equals ``hinges``: ``s_i = 1 - h``, ``s_j = 0``."""
    hinges = np.asarray(hinges, np.float32)
    return 1.0 - hinges, np.zeros_like(hinges)


def test_docstring_examples_run():
    results = doctest.testmod(pairwise, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.attempted >= 3 and results.failed == 0


def test_hinge_orients_pairs_by_teacher_and_skips_ties():
    # pair 1: i > j, gap 1 -> 0; pair 2: j > i, gap s_j - s_i = 0.5 -> 0.5; pair 3: tie, not a pair.
    loss = selective_pairwise_hinge([2.0, 0.0, 1.0], [1.0, 0.5, 1.0], [0.9, 0.2, 0.5])
    assert float(loss) == pytest.approx(0.25)


def test_hinge_margin():
    # gap 1 with margin 3 -> 2; j > i with s_j - s_i = -0.5 -> 3.5.
    loss = selective_pairwise_hinge([2.0, 0.5], [1.0, 0.0], [0.9, 0.1], margin=3.0)
    assert float(loss) == pytest.approx((2.0 + 3.5) / 2)


def test_hinge_weights_do_not_renormalise():
    # sum(w * h) / |kept|, not / sum(w): (2 * 0 + 3 * 0.5 + 5 * [tie]) / 2.
    loss = selective_pairwise_hinge([2.0, 0.0, 1.0], [1.0, 0.5, 1.0], [0.9, 0.2, 0.5],
                                    pair_weights=[2.0, 3.0, 5.0])
    assert float(loss) == pytest.approx(0.75)
    zero_weight = selective_pairwise_hinge([0.0, 0.0], [0.0, 0.0], [0.9, 0.9], pair_weights=[0.0, 1.0])
    assert float(zero_weight) == pytest.approx(0.5)


def test_hinge_mask():
    s_i, s_j = [0.0, 0.0], [0.0, 3.0]
    assert float(selective_pairwise_hinge(s_i, s_j, [0.9, 0.9], mask=[1.0, 0.0])) == pytest.approx(1.0)
    assert float(selective_pairwise_hinge(s_i, s_j, [0.9, 0.9], mask=[False, True])) == pytest.approx(4.0)


def test_hinge_budget_keeps_most_confident_over_the_whole_batch():
    s_i, s_j = _hinge_scores([[1.0, 2.0], [3.0, 4.0]])
    pref = np.full((2, 2), 0.9, np.float32)
    confidence = [[0.1, 0.9], [0.5, 0.7]]
    run = lambda **kw: float(selective_pairwise_hinge(s_i, s_j, pref, confidence=confidence, **kw))
    assert run(budget=1) == pytest.approx(2.0)
    assert run(budget=2) == pytest.approx((2.0 + 4.0) / 2)
    assert run(budget=3) == pytest.approx((2.0 + 3.0 + 4.0) / 3)
    assert run(budget=10) == pytest.approx(2.5)
    assert run() == pytest.approx(2.5)
    # Masked pairs are never picked, even when they are the most confident.
    assert run(budget=1, mask=[[1, 0], [1, 1]]) == pytest.approx(4.0)


def test_hinge_budget_default_confidence_is_teacher_gap_and_ignores_ties():
    s_i, s_j = _hinge_scores([1.0, 2.0, 3.0])
    # |2 pref - 1| = 0.2, 0.8, 0; the tie is not a pair even when the budget has room.
    assert float(selective_pairwise_hinge(s_i, s_j, [0.6, 0.9, 0.5], budget=1)) == pytest.approx(2.0)
    assert float(selective_pairwise_hinge(s_i, s_j, [0.6, 0.9, 0.5], budget=3)) == pytest.approx(1.5)


def test_hinge_gradient_closed_form():
    s_i = tf.Variable([2.0, 0.0, 1.0])
    s_j = tf.Variable([1.0, 0.5, 1.0])
    with tf.GradientTape() as tape:
        loss = selective_pairwise_hinge(s_i, s_j, [0.9, 0.2, 0.5], pair_weights=[1.0, 3.0, 1.0])
    g_i, g_j = tape.gradient(loss, [s_i, s_j])
    # Only pair 2 is active: 3 * max(0, 1 + (s_i - s_j)) / 2.
    np.testing.assert_allclose(g_i.numpy(), [0.0, 1.5, 0.0])
    np.testing.assert_allclose(g_j.numpy(), [0.0, -1.5, 0.0])


def test_hinge_padding_with_non_finite_scores_does_not_leak():
    s_i = tf.Variable([0.0, np.inf])
    s_j = tf.Variable([0.0, np.nan])
    with tf.GradientTape() as tape:
        loss = selective_pairwise_hinge(s_i, s_j, [0.9, 0.9], mask=[1.0, 0.0], budget=4)
    grads = tape.gradient(loss, [s_i, s_j])
    assert float(loss) == pytest.approx(1.0)
    assert all(np.isfinite(g.numpy()).all() for g in grads)


@pytest.mark.parametrize("shape,mask_value,pref_value", [
        ((0,), 1.0, 0.9),         # empty batch
        ((3, 0), 1.0, 0.9),       # users without pair slots
        ((2, 3), 0.0, 0.9),       # all padding
        ((2, 3), 1.0, 0.5),       # only ties
])
def test_hinge_no_pairs_is_zero_with_zero_gradients(shape, mask_value, pref_value):
    s_i = tf.Variable(tf.ones(shape))
    s_j = tf.Variable(tf.zeros(shape))

    @tf.function
    def loss_and_grads(pref, mask):
        with tf.GradientTape() as tape:
            hinge = selective_pairwise_hinge(s_i, s_j, pref, mask=mask, budget=8)
            mse = pointwise_teacher_mse(s_i, s_j, pref, mask=tf.zeros(shape))
            loss = hinge + mse
        return hinge, mse, tape.gradient(loss, [s_i, s_j])

    hinge, mse, grads = loss_and_grads(tf.fill(shape, pref_value), tf.fill(shape, mask_value))
    assert float(hinge) == 0.0 and float(mse) == 0.0
    for g in grads:
        assert np.isfinite(g.numpy()).all() and not g.numpy().any()


def test_budget_mask():
    kept = budget_mask([[True, True], [False, True]], [[0.2, 0.9], [1.0, 0.5]], 2)
    np.testing.assert_array_equal(kept.numpy(), [[False, True], [False, True]])
    np.testing.assert_array_equal(budget_mask([1, 0, 1], [0.0, 0.0, 0.0], None).numpy(), [True, False, True])
    # At least one pair is kept when any exists, whatever its confidence.
    np.testing.assert_array_equal(budget_mask([0, 1], [5.0, 0.0], 1).numpy(), [False, True])
    with pytest.raises(ValueError, match="budget must be >= 1"):
        budget_mask([1], [1.0], 0)


def test_pointwise_mse_closed_form():
    # sigmoid(0) = 0.5: ((0.5 - 0.8)^2 + (0.5 - 0.2)^2) / 2 = 0.09; sigmoid(ln 3) = 0.75, tie at 0.5:
    # ((0.75 - 0.5)^2 + (0.5 - 0.5)^2) / 2 = 0.03125.
    s_i = [0.0, np.log(3.0), 7.0]
    s_j = [0.0, 0.0, 7.0]
    loss = pointwise_teacher_mse(s_i, s_j, [0.8, 0.5, 0.1], mask=[1.0, 1.0, 0.0])
    assert float(loss) == pytest.approx((0.09 + 0.03125) / 2, rel=1e-5)
    assert float(pointwise_teacher_mse([0.0], [0.0], [1.0])) == pytest.approx(0.25)
