"""Teacher-guided pairwise losses: pure functions of tensors that any backbone can call.

A teacher labels a pair of items ``(i, j)`` for one user with ``pref``, its probability that the user
prefers ``i`` over ``j``. ``pref > 0.5`` orders the pair ``i > j``, ``pref < 0.5`` orders it ``j > i``
and ``pref = 0.5`` orders nothing (the paper fills missing teacher scores with 0.5 for exactly this
reason). The backbone's logits ``s_i`` and ``s_j`` are pushed to respect the teacher's order by a margin
hinge, each pair weighted by a gate (see ``tfrs_selreg.regularizer``).

Every function takes tensors of any one shape (``[B, P]`` in training, ``[N]`` in the examples) and
returns a scalar; padding is excluded with ``mask``. The pair budget ``K`` counts pairs over all leading
dimensions together, i.e. per batch, as in the paper. Nothing here imports a model: the functions are
in the style of ``rax`` losses (keyword-only options, closed-form docstrings).
"""

from __future__ import annotations

import tensorflow as tf

from tfrs_selreg.data import labels

TensorLike = tf.types.experimental.TensorLike


def budget_mask(mask: TensorLike, confidence: TensorLike, budget: int | None) -> tf.Tensor:
    """The pairs kept by the pair budget: the ``budget`` pairs of ``mask`` with the largest confidence.

    ``kept = mask AND rank(confidence among mask, over all dims flattened) < budget``. When ``mask`` holds
    at least one pair, at least one pair is kept (``budget >= 1``); ties are broken by position.
    ``budget=None`` keeps every pair of ``mask``.

    >>> budget_mask([True, True, False, True], [0.2, 0.9, 1.0, 0.5], 2).numpy()
    array([False,  True, False,  True])

    Args:
      mask: bool (or 0/1) tensor, the candidate pairs.
      confidence: float tensor of the same shape, larger is kept first.
      budget: ``K`` >= 1, or ``None`` for no budget.

    Returns:
      A bool tensor of the shape of ``mask``.
    """
    mask = tf.cast(mask, tf.bool)
    if budget is None:
        return mask
    if budget < 1:
        raise ValueError(f"budget must be >= 1 (or None for no budget), got {budget}.")
    flat_mask = tf.reshape(mask, [-1])
    flat_confidence = tf.reshape(tf.cast(confidence, tf.float32), [-1])
    n = tf.size(flat_mask)
    ranked = tf.where(flat_mask, flat_confidence, tf.fill([n], float("-inf")))
    _, top = tf.math.top_k(ranked, k=tf.minimum(budget, n), sorted=False)
    selected = tf.scatter_nd(top[:, None], tf.ones_like(top), [n]) > 0
    return tf.reshape(selected & flat_mask, tf.shape(mask))


def selective_pairwise_hinge(
        scores_i: TensorLike,
        scores_j: TensorLike,
        pref: TensorLike,
        *,
        pair_weights: TensorLike | None = None,
        mask: TensorLike | None = None,
        margin: float = 1.0,
        budget: int | None = None,
        confidence: TensorLike | None = None,
) -> tf.Tensor:
    """The selective pairwise hinge: ``L = sum_{p in kept} w_p * max(0, m - o_p (s_i - s_j)) / |kept|``.

    - ``o_p = +1`` if ``pref_p > 0.5`` (the teacher prefers ``i``), ``-1`` if ``pref_p < 0.5``.
    - ``kept`` = the ordered pairs (``pref != 0.5``) of ``mask``, reduced by :func:`budget_mask` to the
      ``budget`` with the largest ``confidence`` (default ``|2 pref - 1|``), over the whole batch.
    - ``w_p`` = ``pair_weights`` (default 1). Dividing by the number of kept pairs, not by ``sum w``,
      keeps ``lambda`` comparable across budgets and lets a gate switch pairs off (``w = 0``) without
      the remaining pairs being scaled up.
    - No kept pair gives ``L = 0`` with zero (finite) gradients.

    >>> float(selective_pairwise_hinge([2., 0., 1.], [1., .5, 1.], [.9, .2, .5]))
    0.25

    (pair 1: ``max(0, 1 - (2 - 1)) = 0``; pair 2 is ordered ``j > i``: ``max(0, 1 - (0.5 - 0)) = 0.5``;
    pair 3 is a tie and not a pair; ``(0 + 0.5) / 2``.)

    Args:
      scores_i: logits ``s(u, i)`` of the first items.
      scores_j: logits ``s(u, j)`` of the second items, same shape.
      pref: teacher's ``P(i > j)`` in [0, 1], same shape.
      pair_weights: per-pair weights ``w_p`` (e.g. the gate), same shape; default 1.
      mask: bool or 0/1, real pairs (padding is 0); default all.
      margin: ``m``.
      budget: ``K``, pairs kept per call; ``None`` keeps all.
      confidence: the ranking key of the budget; default ``|2 pref - 1|``.

    Returns:
      A scalar loss of the dtype of ``scores_i``.
    """
    scores_i = tf.convert_to_tensor(scores_i)
    scores_j = tf.cast(scores_j, scores_i.dtype)
    pref = tf.cast(pref, scores_i.dtype)
    ordered = labels.is_ordered(pref)
    if mask is not None:
        ordered &= tf.cast(mask, tf.bool)
    if confidence is None:
        confidence = labels.default_confidence(pref)
    kept = budget_mask(ordered, confidence, budget)
    orientation = tf.where(labels.prefers_i(pref), tf.ones_like(pref), -tf.ones_like(pref))
    hinge = tf.nn.relu(margin - orientation * (scores_i - scores_j))
    if pair_weights is not None:
        hinge *= tf.cast(pair_weights, scores_i.dtype)
    # tf.where, not a product with the mask: padded slots may hold any score without NaN leaking in.
    total = tf.reduce_sum(tf.where(kept, hinge, tf.zeros_like(hinge)))
    return tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(kept, scores_i.dtype)))


def pointwise_teacher_mse(
        scores_i: TensorLike,
        scores_j: TensorLike,
        pref: TensorLike,
        *,
        mask: TensorLike | None = None,
) -> tf.Tensor:
    """The paper's pointwise ablation on pairwise labels: regress ``sigmoid(s)`` to the teacher.

    A pairwise label gives each item a pointwise target: ``pref`` for ``i`` and ``1 - pref`` for ``j``.
    ``L = sum_{p in mask} [(sigmoid(s_i) - pref)^2 + (sigmoid(s_j) - (1 - pref))^2] / 2 / |mask|``.
    Ties (``pref = 0.5``) are kept: a pointwise target of 0.5 is still a target. No pair gives 0.

    >>> round(float(pointwise_teacher_mse([0.], [0.], [1.])), 4)
    0.25

    (``sigmoid(0) = 0.5``: ``((0.5 - 1)^2 + (0.5 - 0)^2) / 2 = 0.25``.)

    Args:
      scores_i: logits of the first items.
      scores_j: logits of the second items, same shape.
      pref: teacher's ``P(i > j)``, same shape.
      mask: bool or 0/1, real pairs; default all.

    Returns:
      A scalar loss of the dtype of ``scores_i``.
    """
    scores_i = tf.convert_to_tensor(scores_i)
    scores_j = tf.cast(scores_j, scores_i.dtype)
    pref = tf.cast(pref, scores_i.dtype)
    mask = tf.ones_like(pref, tf.bool) if mask is None else tf.cast(mask, tf.bool)
    per_pair = 0.5 * (tf.square(tf.sigmoid(scores_i) - pref) + tf.square(tf.sigmoid(scores_j) - (1.0 - pref)))
    total = tf.reduce_sum(tf.where(mask, per_pair, tf.zeros_like(per_pair)))
    return tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(mask, scores_i.dtype)))
