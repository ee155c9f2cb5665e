"""The base of every backbone: one scoring function and the S-LLMR objective around it.

A backbone defines four things (in the spirit of ``tfrs.Model``, where a model only supplies
``compute_loss``):

- ``user_state(features)``: what it computes once per user of a batch (a query embedding, or the user
  half of a ranking model's input);
- ``score_state(state, item_index [B, n])``: logits ``s(u, i)`` of those users against ``n`` items each;
- ``pair_score_state(state, rows [K], item_index [K])``: logits ``[K]`` of ``K`` (batch row, item) pairs,
  each row's state gathered, so that a few pairs of a large batch cost a few pairs, not ``B x n``;
- ``rec_loss(features, state, training)``: its own loss ``L_rec`` on the batch's positives.

From these the base class derives :meth:`score` (used by the evaluator and the exporter),
:meth:`score_all` (all items for a batch of users), :meth:`pair_scorer` (used by the regularizer) and the
objective

    L = rec_loss + teacher_lambda * teacher_loss + gate_loss

where the last two terms come from :class:`~tfrs_selreg.tasks.SelectiveLLMRegularization` (the task a
user's own ``tfrs.Model`` calls), which only sees the backbone through ``pair_score_fn``. Every term is a
metric of its own in ``fit``'s logs. Item ids map to indices through one ``StringLookup`` over
``vocab/items.txt`` (index 0 is the OOV slot, see :mod:`tfrs_selreg.models.catalog`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_selreg import regularizer as regularizer_lib
from tfrs_selreg.data import schema
from tfrs_selreg.data.in_memory import vocabulary_lookup
from tfrs_selreg.models.catalog import ItemCatalog
from tfrs_selreg.models.config import ModelConfig
from tfrs_selreg.models.features import ItemFeatures, QueryFeatures
from tfrs_selreg.tasks import SelectiveLLMRegularization
from tfrs_selreg.tasks.regularization import memoized

REC_LOSS = "rec_loss"
TOTAL_LOSS = "total_loss"
# fit's log keys, one Mean per key, in the order the progress bar shows them.
LOSS_KEYS = (TOTAL_LOSS, REC_LOSS) + regularizer_lib.OUTPUT_KEYS

Features = Mapping[str, tf.Tensor]


class RecommenderModel(tfrs.Model):
    """A backbone plus the selective regularizer; subclasses implement the three methods above.

    Args:
      config: the backbone's :class:`ModelConfig`.
      catalog: per-item arrays aligned with the item index.
      user_vocabulary: known user ids (``vocab/users.txt``).
      regularizer: the :class:`~tfrs_selreg.tasks.SelectiveLLMRegularization` task (gate ``none`` for the
        plain backbone), the public task that a user's own model calls too.
    """

    def __init__(self, config: ModelConfig, catalog: ItemCatalog, user_vocabulary: Sequence[str],
                 regularizer: SelectiveLLMRegularization, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.catalog = catalog
        self.item_lookup = vocabulary_lookup(catalog.item_ids, "item_lookup")
        self.item_features = ItemFeatures(catalog, config.embedding_dim, name="item_features")
        self.query_features = QueryFeatures(user_vocabulary, self.item_features, config.embedding_dim,
                                            name="query_features")
        self.regularizer = regularizer
        self._trackers = {key: tf.keras.metrics.Mean(name=key) for key in LOSS_KEYS}

    # --- what a backbone implements ---------------------------------------------------------------

    def user_state(self, features: Features, training: bool = False) -> tf.Tensor:
        raise NotImplementedError

    def score_state(self, state: tf.Tensor, item_index: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def pair_score_state(self, state: tf.Tensor, rows: tf.Tensor, item_index: tf.Tensor,
                         item_gradient: bool | tf.Tensor = True) -> tf.Tensor:
        """Logits ``[K]`` of (batch row, item) pairs; ``item_gradient`` False (or False in a ``[K]`` mask) holds
        that pair's item side constant."""
        raise NotImplementedError

    def score_all_state(self, state: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def rec_loss(self, features: Features, state: tf.Tensor, training: bool) -> tf.Tensor:
        raise NotImplementedError

    def training_state(self, features: Features, training: bool) -> tuple[tf.Tensor, Callable[[], tf.Tensor]]:
        """``(user_state, rec_loss thunk)`` of a training batch; a backbone may share work between the two."""
        state = self.user_state(features, training=training)
        return state, lambda: self.rec_loss(features, state, training)

    # --- derived ------------------------------------------------------------------------------------

    @property
    def num_items(self) -> int:
        return self.catalog.num_items

    def item_index(self, item_ids: tf.Tensor) -> tf.Tensor:
        """Item ids (string, any shape) -> int64 indices; unknown ids and ``""`` map to 0 (OOV).

        Integer input is taken as indices already (the in-memory training cache of
        :mod:`tfrs_selreg.data.in_memory` holds indices), so every feature may come as ids or as indices.
        """
        item_ids = tf.convert_to_tensor(item_ids)
        return tf.cast(item_ids, tf.int64) if item_ids.dtype.is_integer else self.item_lookup(item_ids)

    def query(self, features: Features, items: tf.Tensor | None = None,
              history_projection: tf.Tensor | None = None) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        """``[B, 4 d]`` query features from ``user_id [B]`` and ``history [B, L]`` (ids or indices); with item
        indices ``items`` also their item features, from the same distinct-item pass; ``history_projection``
        as in :class:`~tfrs_selreg.models.features.QueryFeatures`."""
        history = tf.convert_to_tensor(features[schema.HISTORY])
        mask = history > 0 if history.dtype.is_integer else tf.not_equal(history, "")
        return self.query_features(features[schema.USER_ID], self.item_index(history), mask, items=items,
                                   history_projection=history_projection)

    def scorer(self, features: Features, training: bool = False) -> Callable[[tf.Tensor], tf.Tensor]:
        """Item ids ``[B, n]`` -> logits ``[B, n]`` of ``features``' users (user side computed once)."""
        state = self.user_state(features, training=training)
        return lambda item_ids: self.score_state(state, self.item_index(item_ids))

    def pair_scorer(self, features: Features, training: bool = False) -> regularizer_lib.PairScoreFn:
        """``pair_score_fn``: ``(rows int [K], item_ids string [K]) -> logits [K]``.

        ``logits[k] = s(u, item_ids[k])`` for the user ``u`` of ``features``' row ``rows[k]``. The user side
        is computed once for the batch; each pair gathers its row's state.
        """
        state = self.user_state(features, training=training)
        return lambda rows, item_ids: self.pair_score_state(state, rows, self.item_index(item_ids))

    def score(self, user_features: Features, item_ids: tf.Tensor) -> tf.Tensor:
        """Logits ``s(u, i)`` ``[B, n]`` of the users (``user_id``, ``history``) for ``item_ids [B, n]``."""
        return self.scorer(user_features)(item_ids)

    def score_all(self, user_features: Features) -> tf.Tensor:
        """Logits ``[B, num_items + 1]`` against every item index (column 0 is the OOV slot)."""
        return self.score_all_state(self.user_state(user_features))

    def all_items_scorer(self) -> Callable[[Features], tf.Tensor]:
        """``score_all`` with the item side computed once: user features -> logits ``[B, num_items + 1]``.

        For ranking many batches of users with fixed weights (evaluation): the item tower (two-tower) or
        the item features (DCN) of the whole catalog are computed when this is called, not per batch.
        """
        return self.score_all

    def loss_terms(self, features: Features, training: bool = False) -> dict[str, tf.Tensor]:
        """``rec_loss``, the regularizer's outputs and ``total_loss`` for one batch.

        Batches without teacher features (validation, test) get the backbone's loss alone.
        """
        state, rec_loss = self.training_state(features, training)
        terms = {REC_LOSS: rec_loss()}
        if schema.TEACHER_PREF in features:
            item_index = memoized(self.item_index)

            def pair_score_fn(rows: tf.Tensor, item_ids: tf.Tensor, item_gradient: bool | tf.Tensor) -> tf.Tensor:
                return self.pair_score_state(state, rows, item_index(item_ids), item_gradient=item_gradient)

            terms.update(self.regularizer.loss_terms(features, pair_score_fn, item_index_fn=item_index,
                                                     training=training))
        else:
            terms.update({key: tf.zeros([]) for key in regularizer_lib.OUTPUT_KEYS})
        terms[TOTAL_LOSS] = (terms[REC_LOSS] + self.regularizer.teacher_lambda * terms[regularizer_lib.TEACHER_LOSS]
                             + terms[regularizer_lib.GATE_LOSS])
        return terms

    def compute_loss(self, inputs: Features, training: bool = False) -> tf.Tensor:
        """``L = rec_loss + teacher_lambda * teacher_loss + gate_loss``; updates one metric per term."""
        terms = self.loss_terms(inputs, training=training)
        # Without a teacher the regularizer's terms are constant 0, and a Mean never updated reads 0.
        keys = LOSS_KEYS if self.regularizer.config.uses_teacher else (TOTAL_LOSS, REC_LOSS)
        for key in keys:
            self._trackers[key].update_state(terms[key])
        return terms[TOTAL_LOSS]

    @property
    def metrics(self) -> list[tf.keras.metrics.Metric]:
        return list(self._trackers.values())

    def train_step(self, inputs: Features) -> dict[str, tf.Tensor]:
        """One optimizer step on ``L`` (plus any layer losses), with dense gradients.

        The loss is a per-replica mean, so it is divided by the number of replicas: the optimizer sums
        gradients over replicas, which then equals the gradient of the global batch mean.
        """
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            if self.losses:
                loss += tf.add_n(self.losses)
            scaled = loss / replicas
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        # Adam touches every row of a table each step whatever the gradient's form (its moments decay), so
        # a dense gradient costs no more and takes the fused update (tfrs_selreg.training.optimizer).
        self.optimizer.apply_gradients((tf.convert_to_tensor(g), v) for g, v in zip(gradients, variables)
                                       if g is not None)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, inputs: Features) -> dict[str, tf.Tensor]:
        self.compute_loss(inputs, training=False)
        return {m.name: m.result() for m in self.metrics}

    def build_variables(self, batch: Features) -> None:
        """Creates every variable by running the objective once on ``batch`` (e.g. a placeholder batch).

        Call it inside the distribution strategy's scope, before ``fit`` or ``load_weights``; metrics
        are left untouched.
        """
        self.loss_terms(batch, training=False)
        self.built = True
