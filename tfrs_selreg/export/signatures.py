"""The serving module: a trained backbone's serving part and its three signatures.

A :class:`ServingModule` is a ``tf.Module`` that tracks only what serving needs: the backbone's
feature layers (item lookup, item and query feature embeddings, towers or cross network), the item
vocabulary and, for a factorized backbone (one with ``all_item_embeddings``, the two-tower model), a
brute-force index of every item's candidate embedding computed once at export time, as in
``tfrs.layers.factorized_top_k.BruteForce``. The regularizer (its gate), the training task and the
loss metrics are left out, so no training-only variable or op reaches a SavedModel.

Signatures (``user_id [batch]`` and ``history [batch, L']`` are strings; ``L'`` may be shorter or
longer than the schema's ``L``, padding is ``""``):

- ``serving_default``: ``(user_id, history) -> (item_ids [batch, k], scores [batch, k])``, the top ``k``
  of ``s(u, i)`` over every catalog item, best first; with ``exclude_history`` the items of ``history``
  are left out (their score is set to :data:`MASKED_SCORE` before the top-k).
- ``score_items``: ``(user_id, history, item_ids [batch, n]) -> scores [batch, n]``, the logits of given
  candidates, for re-ranking.
- ``serving_tf_example``: ``examples [batch]`` (serialized ``tf.train.Example``) parsed with the
  ``serving`` features of ``schema.json`` only, then as ``serving_default`` (the TFX convention).

Unknown ids never fail: an unknown user gets the user-id OOV embedding and is described by its history,
unknown history items and ``""`` are masked out of the history mean (an empty history contributes 0),
and an unknown or empty candidate id in ``score_items`` gets :data:`MASKED_SCORE`, so it ranks last.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_selreg.data import input_fn, schema
from tfrs_selreg.models.base import RecommenderModel

SERVING_DEFAULT = "serving_default"
SCORE_ITEMS = "score_items"
SERVING_TF_EXAMPLE = "serving_tf_example"
SIGNATURES = (SERVING_DEFAULT, SCORE_ITEMS, SERVING_TF_EXAMPLE)

# Input and output names; ``user_id`` and ``history`` are the schema's serving features.
ITEM_IDS = "item_ids"
SCORES = "scores"
EXAMPLES = "examples"
# Users scored at once by a scoring network (DCN): bounds serving memory whatever the batch.
USER_CHUNK = 64

# The lowest finite float32: ranks last under any sort and, unlike -inf, is valid JSON in REST replies.
MASKED_SCORE = float(np.finfo(np.float32).min)

USER_INPUTS = {
    schema.USER_ID: tf.TensorSpec([None], tf.string, name=schema.USER_ID),
    schema.HISTORY: tf.TensorSpec([None, None], tf.string, name=schema.HISTORY),
}
CANDIDATE_INPUT = tf.TensorSpec([None, None], tf.string, name=ITEM_IDS)
EXAMPLES_INPUT = tf.TensorSpec([None], tf.string, name=EXAMPLES)


def serving_layers(model: RecommenderModel) -> list[tf.keras.layers.Layer]:
    """The backbone's layers minus its regularizer (gate) and training tasks (loss and its metrics)."""
    return [layer for layer in model.layers
            if layer is not model.regularizer and not isinstance(layer, tfrs.tasks.Task)]


def exclude_items(scores: tf.Tensor, item_index: tf.Tensor) -> tf.Tensor:
    """``scores [B, N]`` with ``scores[b, item_index[b, l]] = MASKED_SCORE`` for every ``item_index > 0``.

    Index 0 (unknown ids and ``""`` padding) is left alone: it excludes nothing.
    """
    slots = tf.where(item_index > 0)
    columns = tf.gather_nd(item_index, slots)
    positions = tf.stack([slots[:, 0], tf.cast(columns, tf.int64)], axis=1)
    return tf.tensor_scatter_nd_update(scores, positions,
                                       tf.fill(tf.shape(columns), tf.constant(MASKED_SCORE, scores.dtype)))


def _checked(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """``features`` once every input has the batch size of ``user_id`` (else ``InvalidArgumentError``
    naming the inputs), instead of an error from deep inside the model."""
    batch = tf.shape(features[schema.USER_ID])[0]
    checks = [tf.debugging.assert_equal(tf.shape(value)[0], batch, message=(
            f"{name} and {schema.USER_ID} must have the same batch size (rows)")) for name, value in features.items()
            if name != schema.USER_ID]
    with tf.control_dependencies(checks):
        return {name: tf.identity(value) for name, value in features.items()}


def by_user_chunks(fn, features: Mapping[str, tf.Tensor], chunk: int | None = None) -> tf.Tensor:
    """``fn(features)`` ``[B, n]`` computed :data:`USER_CHUNK` users at a time, one chunk after the other.

    A scoring network (DCN) evaluates every (user, item) pair of a batch, so its memory grows with the
    batch; in chunks it is bounded by the chunk whatever the request's batch size. Every feature is
    padded with ``""`` to a multiple of the chunk; the padding rows are dropped from the result.
    """
    chunk = chunk or USER_CHUNK
    batch = tf.shape(features[schema.USER_ID])[0]
    pad = (chunk - batch % chunk) % chunk
    chunks = {}
    for name, value in features.items():
        padded = tf.pad(value, [[0, pad]] + [[0, 0]] * (value.shape.rank - 1), constant_values="")
        chunks[name] = tf.reshape(padded, tf.concat([[-1, chunk], tf.shape(value)[1:]], axis=0))
    scores = tf.map_fn(fn, chunks, fn_output_signature=tf.TensorSpec([chunk, None], tf.float32),
                       parallel_iterations=1)
    return tf.reshape(scores, [-1, tf.shape(scores)[2]])[:batch]


class ServingModule(tf.Module):
    """The serving part of ``model`` with the signatures of the module docstring.

    Args:
      model: a trained backbone (``tfrs_selreg.models``), every variable built.
      serving_schema: the schema holding the ``serving`` features that ``serving_tf_example`` parses.
      k: items returned by the top-k signatures (at most the catalog size, and with
        ``exclude_history`` at most the catalog size minus ``L``, so excluded items never need to fill it).
      exclude_history: leave the request's history items out of the top-k.
      fused: a :class:`tfrs_selreg.export.fused.FusedIndex`: serve the model's scores fused with the
        embedding teacher's (the signatures stay the same; their scores are the fused ones).
    """

    def __init__(self, model: RecommenderModel, serving_schema: schema.Schema, *, k: int,
                 exclude_history: bool, fused: tf.Module | None = None) -> None:
        super().__init__(name="serving")
        limit = model.num_items - (serving_schema.history_length if exclude_history else 0)
        if not 1 <= k <= limit:
            raise ValueError(f"k={k} must be between 1 and {limit} (catalog of {model.num_items} items"
                             f"{', minus L history items excluded' if exclude_history else ''}); pass a smaller --k.")
        self.k = k
        self.exclude_history = exclude_history
        self.layers = serving_layers(model)
        self.item_ids = tf.Variable(list(model.catalog.item_ids), trainable=False, name="item_ids")
        # Factorized backbones: every item's candidate embedding, computed once (the brute-force index).
        self.fused = fused
        self.candidates = (tf.Variable(model.all_item_embeddings(), trainable=False, name="candidates")
                           if hasattr(model, "all_item_embeddings") and fused is None else None)
        self._model = _Untracked(model)
        parse_spec = input_fn.feature_spec(serving_schema, [schema.ROLE_SERVING])

        def serving_default(user_id, history):
            return self._top_k(_checked({schema.USER_ID: user_id, schema.HISTORY: history}))

        def score_items(user_id, history, item_ids):
            features = _checked({schema.USER_ID: user_id, schema.HISTORY: history, ITEM_IDS: item_ids})
            return {SCORES: self._score_items(features, features.pop(ITEM_IDS))}

        def serving_tf_example(examples):
            # Bytes that are no tf.train.Example fail here with DataLossError, before ParseExample, whose
            # message would quote them and break the UTF-8 decoding of the error in Python clients.
            decoded = tf.io.decode_proto(examples, "tensorflow.Example", ["features"], [tf.string],
                                         message_format="binary")
            # An op that reads the decoded sizes: a bare control dependency on them is pruned.
            decodable = tf.debugging.assert_non_negative(decoded.sizes, message="examples must be tf.train.Example")
            with tf.control_dependencies([decodable]):
                examples = tf.identity(examples)
            features = tf.io.parse_example(examples, parse_spec)
            return self._top_k({name: features[name] for name in USER_INPUTS})

        self.serving_default = tf.function(serving_default, input_signature=list(USER_INPUTS.values()))
        self.score_items = tf.function(score_items, input_signature=[*USER_INPUTS.values(), CANDIDATE_INPUT])
        self.serving_tf_example = tf.function(serving_tf_example, input_signature=[EXAMPLES_INPUT])

    def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        """``{name: concrete function}`` for ``tf.saved_model.save(..., signatures=...)``."""
        return {name: getattr(self, name).get_concrete_function() for name in SIGNATURES}

    def _score_all(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Logits ``[B, num_items + 1]`` against every item index (column 0 is the OOV slot)."""
        model = self._model.value
        if self.fused is not None:
            return tf.linalg.matmul(self._fused_query(features), self.fused.candidates, transpose_b=True)
        if self.candidates is None:
            return by_user_chunks(model.score_all, features)
        return tf.linalg.matmul(model.user_embedding(features), self.candidates, transpose_b=True)

    def _top_k(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        scores = self._score_all(features)
        if self.exclude_history:
            scores = exclude_items(scores, self._model.value.item_index(features[schema.HISTORY]))
        values, index = tf.math.top_k(scores[:, 1:], k=self.k)
        # A history that excludes more than ``num_items - k`` items leaves slots no item may fill: they
        # come back empty ("" with MASKED_SCORE) rather than as an excluded item.
        ids = tf.where(tf.equal(values, MASKED_SCORE), tf.constant(""), tf.gather(self.item_ids, index))
        return {ITEM_IDS: ids, SCORES: values}

    def _score_items(self, features: Mapping[str, tf.Tensor], item_ids: tf.Tensor) -> tf.Tensor:
        model = self._model.value
        index = model.item_index(item_ids)
        if self.fused is not None:
            scores = tf.einsum("bd,bnd->bn", self._fused_query(features), tf.gather(self.fused.candidates, index))
        elif self.candidates is None:
            scores = by_user_chunks(lambda f: model.score(f, f[ITEM_IDS]), {**features, ITEM_IDS: item_ids})
        else:
            scores = model.score(features, item_ids)
        return tf.where(tf.equal(index, 0), tf.constant(MASKED_SCORE, scores.dtype), scores)

    def _fused_query(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        model = self._model.value
        return self.fused.query(model.user_embedding(features), model.item_index(features[schema.HISTORY]))


class _Untracked:
    """Holds the full model out of the module's checkpoint dependencies (it owns the gate and metrics)."""

    def __init__(self, value: RecommenderModel) -> None:
        self.value = value
