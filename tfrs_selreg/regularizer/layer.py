"""The :class:`SelectiveRegularizer` Keras layer (the contract is the package docstring)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from tfrs_selreg.data import labels, schema
from tfrs_selreg.data.popularity import popularity_buckets
from tfrs_selreg.layers.gate import SelectiveGate
from tfrs_selreg.losses.pairwise import budget_mask, pointwise_teacher_mse, selective_pairwise_hinge
from tfrs_selreg.regularizer.config import (
    GATE_LOSS,
    GATE_MEAN,
    HISTORY_SCALE,
    OUTPUT_KEYS,
    PAIR_WEIGHT_MEAN,
    PROBE_ACCURACY,
    TEACHER_LOSS,
    TEACHER_PAIRS_KEPT,
    RegularizerConfig,
)
from tfrs_selreg.regularizer.pairs import (
    _PROBE_KEYS,
    _TEACHER_KEYS,
    ItemIndexFn,
    PairScoreFn,
    _gather_pairs,
    _masked_mean,
    _mean,
    _Pairs,
    _probe_outcomes,
    _score_pair_sets,
    _score_pairs,
    _uncertainty,
)


@tf.keras.utils.register_keras_serializable(package="tfrs_selreg")
class SelectiveRegularizer(tf.keras.layers.Layer):
    """The teacher and gate loss terms of S-LLMR for any backbone.

    Args:
      config: the :class:`RegularizerConfig`.
      item_popularity: ``pop(i)``, training interactions per item, aligned with the item vocabulary
        index that ``item_index_fn`` returns (index 0 may be the OOV slot, e.g. with popularity 0).
      long_tail: ``Tail(i)`` (0/1), aligned like ``item_popularity``.
      cold_start_max_history: ``tau_u``; a user is cold-start when ``history_length <= tau_u``.

    Call args:
      batch: the training-only teacher and probe features of ``tfrs_selreg.data.schema`` (``[B, P]`` and
        ``[B, Q]``) plus ``history_length`` ``[B]``.
      pair_score_fn: ``(rows int [K], item_ids string [K]) -> logits [K]``, the backbone's score of item
        ``item_ids[k]`` for the user of batch row ``rows[k]`` (e.g. ``RecommenderModel.pair_scorer``).
        With ``item_gradient_min_weight > 0`` it is also called with ``item_gradient=`` a bool or a ``[K]``
        mask of the pairs whose item side the loss may train.
      item_index_fn: ``item_ids -> int`` indices into ``item_popularity`` and ``long_tail``.

    Returns:
      A dict of scalars (``OUTPUT_KEYS``): ``teacher_loss`` (``L_teacher``, not multiplied by lambda),
      ``gate_loss`` (probe cross-entropy, ``reliability`` only), ``pair_weight_mean`` and ``gate_mean``
      (mean pair weight and mean gate value over the kept teacher pairs, the only ones scored;
      ``gate_mean`` is 0 without a gate), ``probe_accuracy`` (the teacher's accuracy on all the batch's
      ordered probes) and ``teacher_pairs_kept`` (pairs in the teacher loss after the budget). Mode
      ``none`` returns zeros.
    """

    def __init__(self, config: RegularizerConfig, item_popularity: Sequence[int], long_tail: Sequence[int],
                 cold_start_max_history: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        popularity = np.asarray(item_popularity, dtype=np.float64)
        tail = np.asarray(long_tail)
        if popularity.ndim != 1 or popularity.size == 0 or tail.shape != popularity.shape:
            raise ValueError(
                    "SelectiveRegularizer: item_popularity and long_tail must be non-empty 1-D sequences of the "
                    f"same length (one entry per item vocabulary index), got shapes {popularity.shape} and "
                    f"{tail.shape}.")
        if (popularity < 0).any():
            raise ValueError("SelectiveRegularizer: item_popularity holds negative counts; pass pop(i) >= 0.")
        if not np.isin(tail, (0, 1)).all():
            raise ValueError("SelectiveRegularizer: long_tail must hold only 0/1 (or booleans).")
        if config.budget is None:
            raise ValueError("SelectiveRegularizer: RegularizerConfig.budget is None (the backbone's default); pass "
                             "config.for_backbone('two_tower' or 'dcn') or set the budget.")
        if cold_start_max_history < 0:
            raise ValueError(
                    f"SelectiveRegularizer: cold_start_max_history must be >= 0, got {cold_start_max_history}.")
        self.config = config
        self.item_popularity = tuple(int(p) for p in popularity)
        self.long_tail = tuple(int(t) for t in tail)
        self.cold_start_max_history = int(cold_start_max_history)
        log_popularity = np.log1p(popularity) / max(np.log1p(popularity.max()), 1e-12)
        self._log_popularity = tf.constant(log_popularity, tf.float32)
        self._tail = tf.constant(tail, tf.float32)
        self._bucket = tf.constant(popularity_buckets(popularity), tf.int32)
        # The paper's linear gate, at 0.5 before training: in reliability mode weight 2 * 0.5 - 1 = 0, so the
        # teacher is not used until the probes show it beats chance.
        self.gate = (SelectiveGate(name="selective_gate")
                     if config.gate in ("paper", "reliability") else None)

    @property
    def teacher_lambda(self) -> float:
        return self.config.teacher_lambda

    @property
    def _thresholds_item_gradient(self) -> bool:
        return self.config.item_gradient_min_weight > 0 and self.config.teacher_gradient != "user"

    def item_gradient(self, item_index: tf.Tensor) -> bool | tf.Tensor:
        """Which item representations the teacher loss trains, per ``teacher_gradient``.

        ``True`` (all), ``False`` (none: ``user``) or, for ``long_tail``, a boolean tensor shaped like
        ``item_index``: ``Tail(i) = 1``.
        """
        if self.config.teacher_gradient == "long_tail":
            return tf.gather(self._tail, item_index) > 0
        return self.config.teacher_gradient == "all"

    def call(self, batch: Mapping[str, tf.Tensor], pair_score_fn: PairScoreFn, item_index_fn: ItemIndexFn,
             training: Any = None) -> dict[str, tf.Tensor]:
        zero = tf.zeros([], tf.float32)
        if not self.config.uses_teacher:
            return {key: zero for key in OUTPUT_KEYS}
        pref = tf.cast(batch[schema.TEACHER_PREF], tf.float32)
        real = tf.cast(batch[schema.TEACHER_MASK], tf.float32) > 0
        candidates = real if self.config.gate == "pointwise" else real & labels.is_ordered(pref)
        if self.config.pairs != "all":
            candidates &= self._selected(batch, pref, item_index_fn)
        kept = budget_mask(candidates, batch[schema.TEACHER_CONFIDENCE], self.config.budget)
        pairs = _gather_pairs(batch, _TEACHER_KEYS, tf.where(kept))
        probe_ordered, probe_correct = _probe_outcomes(batch)
        probes = self._chosen_probes(batch, probe_ordered) if self.config.gate == "reliability" else None
        probe_scores = None
        if self._thresholds_item_gradient:
            # Weights first, from scores that train nothing; then the scores of the loss, whose item side
            # is trained only for pairs at or above the threshold (same values, other gradient paths).
            scores_i, scores_j = (tf.stop_gradient(s) for s in _score_pairs(pair_score_fn, pairs, False))
            weights, gates = self._weights(batch, pairs, scores_i, scores_j, item_index_fn)
            strong = tf.tile(tf.stop_gradient(weights) >= self.config.item_gradient_min_weight, [2])
            scope = self.item_gradient(item_index_fn(pairs.items))
            scores_i, scores_j = _score_pairs(pair_score_fn, pairs, strong if scope is True else scope & strong)
        else:
            # Teacher pairs and probes in one backbone call (one pass over their distinct items).
            (scores_i, scores_j), probe_scores = _score_pair_sets(pair_score_fn, pairs, probes)
            weights, gates = self._weights(batch, pairs, scores_i, scores_j, item_index_fn)
        if self.config.gate == "pointwise":
            teacher_loss = pointwise_teacher_mse(scores_i, scores_j, pairs.pref)
        else:
            teacher_loss = selective_pairwise_hinge(scores_i, scores_j, pairs.pref, pair_weights=weights,
                                                    margin=self.config.margin)
        gate_loss = (self._gate_loss(batch, probes, probe_correct, probe_scores, pair_score_fn, item_index_fn)
                     if probes is not None else zero)
        return {
                TEACHER_LOSS: tf.cast(teacher_loss, tf.float32),
                GATE_LOSS: gate_loss,
                PAIR_WEIGHT_MEAN: _mean(weights),
                GATE_MEAN: zero if gates is None else _mean(gates),
                PROBE_ACCURACY: _masked_mean(probe_correct, probe_ordered),
                TEACHER_PAIRS_KEPT: tf.cast(tf.size(pairs.pref), tf.float32),
        }

    def _selected(self, batch: Mapping[str, tf.Tensor], pref: tf.Tensor, item_index_fn: ItemIndexFn) -> tf.Tensor:
        """``[B, P]``: the pair slots that ``config.pairs`` admits."""
        bucket_i, bucket_j = (tf.gather(self._bucket, item_index_fn(batch[key]))
                              for key in (schema.TEACHER_ITEM_I, schema.TEACHER_ITEM_J))
        if self.config.pairs == "within_group":
            return tf.equal(bucket_i, bucket_j)
        return tf.where(labels.prefers_i(pref), bucket_i < bucket_j, bucket_j < bucket_i)

    def pair_weights(self, batch: Mapping[str, tf.Tensor], pair_score_fn: PairScoreFn,
                     item_index_fn: ItemIndexFn) -> tf.Tensor:
        """The weight of every teacher pair slot ``[B, P]``, 0 on padding, ties and pairs that ``pairs``
        leaves out (for diagnostics).

        Scores every ordered pair, without budget: not for the training step.
        """
        pref = tf.cast(batch[schema.TEACHER_PREF], tf.float32)
        if not self.config.uses_teacher:
            return tf.zeros_like(pref)
        ordered = (tf.cast(batch[schema.TEACHER_MASK], tf.float32) > 0) & labels.is_ordered(pref)
        if self.config.pairs != "all":
            ordered &= self._selected(batch, pref, item_index_fn)
        positions = tf.where(ordered)
        pairs = _gather_pairs(batch, _TEACHER_KEYS, positions)
        weights, _ = self._weights(batch, pairs, *_score_pairs(pair_score_fn, pairs), item_index_fn)
        return tf.scatter_nd(positions, weights, tf.shape(pref, out_type=tf.int64))

    def _weights(self, batch: Mapping[str, tf.Tensor], pairs: _Pairs, scores_i: tf.Tensor, scores_j: tf.Tensor,
                 item_index_fn: ItemIndexFn) -> tuple[tf.Tensor, tf.Tensor | None]:
        """Weights ``[K]`` of the teacher pairs and, with a gate, the gate values behind them."""
        if self.config.gate in ("global", "pointwise"):
            return tf.ones_like(scores_i), None
        if self.config.gate == "paper":
            # The published gate: per (user, item), trained jointly through the pair weight.
            cold_start, _ = self._user_features(batch, pairs.rows)
            tail_i, tail_j = tf.split(self._item_features(pairs.items, item_index_fn)[0], 2)
            gate_i = self.gate(tf.stack([cold_start, tail_i, _uncertainty(scores_i)], axis=-1))
            gate_j = self.gate(tf.stack([cold_start, tail_j, _uncertainty(scores_j)], axis=-1))
            weights = 0.5 * (gate_i + gate_j)
            return weights, weights
        gates = tf.stop_gradient(self.gate(self._pair_features(batch, pairs, scores_i, scores_j, item_index_fn)))
        return tf.nn.relu(2.0 * gates - 1.0), gates

    def _chosen_probes(self, batch: Mapping[str, tf.Tensor], probe_ordered: tf.Tensor) -> tuple[_Pairs, tf.Tensor]:
        """At most ``probe_budget`` random ordered probes, and their ``(row, slot)`` positions."""
        chosen = budget_mask(probe_ordered, tf.random.uniform(tf.shape(probe_ordered)), self.config.probe_budget)
        positions = tf.where(chosen)
        return _gather_pairs(batch, _PROBE_KEYS, positions), positions

    def _gate_loss(self, batch: Mapping[str, tf.Tensor], probes: tuple[_Pairs, tf.Tensor], probe_correct: tf.Tensor,
                   probe_scores: Optional[list[tf.Tensor]], pair_score_fn: PairScoreFn,
                   item_index_fn: ItemIndexFn) -> tf.Tensor:
        """The reliability gate's cross-entropy on the chosen probes (scored here unless ``probe_scores``)."""
        probes, positions = probes
        if probe_scores is None:
            probe_scores = _score_pairs(pair_score_fn, probes)
        # Probe scores only feed the stop-gradient uncertainty feature: no backward pass through them.
        scores_i, scores_j = (tf.stop_gradient(s) for s in probe_scores)
        logits = self.gate(self._pair_features(batch, probes, scores_i, scores_j, item_index_fn), return_logits=True)
        targets = tf.gather_nd(probe_correct, positions)
        return _mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits))

    def _pair_features(self, batch: Mapping[str, tf.Tensor], pairs: _Pairs, scores_i: tf.Tensor,
                       scores_j: tf.Tensor, item_index_fn: ItemIndexFn) -> tf.Tensor:
        """``RELIABILITY_FEATURES`` of pairs ``[K]`` as ``[K, 7]``: symmetric in ``i`` and ``j``."""
        cold_start, log_history = self._user_features(batch, pairs.rows)
        tail, popularity = self._item_features(pairs.items, item_index_fn)
        tail_i, tail_j = tf.split(tail, 2)
        pop_i, pop_j = tf.split(popularity, 2)
        return tf.stack([
                cold_start,
                log_history,
                0.5 * (tail_i + tail_j),
                0.5 * (pop_i + pop_j),
                tf.abs(pop_i - pop_j),
                _uncertainty(scores_i - scores_j),
                pairs.confidence,
        ], axis=-1)

    def _user_features(self, batch: Mapping[str, tf.Tensor], rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``Cold(u)`` and ``log(1 + |H(u)|) / log(1 + HISTORY_SCALE)`` of the users of batch rows, float ``[K]``."""
        history_length = tf.gather(tf.cast(tf.reshape(batch[schema.HISTORY_LENGTH], [-1]), tf.float32), rows)
        cold_start = tf.cast(history_length <= self.cold_start_max_history, tf.float32)
        return cold_start, tf.math.log1p(history_length) / math.log1p(HISTORY_SCALE)

    def _item_features(self, items: tf.Tensor, item_index_fn: ItemIndexFn) -> tuple[tf.Tensor, tf.Tensor]:
        """``Tail(i)`` and ``log(1 + pop(i)) / log(1 + max pop)`` of item ids, float, shaped like ``items``."""
        index = tf.cast(item_index_fn(items), tf.int32)
        return tf.gather(self._tail, index), tf.gather(self._log_popularity, index)

    def get_config(self) -> dict[str, Any]:
        return {
                **super().get_config(),
                "config": dataclasses.asdict(self.config),
                "item_popularity": list(self.item_popularity),
                "long_tail": list(self.long_tail),
                "cold_start_max_history": self.cold_start_max_history,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SelectiveRegularizer:
        config = dict(config)
        return cls(RegularizerConfig(**config.pop("config")), **config)
