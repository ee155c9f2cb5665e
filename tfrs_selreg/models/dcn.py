"""DCNv2 ranking backbone, trained CTR-style on positives and sampled negatives.

The input of a (user, item) pair is ``x_0 = [e_user(u) ; mean_{h in H_L(u)} f(h) ; f(i)]`` (the same
feature embeddings as the two-tower model). A stack of ``tfrs.layers.dcn.Cross`` layers,
``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l``, learns explicit feature crosses; ReLU layers follow, and a
linear unit gives the logit ``s(u, i)``.

``L_rec`` is ``tfrs.tasks.Ranking``'s binary cross-entropy on each positive (label 1) and
``num_negatives`` sampled items (label 0), drawn uniformly from the catalog or in proportion to
training popularity; a sampled item equal to the positive gets weight 0.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_selreg.data import schema
from tfrs_selreg.models.base import Features, RecommenderModel
from tfrs_selreg.tasks import with_item_gradient

# (user, item) pairs per block in score_all: bounds the [B, block, input_dim] activations (~60 MB each
# at embedding size 64). Full ranking costs one cross-network pass per pair, so DCN validation on large
# data wants TrainConfig.validation_max_users.
PAIRS_PER_BLOCK = 32_768


class DCNModel(RecommenderModel):
    """Stacked DCNv2 ranking backbone; see the module docstring."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        options = self.config.dcn
        self.cross_layers = [tfrs.layers.dcn.Cross(projection_dim=options.projection_dim,
                                                   kernel_initializer="glorot_uniform", name=f"cross_{k}")
                             for k in range(options.cross_layers)]
        self.deep_layers = [tf.keras.layers.Dense(width, activation="relu", name=f"deep_{k}")
                            for k, width in enumerate(options.deep_layers)]
        self.logit_layer = tf.keras.layers.Dense(1, name="logit")
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=tf.keras.losses.Reduction.NONE),
            name="ranking")
        # Log-probabilities of negative sampling over item indices; the OOV slot 0 is never drawn.
        weights = (np.ones(self.num_items + 1) if options.negative_sampling == "uniform"
                   else self.catalog.popularity.astype(np.float64))
        weights[0] = 0.0
        with np.errstate(divide="ignore"):
            self._negative_logits = tf.constant(np.log(weights / weights.sum())[None, :], tf.float32)

    def user_state(self, features: Features, training: bool = False) -> tf.Tensor:
        return self.query(features)

    def pair_logits(self, user: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        """Logits ``[B, n]`` of user inputs ``[B, 1 or n, Du]`` with item features ``[B or 1, n, Di]``."""
        shape = tf.concat([tf.shape(user)[:1], tf.shape(items)[1:2]], axis=0)
        user = tf.broadcast_to(user, tf.concat([shape, tf.shape(user)[2:]], axis=0))
        items = tf.broadcast_to(items, tf.concat([shape, tf.shape(items)[2:]], axis=0))
        x0 = tf.concat([user, items], axis=-1)
        x0 = tf.ensure_shape(x0, [None, None, self.query_features.output_dim + self.item_features.output_dim])
        x = x0
        for cross in self.cross_layers:
            x = cross(x0, x)
        for layer in self.deep_layers:
            x = layer(x)
        return tf.squeeze(self.logit_layer(x), axis=-1)

    def score_state(self, state: tf.Tensor, item_index: tf.Tensor) -> tf.Tensor:
        return self.pair_logits(state[:, None, :], self.item_features(item_index))

    def pair_score_state(self, state: tf.Tensor, rows: tf.Tensor, item_index: tf.Tensor,
                         item_gradient: bool | tf.Tensor = True) -> tf.Tensor:
        # One cross-network pass per pair: [1, K, D] inputs, each pair with its own row's user input.
        items = self.item_features(item_index)
        items = with_item_gradient(items, item_gradient)
        return self.pair_logits(tf.gather(state, rows)[None], items[None])[0]

    def score_all_state(self, state: tf.Tensor) -> tf.Tensor:
        return self._score_items(state, self.item_features(tf.range(self.num_items + 1))[None])

    def all_items_scorer(self):
        items = self.item_features(tf.range(self.num_items + 1))[None]
        return lambda features: self._score_items(self.user_state(features), items)

    def _score_items(self, state: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        """Logits ``[B, n]`` of user inputs ``state [B, Du]`` against item features ``items [1, n, Di]``."""
        block = max(1, PAIRS_PER_BLOCK // max(1, int(state.shape[0] or 1)))
        blocks = [self.pair_logits(state[:, None, :], items[:, start:start + block])
                  for start in range(0, int(items.shape[1]), block)]
        return tf.concat(blocks, axis=1)

    def rec_loss(self, features: Features, state: tf.Tensor, training: bool) -> tf.Tensor:
        positive = self.item_index(features[schema.ITEM_ID])
        batch = tf.shape(positive)[0]
        negatives = tf.reshape(
            tf.random.categorical(self._negative_logits, batch * self.config.dcn.num_negatives, dtype=tf.int64),
            [batch, self.config.dcn.num_negatives])
        candidates = tf.concat([positive[:, None], negatives], axis=1)
        logits = self.score_state(state, candidates)
        labels = tf.cast(tf.equal(tf.range(tf.shape(candidates)[1]), 0), tf.float32) * tf.ones_like(logits)
        weights = tf.where(tf.equal(candidates, positive[:, None]) & tf.equal(labels, 0.0), 0.0, 1.0)
        per_pair = self.task(tf.reshape(labels, [-1, 1]), tf.reshape(logits, [-1, 1]),
                             sample_weight=tf.reshape(weights, [-1]), compute_metrics=False)
        return tf.math.divide_no_nan(tf.reduce_sum(per_pair), tf.reduce_sum(weights))
