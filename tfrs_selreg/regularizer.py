"""The model-agnostic S-LLMR regularizer: gated teacher pairs added to any backbone's loss.

A backbone trains on ``L = L_rec + teacher_lambda * teacher_loss + gate_loss``. This layer computes the
last two terms from the batch's training-only teacher and probe pairs (``tfrs_selreg.data.schema``),
calling back the backbone only through ``score_fn`` (its logits for the batch's users against item ids),
so any backbone (two-tower retrieval, DCNv2, ...) uses it unchanged. Gate modes (docs/method.md, 5):

- ``none``: the backbone alone; all terms are 0 and ``score_fn`` is never called.
- ``global``: every teacher pair has weight 1 (ungated pairwise distillation).
- ``pointwise``: the paper's pointwise ablation, ``sigmoid(s)`` regressed to the teacher, ungated.
- ``paper``: the published gate, per user-item ``a(u,i) = sigmoid(w . [Cold(u), Tail(i), q(u,i)] + b)``
  with ``q(u,i) = 1 - |2 sigmoid(s(u,i)) - 1|`` (a feature: stop-gradient, so the backbone's gradient is
  the weighted hinge's), pair weight ``(a(u,i) + a(u,j)) / 2``, the gate trained jointly on the total
  loss. Every hinge term is >= 0, so ``dL/da >= 0`` and the gate can only close: kept to reproduce the
  paper and its collapse.
- ``reliability`` (default): the gate is a classifier of teacher reliability on pair-symmetric
  features, trained only by ``gate_loss``, a binary cross-entropy on probe pairs whose truth is known
  (target 1 when the teacher ranked the known positive first). Teacher pairs are weighted by the gate's
  excess reliability over chance, ``stop_gradient(max(0, 2a - 1))``: a teacher at chance gets weight 0.
  The gate gets no gradient from the teacher loss and the backbone none from the gate loss.

Reliability-gate features, each scaled to about [0, 1] (``RELIABILITY_FEATURES``, in this order):
``cold_start`` (``1[history_length <= cold_start_max_history]``), ``log_history_length``
(``log(1 + |H(u)|) / log(1 + HISTORY_SCALE)``), ``long_tail_count`` (long-tail items in the pair / 2),
``log_popularity_sum`` and ``log_popularity_gap`` (sum / 2 and absolute difference of
``log(1 + pop) / log(1 + max pop)`` of the two items), ``pair_uncertainty``
(``1 - |2 sigmoid(s_i - s_j) - 1|``, stop-gradient) and ``teacher_confidence``. None of them says which
item the teacher preferred, so a gate cannot pass the data's popularity prior off as reliability.

Shared by all modes: the pair budget keeps the ``budget`` real teacher pairs with the largest
``teacher_confidence`` per batch (ordered pairs for the hinge; all real pairs for ``pointwise``, whose
0.5 labels are targets too); probes with ``probe_pref = 0.5`` are left out of the gate loss and of
``probe_accuracy`` (a tie creates no teacher pair either); the cold-start flag is computed from
``history_length`` and ``cold_start_max_history`` (the batch's ``cold_start`` is not read), so a run can
vary ``tau_u`` without preparing the data again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_selreg.data import schema
from tfrs_selreg.layers.gate import SelectiveGate
from tfrs_selreg.losses.pairwise import (
    budget_mask,
    pointwise_teacher_mse,
    selective_pairwise_hinge,
)

GATE_MODES = ("none", "global", "pointwise", "paper", "reliability")

# A history of HISTORY_SCALE interactions maps to 1.0 on the log_history_length feature.
HISTORY_SCALE = 1000

RELIABILITY_FEATURES = ("cold_start", "log_history_length", "long_tail_count", "log_popularity_sum",
                        "log_popularity_gap", "pair_uncertainty", "teacher_confidence")
PAPER_FEATURES = ("cold_start", "long_tail", "uncertainty")

# Keys of the dict returned by SelectiveRegularizer.call (also the backbone's metric names).
TEACHER_LOSS = "teacher_loss"
GATE_LOSS = "gate_loss"
PAIR_WEIGHT_MEAN = "pair_weight_mean"
GATE_MEAN = "gate_mean"
PROBE_ACCURACY = "probe_accuracy"
TEACHER_PAIRS_KEPT = "teacher_pairs_kept"
OUTPUT_KEYS = (TEACHER_LOSS, GATE_LOSS, PAIR_WEIGHT_MEAN, GATE_MEAN, PROBE_ACCURACY, TEACHER_PAIRS_KEPT)

ScoreFn = Callable[[tf.Tensor], tf.Tensor]
ItemIndexFn = Callable[[tf.Tensor], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class RegularizerConfig:
    """Hyper-parameters of the regularizer.

    Attributes:
      gate: one of ``GATE_MODES``.
      teacher_lambda: ``lambda`` in ``L = L_rec + lambda * teacher_loss + gate_loss`` (paper: 0.1).
      margin: ``m`` of the hinge ``max(0, m - o (s_i - s_j))``.
      budget: ``K``, teacher pairs kept per batch (the most confident ones); the paper leaves it open.
      gate_hidden_units: width of the gate's hidden ReLU layer; 0 is the paper's linear gate.
      initial_gate: the gate's value before training. In ``reliability`` mode 0.5 means weight
        ``2 * 0.5 - 1 = 0``: the teacher is not used until the probes show it beats chance.
    """

    gate: str = "reliability"
    teacher_lambda: float = 0.1
    margin: float = 1.0
    budget: int = 512
    gate_hidden_units: int = 0
    initial_gate: float = 0.5

    def __post_init__(self) -> None:
        if self.gate not in GATE_MODES:
            raise ValueError(f"RegularizerConfig.gate: {self.gate!r} is not a gate mode; use one of {GATE_MODES}.")
        if not (math.isfinite(self.teacher_lambda) and self.teacher_lambda >= 0):
            raise ValueError(
                    f"RegularizerConfig.teacher_lambda must be a finite number >= 0, got {self.teacher_lambda}.")
        if not (math.isfinite(self.margin) and self.margin > 0):
            raise ValueError(f"RegularizerConfig.margin must be a finite number > 0, got {self.margin}.")
        if not (isinstance(self.budget, int) and self.budget >= 1):
            raise ValueError(
                    f"RegularizerConfig.budget (pairs per batch) must be an int >= 1, got {self.budget!r}.")
        if not (isinstance(self.gate_hidden_units, int) and self.gate_hidden_units >= 0):
            raise ValueError(
                    f"RegularizerConfig.gate_hidden_units must be an int >= 0, got {self.gate_hidden_units!r}.")
        if not 0.0 < self.initial_gate < 1.0:
            raise ValueError(f"RegularizerConfig.initial_gate must be in (0, 1), got {self.initial_gate}.")


def _masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """``sum(values over mask) / |mask|``, 0 for an empty mask (no NaN, no NaN gradient)."""
    values = tf.cast(values, tf.float32)
    total = tf.reduce_sum(tf.where(mask, values, tf.zeros_like(values)))
    return tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(mask, tf.float32)))


def _uncertainty(logits: tf.Tensor) -> tf.Tensor:
    """``1 - |2 sigmoid(z) - 1|`` in [0, 1]: 1 for a coin flip, 0 for a certain model; no gradient."""
    return 1.0 - tf.abs(2.0 * tf.sigmoid(tf.stop_gradient(tf.cast(logits, tf.float32))) - 1.0)


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
      score_fn: ``item_ids [B, n] (string) -> logits [B, n]``, the backbone's scores of the batch's users.
      item_index_fn: ``item_ids -> int`` indices into ``item_popularity`` and ``long_tail``.

    Returns:
      A dict of scalars (``OUTPUT_KEYS``): ``teacher_loss`` (``L_teacher``, not multiplied by lambda),
      ``gate_loss`` (probe cross-entropy, ``reliability`` only), ``pair_weight_mean`` and ``gate_mean``
      (mean pair weight and mean gate value over the batch's real ordered teacher pairs; ``gate_mean`` is 0
      without a gate), ``probe_accuracy`` (the teacher's accuracy on the batch's ordered probes) and
      ``teacher_pairs_kept`` (pairs in the hinge after the budget). Mode ``none`` returns zeros.
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
        self.gate = (SelectiveGate(config.gate_hidden_units, config.initial_gate, name="selective_gate")
                     if config.gate in ("paper", "reliability") else None)

    @property
    def teacher_lambda(self) -> float:
        return self.config.teacher_lambda

    def call(self, batch: Mapping[str, tf.Tensor], score_fn: ScoreFn, item_index_fn: ItemIndexFn,
             training: Any = None) -> dict[str, tf.Tensor]:
        zero = tf.zeros([], tf.float32)
        if self.config.gate == "none":
            return {key: zero for key in OUTPUT_KEYS}
        pref = tf.cast(batch[schema.TEACHER_PREF], tf.float32)
        real = tf.cast(batch[schema.TEACHER_MASK], tf.float32) > 0
        ordered = real & tf.not_equal(pref, 0.5)
        confidence = tf.cast(batch[schema.TEACHER_CONFIDENCE], tf.float32)
        terms = self._terms(batch, score_fn, item_index_fn)
        if self.config.gate == "pointwise":
            kept = budget_mask(real, confidence, self.config.budget)
            teacher_loss = pointwise_teacher_mse(terms.scores_i, terms.scores_j, pref, mask=kept)
        else:
            kept = budget_mask(ordered, confidence, self.config.budget)
            teacher_loss = selective_pairwise_hinge(
                    terms.scores_i, terms.scores_j, pref, pair_weights=terms.weights, mask=kept,
                    margin=self.config.margin)
        probe_ordered, probe_correct = _probe_outcomes(batch)
        return {
                TEACHER_LOSS: tf.cast(teacher_loss, tf.float32),
                GATE_LOSS: zero if terms.gate_loss is None else terms.gate_loss,
                PAIR_WEIGHT_MEAN: _masked_mean(terms.weights, ordered),
                GATE_MEAN: zero if terms.gates is None else _masked_mean(terms.gates, ordered),
                PROBE_ACCURACY: _masked_mean(probe_correct, probe_ordered),
                TEACHER_PAIRS_KEPT: tf.reduce_sum(tf.cast(kept, tf.float32)),
        }

    def pair_weights(self, batch: Mapping[str, tf.Tensor], score_fn: ScoreFn,
                     item_index_fn: ItemIndexFn) -> tf.Tensor:
        """The weight of every teacher pair slot ``[B, P]``, 0 on padding and ties (for diagnostics)."""
        if self.config.gate == "none":
            return tf.zeros_like(tf.cast(batch[schema.TEACHER_PREF], tf.float32))
        pref = tf.cast(batch[schema.TEACHER_PREF], tf.float32)
        ordered = (tf.cast(batch[schema.TEACHER_MASK], tf.float32) > 0) & tf.not_equal(pref, 0.5)
        weights = self._terms(batch, score_fn, item_index_fn).weights
        return tf.where(ordered, weights, tf.zeros_like(weights))

    def _terms(self, batch: Mapping[str, tf.Tensor], score_fn: ScoreFn, item_index_fn: ItemIndexFn) -> _Terms:
        """Scores of the teacher pairs, their weights and, per gate mode, the gate values and gate loss."""
        items_i, items_j = batch[schema.TEACHER_ITEM_I], batch[schema.TEACHER_ITEM_J]
        history_length = tf.cast(tf.reshape(batch[schema.HISTORY_LENGTH], [-1, 1]), tf.float32)
        cold_start = tf.cast(history_length <= self.cold_start_max_history, tf.float32)
        if self.config.gate == "reliability":
            return self._reliability_terms(batch, score_fn, item_index_fn, cold_start, history_length)
        scores_i, scores_j = _split(score_fn(tf.concat([items_i, items_j], axis=1)), [items_i, items_j])
        if self.config.gate != "paper":
            return _Terms(scores_i, scores_j, tf.ones_like(scores_i))
        # The published gate: per (user, item), trained jointly through the pair weight.
        cold = cold_start * tf.ones_like(scores_i)
        tail_i, _ = self._item_features(items_i, item_index_fn)
        tail_j, _ = self._item_features(items_j, item_index_fn)
        gate_i = self.gate(tf.stack([cold, tail_i, _uncertainty(scores_i)], axis=-1))
        gate_j = self.gate(tf.stack([cold, tail_j, _uncertainty(scores_j)], axis=-1))
        weights = 0.5 * (gate_i + gate_j)
        return _Terms(scores_i, scores_j, weights, gates=weights)

    def _reliability_terms(self, batch: Mapping[str, tf.Tensor], score_fn: ScoreFn, item_index_fn: ItemIndexFn,
                           cold_start: tf.Tensor, history_length: tf.Tensor) -> _Terms:
        """Weights ``stop_gradient(max(0, 2a - 1))`` and the gate's cross-entropy on the probes."""
        items = [batch[schema.TEACHER_ITEM_I], batch[schema.TEACHER_ITEM_J],
                 batch[schema.PROBE_ITEM_I], batch[schema.PROBE_ITEM_J]]
        # One backbone call for teacher and probe items; probe scores only feed the stop-gradient features.
        scores = _split(score_fn(tf.concat(items, axis=1)), items)
        user = (cold_start, tf.math.log1p(history_length) / math.log1p(HISTORY_SCALE))
        teacher_features = self._pair_features(
                user, items[0], items[1], scores[0], scores[1], batch[schema.TEACHER_CONFIDENCE], item_index_fn)
        probe_features = self._pair_features(
                user, items[2], items[3], scores[2], scores[3], batch[schema.PROBE_CONFIDENCE], item_index_fn)
        gates = tf.stop_gradient(self.gate(teacher_features))
        probe_ordered, probe_correct = _probe_outcomes(batch)
        probe_logits = self.gate(probe_features, return_logits=True)
        gate_loss = _masked_mean(
                tf.nn.sigmoid_cross_entropy_with_logits(labels=probe_correct, logits=probe_logits), probe_ordered)
        return _Terms(scores[0], scores[1], tf.nn.relu(2.0 * gates - 1.0), gates=gates, gate_loss=gate_loss)

    def _pair_features(self, user: tuple[tf.Tensor, tf.Tensor], items_i: tf.Tensor, items_j: tf.Tensor,
                       scores_i: tf.Tensor, scores_j: tf.Tensor, confidence: tf.Tensor,
                       item_index_fn: ItemIndexFn) -> tf.Tensor:
        """``RELIABILITY_FEATURES`` of pairs ``[B, n]`` as ``[B, n, 7]``: symmetric in ``i`` and ``j``."""
        cold_start, log_history = user
        tail_i, pop_i = self._item_features(items_i, item_index_fn)
        tail_j, pop_j = self._item_features(items_j, item_index_fn)
        broadcast = tf.ones_like(pop_i)
        return tf.stack([
                cold_start * broadcast,
                log_history * broadcast,
                0.5 * (tail_i + tail_j),
                0.5 * (pop_i + pop_j),
                tf.abs(pop_i - pop_j),
                _uncertainty(scores_i - scores_j),
                tf.cast(confidence, tf.float32),
        ], axis=-1)

    def _item_features(self, items: tf.Tensor, item_index_fn: ItemIndexFn) -> tuple[tf.Tensor, tf.Tensor]:
        """``Tail(i)`` and ``log(1 + pop(i)) / log(1 + max pop)`` of item ids, float ``[B, n]`` each."""
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


@dataclasses.dataclass(frozen=True)
class _Terms:
    """Per-pair tensors ``[B, P]`` of one batch; ``gates`` and ``gate_loss`` exist only with a gate."""

    scores_i: tf.Tensor
    scores_j: tf.Tensor
    weights: tf.Tensor
    gates: tf.Tensor | None = None
    gate_loss: tf.Tensor | None = None


def _split(scores: tf.Tensor, parts: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """Splits ``score_fn``'s ``[B, sum n_k]`` logits back into the ``[B, n_k]`` parts it was called on."""
    sizes = tf.stack([tf.shape(part)[1] for part in parts])
    return [tf.cast(s, tf.float32) for s in tf.split(scores, sizes, axis=1, num=len(parts))]


def _probe_outcomes(batch: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
    """Which probe slots count (real and ordered) and whether the teacher got each right (float 0/1).

    A probe is right when the teacher's order agrees with the truth: ``(pref > 0.5) == (truth > 0.5)``.
    Probes with ``pref = 0.5`` are excluded, not counted wrong: a tie creates no teacher pair either, so
    the gate estimates the teacher's accuracy on exactly the pairs it weights.
    """
    pref = tf.cast(batch[schema.PROBE_PREF], tf.float32)
    ordered = (tf.cast(batch[schema.PROBE_MASK], tf.float32) > 0) & tf.not_equal(pref, 0.5)
    correct = tf.equal(pref > 0.5, tf.cast(batch[schema.PROBE_TRUTH], tf.float32) > 0.5)
    return ordered, tf.cast(correct, tf.float32)
