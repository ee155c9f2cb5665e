"""Two-tower retrieval: in-batch softmax with log-Q correction and accidental-hit removal.

Query tower: ``q(u) = W_q [e_user(u) ; mean_{h in H_L(u)} f(h)] + b_q`` and candidate tower
``c(i) = W_c f(i)`` with ``f`` the item features (id, title tokens, categories; see
:mod:`tfrs_selreg.models.features`). The score is ``s(u, i) = q(u) . c(i)``. With ``W_q = [W_u ; W_h]``
split by rows, ``q(u)`` is computed as ``W_u e_user(u) + mean_h (W_h f(h)) + b_q``: the same value (the
mean is linear), with the history mean over ``d``-wide instead of ``3 d``-wide rows.

``L_rec`` is ``tfrs.tasks.Retrieval``'s in-batch softmax, averaged over the batch: for row ``b`` with
positive ``i_b`` the logits are ``s(u_b, i_k) - log Q(i_k)`` over the batch's candidates ``k``, with
``Q(i)`` the item's share of training interactions (the chance that it shows up as an in-batch
negative; without this correction popular items are over-penalized), and candidates equal to the row's
own item removed from the negatives.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_selreg.data import schema
from tfrs_selreg.models.base import Features, RecommenderModel
from tfrs_selreg.tasks import by_unique, with_item_gradient


class TwoTowerModel(RecommenderModel):
    """Factorized retrieval backbone; see the module docstring."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        d = self.config.embedding_dim
        self.query_projection = tf.keras.layers.Dense(d, name="query_projection")
        # Its kernel is applied in two row blocks (user_embedding), never through __call__.
        self.query_projection.build(tf.TensorShape([None, self.query_features.output_dim]))
        self.candidate_projection = tf.keras.layers.Dense(d, name="candidate_projection")
        options = self.config.two_tower
        self._sampling_probability = tf.constant(self.catalog.sampling_probability, tf.float32)
        self.task = tfrs.tasks.Retrieval(
            loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True,
                                                         reduction=tf.keras.losses.Reduction.NONE),
            temperature=options.temperature,
            remove_accidental_hits=options.remove_accidental_hits,
            name="retrieval")

    def user_embedding(self, features: Features) -> tf.Tensor:
        """``q(u)`` ``[B, d]`` from ``user_id`` and ``history``."""
        return self._query_tower(features)

    def _query_tower(self, features: Features, items: tf.Tensor | None = None):
        """``q(u)`` (and, with item indices ``items``, their item features) as the module docstring computes it."""
        d = self.config.embedding_dim
        kernel = self.query_projection.kernel
        out = self.query(features, items=items, history_projection=kernel[d:])
        query = out if items is None else out[0]
        state = tf.linalg.matmul(query[:, :d], kernel[:d]) + query[:, d:] + self.query_projection.bias
        return state if items is None else (state, out[1])

    def item_embedding(self, item_ids: tf.Tensor) -> tf.Tensor:
        """``c(i)`` ``[..., d]`` of item ids (string, any shape)."""
        return self.item_embedding_from_index(self.item_index(item_ids))

    def item_embedding_from_index(self, item_index: tf.Tensor) -> tf.Tensor:
        return by_unique(lambda index: self.candidate_projection(self.item_features(index)), item_index)

    def all_item_embeddings(self) -> tf.Tensor:
        """``[num_items + 1, d]``, row 0 the OOV slot."""
        return self.item_embedding_from_index(tf.range(self.num_items + 1))

    def user_state(self, features: Features, training: bool = False) -> tf.Tensor:
        return self.user_embedding(features)

    def score_state(self, state: tf.Tensor, item_index: tf.Tensor) -> tf.Tensor:
        return tf.einsum("bd,bnd->bn", state, self.item_embedding_from_index(item_index))

    def pair_score_state(self, state: tf.Tensor, rows: tf.Tensor, item_index: tf.Tensor,
                         item_gradient: bool | tf.Tensor = True) -> tf.Tensor:
        items = self.item_embedding_from_index(item_index)
        items = with_item_gradient(items, item_gradient)
        return tf.reduce_sum(tf.gather(state, rows) * items, axis=-1)

    def score_all_state(self, state: tf.Tensor) -> tf.Tensor:
        return tf.linalg.matmul(state, self.all_item_embeddings(), transpose_b=True)

    def all_items_scorer(self):
        items = self.all_item_embeddings()
        return lambda features: tf.linalg.matmul(self.user_embedding(features), items, transpose_b=True)

    def training_state(self, features: Features, training: bool):
        # The positives' item features come from the history's distinct-item pass (one pass per step).
        index = self.item_index(features[schema.ITEM_ID])
        state, positives = self._query_tower(features, items=index)
        return state, lambda: self._rec_loss(state, index, self.candidate_projection(positives))

    def rec_loss(self, features: Features, state: tf.Tensor, training: bool) -> tf.Tensor:
        index = self.item_index(features[schema.ITEM_ID])
        return self._rec_loss(state, index, self.item_embedding_from_index(index))

    def _rec_loss(self, state: tf.Tensor, index: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
        options = self.config.two_tower
        per_example = self.task(
            state, candidates,
            candidate_sampling_probability=(tf.gather(self._sampling_probability, index)
                                            if options.logq_correction else None),
            candidate_ids=index if options.remove_accidental_hits else None,
            compute_metrics=False, compute_batch_metrics=False)
        return tf.reduce_mean(per_example)
