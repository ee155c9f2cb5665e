"""The optimizers of a training run: Adam, with one fused update per variable, and optionally Adagrad for
the embedding tables (``TrainConfig.embedding_optimizer``).

``tf.keras.optimizers.legacy.Adam`` applies a dense gradient with one fused kernel
(``ResourceApplyAdam``: ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
``w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``). The default tf-keras Adam computes
the same update with about ten element-wise passes per variable, and on an embedding table's sparse
gradient it still decays the moments of every row, so its sparse path is no cheaper than a dense
one. :meth:`~tfrs_selreg.models.base.RecommenderModel.train_step` therefore densifies embedding
gradients and this optimizer applies them fused: same values, about 6 ms less per two-tower step on
ML-1M at batch 1024 (``docs/results/speed.md``).

Adam's step is invariant to the gradient's scale: a row that one small-weight teacher pair touches
moves by about the learning rate, whatever the weight. ``embedding_optimizer="adagrad"`` applies the
embedding tables' gradients with Adagrad instead, sparsely (``ResourceSparseApplyAdagrad``: only the
rows in the batch change)::

    a <- a + g^2          (per weight, from initial_accumulator_value 0.1)
    w <- w - lr g / sqrt(a)

so a row's step scales with its gradient (a weight-0.1 pair moves it about a tenth as far as a
weight-1 pair, while ``g^2`` is small against ``a``), and untouched rows stay put. Dense layers keep Adam.
"""

from __future__ import annotations

import tensorflow as tf

from tfrs_selreg.training.config import EMBEDDING_OPTIMIZERS


ADAGRAD_INITIAL_ACCUMULATOR = 0.1


def make_optimizer(learning_rate: float) -> tf.keras.optimizers.Optimizer:
    """Adam at ``learning_rate`` (``beta_1`` 0.9, ``beta_2`` 0.999, ``epsilon`` 1e-7, as tf-keras' default)."""
    return tf.keras.optimizers.legacy.Adam(learning_rate)


def make_embedding_optimizer(name: str, learning_rate: float) -> tf.keras.optimizers.Optimizer | None:
    """The embedding tables' own optimizer: ``None`` for ``adam`` (they share the model's Adam)."""
    if name == "adam":
        return None
    if name == "adagrad":
        return tf.keras.optimizers.legacy.Adagrad(learning_rate, initial_accumulator_value=ADAGRAD_INITIAL_ACCUMULATOR)
    raise ValueError(f"embedding optimizer {name!r} is not one of {EMBEDDING_OPTIMIZERS}")
