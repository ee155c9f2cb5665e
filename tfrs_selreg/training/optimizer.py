"""The optimizer of a training run: Adam, with one fused update per variable.

``tf.keras.optimizers.legacy.Adam`` applies a dense gradient with one fused kernel
(``ResourceApplyAdam``: ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
``w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``). The default tf-keras Adam computes
the same update with about ten element-wise passes per variable, and on an embedding table's sparse
gradient it still decays the moments of every row, so its sparse path is no cheaper than a dense
one. :meth:`~tfrs_selreg.models.base.RecommenderModel.train_step` therefore densifies embedding
gradients and this optimizer applies them fused: same values, about 6 ms less per two-tower step on
ML-1M at batch 1024 (``docs/results/speed.md``).
"""

from __future__ import annotations

import tensorflow as tf


def make_optimizer(learning_rate: float) -> tf.keras.optimizers.Optimizer:
    """Adam at ``learning_rate`` (``beta_1`` 0.9, ``beta_2`` 0.999, ``epsilon`` 1e-7, as tf-keras' default)."""
    return tf.keras.optimizers.legacy.Adam(learning_rate)
