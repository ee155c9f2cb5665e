"""The model-agnostic S-LLMR regularizer: gated teacher pairs added to any backbone's loss.

A backbone trains on ``L = L_rec + teacher_lambda * teacher_loss + gate_loss``. This layer computes the
last two terms from the batch's training-only teacher and probe pairs (``tfrs_selreg.data.schema``),
calling back the backbone only through ``pair_score_fn`` (its logits for ``(batch row, item)`` pairs),
so any backbone (two-tower retrieval, DCNv2, ...) uses it unchanged. Gate modes (docs/method.md, 5):

- ``none``: the backbone alone; all terms are 0 and ``pair_score_fn`` is never called.
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

Cost: the pair budget depends on the teacher's confidence alone, so it is applied *before* scoring: the
``budget`` real teacher pairs with the largest ``teacher_confidence`` per batch (ordered pairs for the
hinge; all real pairs for ``pointwise``, whose 0.5 labels are targets too; at least one when any
exists) are gathered to flat ``[K]`` tensors and only their ``2 K`` items are scored, gated and put in
the loss. The reliability gate's cross-entropy uses at most ``probe_budget`` ordered probes per batch,
a uniformly random subset (TensorFlow's global seed, e.g. ``tf.keras.utils.set_random_seed``): an
unbiased estimate of the mean over all probes. Probe scores only feed the stop-gradient uncertainty
feature, so they cost one forward pass and no backward pass.

Also shared by all modes: probes with ``probe_pref = 0.5`` are left out of the gate loss and of
``probe_accuracy`` (a tie creates no teacher pair either); the cold-start flag is computed from
``history_length`` and ``cold_start_max_history`` (the batch's ``cold_start`` is not read), so a run can
vary ``tau_u`` without preparing the data again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from tfrs_selreg.data import labels, schema
from tfrs_selreg.data.popularity import popularity_buckets
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

TEACHER_GRADIENTS = ("user", "long_tail", "all")
PAIR_SELECTIONS = ("all", "within_group", "tail_over_head")

PairScoreFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
ItemIndexFn = Callable[[tf.Tensor], tf.Tensor]

# Batch features of one pair kind: (item_i, item_j, pref, confidence).
_TEACHER_KEYS = (schema.TEACHER_ITEM_I, schema.TEACHER_ITEM_J, schema.TEACHER_PREF, schema.TEACHER_CONFIDENCE)
_PROBE_KEYS = (schema.PROBE_ITEM_I, schema.PROBE_ITEM_J, schema.PROBE_PREF, schema.PROBE_CONFIDENCE)


# Teacher pairs per batch by backbone when RegularizerConfig.budget is None (docs/results/speed.md: the
# DCN step-time target; docs/results/ml-1m-dcn-budget-val: 256 costs no quality against 512).
DEFAULT_BUDGETS = {"two_tower": 512, "dcn": 256}


@dataclasses.dataclass(frozen=True)
class RegularizerConfig:
    """Hyper-parameters of the regularizer.

    Attributes:
      gate: one of ``GATE_MODES``.
      teacher_lambda: ``lambda`` in ``L = L_rec + lambda * teacher_loss + gate_loss`` (paper: 0.1).
      margin: ``m`` of the hinge ``max(0, m - o (s_i - s_j))``.
      budget: ``K``, teacher pairs kept per batch (the most confident ones); the paper leaves it open.
        Only the kept pairs are scored, so the regularizer's cost grows with ``K``, not with the batch.
        ``None``: the backbone's default, ``DEFAULT_BUDGETS`` (resolved by ``TrainConfig`` and
        ``build_model``): 512 for the two-tower, where a pair costs two dot products, 256 for DCN, where it
        costs two cross-network passes and their backward pass.
      probe_budget: ordered probe pairs per batch in the reliability gate's cross-entropy (a random
        subset when the batch has more); each costs a forward pass of the backbone on two items.
      teacher_gradient: what the teacher loss trains. ``user``: the user side and the shared layers;
        the item representations enter the teacher term as constants (stop-gradient), so items are
        trained by ``L_rec`` alone. ``all``: the item representations too. ``user`` is the default
        because Adam scales each parameter's step by its own gradient history: an item row that
        rarely gets ``L_rec``'s gradient (long-tail and teacher-candidate items, never in-batch
        negatives) moves a full step along the teacher's gradient whatever ``teacher_lambda`` is
        (measured in ``docs/results/selectivity.md``).
        ``long_tail``: the user side plus the representations of long-tail items (``Tail(i) = 1``) only,
        the items ``L_rec`` hardly trains and where the teacher knows more than the model; head items
        stay as ``L_rec`` trained them.
      item_gradient_min_weight: with ``teacher_gradient`` ``long_tail`` or ``all``, a teacher pair trains
        item representations only when its weight ``w >= item_gradient_min_weight`` (its user side is
        trained by every pair, scaled by ``w``). For the reason ``user`` is the default, the pair weight
        cannot select which pairs move an item row that only the teacher trains: Adam steps that row by
        about the learning rate whatever ``w > 0`` is. A threshold can (``docs/results/selectivity.md``).
        0 keeps every pair (each pair's item step is still scaled by ``w``, which Adam undoes).
      pairs: which teacher pairs may enter the loss, by the popularity quartiles ``b(i)`` of the two items
        (:func:`tfrs_selreg.data.popularity.popularity_buckets` over ``item_popularity``), applied before
        the budget. ``within_group`` (default): ``b(i) = b(j)``, ranking knowledge inside one popularity
        group only, so the teacher never trades a head item for a rarer one (UnKD). ``all``: every pair.
        ``tail_over_head``: the item the teacher prefers is in a rarer quartile than the other.
    """

    gate: str = "reliability"
    teacher_lambda: float = 0.1
    margin: float = 1.0
    budget: int | None = None
    probe_budget: int = 256
    teacher_gradient: str = "user"
    item_gradient_min_weight: float = 0.0
    pairs: str = "within_group"

    def for_backbone(self, backbone: str) -> RegularizerConfig:
        """This config with ``budget`` ``None`` replaced by the default of ``backbone``."""
        if self.budget is not None:
            return self
        return dataclasses.replace(self, budget=DEFAULT_BUDGETS[backbone])

    @property
    def uses_teacher(self) -> bool:
        """Whether the loss reads the training-only teacher and probe features (every gate but ``none``)."""
        return self.gate != "none"

    def __post_init__(self) -> None:
        if self.gate not in GATE_MODES:
            raise ValueError(f"RegularizerConfig.gate: {self.gate!r} is not a gate mode; use one of {GATE_MODES}.")
        if not (math.isfinite(self.teacher_lambda) and self.teacher_lambda >= 0):
            raise ValueError(
                    f"RegularizerConfig.teacher_lambda must be a finite number >= 0, got {self.teacher_lambda}.")
        if not (math.isfinite(self.margin) and self.margin > 0):
            raise ValueError(f"RegularizerConfig.margin must be a finite number > 0, got {self.margin}.")
        if not (self.budget is None or (isinstance(self.budget, int) and self.budget >= 1)):
            raise ValueError(f"RegularizerConfig.budget (pairs per batch) must be an int >= 1 or None (the "
                             f"backbone's default), got {self.budget!r}.")
        if not (isinstance(self.probe_budget, int) and self.probe_budget >= 1):
            raise ValueError("RegularizerConfig.probe_budget (probe pairs per batch) must be an int >= 1, got "
                             f"{self.probe_budget!r}.")
        if self.teacher_gradient not in TEACHER_GRADIENTS:
            raise ValueError(f"RegularizerConfig.teacher_gradient must be one of {TEACHER_GRADIENTS}, got "
                             f"{self.teacher_gradient!r}.")
        if not 0.0 <= self.item_gradient_min_weight <= 1.0:
            raise ValueError("RegularizerConfig.item_gradient_min_weight (a pair weight) must be in [0, 1], got "
                             f"{self.item_gradient_min_weight}.")
        if self.pairs not in PAIR_SELECTIONS:
            raise ValueError(f"RegularizerConfig.pairs must be one of {PAIR_SELECTIONS}, got {self.pairs!r}.")


def _mean(values: tf.Tensor) -> tf.Tensor:
    """The mean of a 1-D tensor, 0 when it is empty (no NaN, no NaN gradient)."""
    values = tf.cast(values, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(values), tf.cast(tf.size(values), tf.float32))


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


@dataclasses.dataclass(frozen=True)
class _Pairs:
    """Pairs gathered from a batch's ``[B, n]`` pair slots to flat tensors, ``K`` pairs.

    ``items`` holds the ``K`` first items followed by the ``K`` second items, so that one backbone call
    and one item-index lookup serve both sides.
    """

    rows: tf.Tensor
    items: tf.Tensor
    pref: tf.Tensor
    confidence: tf.Tensor


def _gather_pairs(batch: Mapping[str, tf.Tensor], keys: tuple[str, str, str, str], positions: tf.Tensor) -> _Pairs:
    """The pairs at ``positions`` (int ``[K, 2]`` of ``(row, slot)``) of the pair features ``keys``."""
    item_i, item_j, pref, confidence = (tf.gather_nd(batch[key], positions) for key in keys)
    return _Pairs(rows=positions[:, 0], items=tf.concat([item_i, item_j], axis=0),
                  pref=tf.cast(pref, tf.float32), confidence=tf.cast(confidence, tf.float32))


def _score_pairs(pair_score_fn: PairScoreFn, pairs: _Pairs,
                 item_gradient: Optional[bool | tf.Tensor] = None) -> list[tf.Tensor]:
    """``s(u, i)`` and ``s(u, j)`` ``[K]`` of the pairs, from one ``pair_score_fn`` call on ``2 K`` items
    (``item_gradient``, a bool or a ``[2 K]`` mask, overrides ``teacher_gradient``'s item scope)."""
    rows = tf.concat([pairs.rows, pairs.rows], axis=0)
    scores = (pair_score_fn(rows, pairs.items) if item_gradient is None
              else pair_score_fn(rows, pairs.items, item_gradient=item_gradient))
    return tf.split(tf.cast(scores, tf.float32), 2)


def _score_pair_sets(pair_score_fn: PairScoreFn, pairs: _Pairs,
                     probes: Optional[tuple[_Pairs, tf.Tensor]]) -> tuple[list[tf.Tensor], Optional[list[tf.Tensor]]]:
    """:func:`_score_pairs` of the teacher pairs and, if given, of the probes, from one ``pair_score_fn`` call."""
    if probes is None:
        return _score_pairs(pair_score_fn, pairs), None
    probe_pairs = probes[0]
    k, q = tf.size(pairs.rows), tf.size(probe_pairs.rows)
    rows = tf.concat([pairs.rows, pairs.rows, probe_pairs.rows, probe_pairs.rows], axis=0)
    scores = tf.cast(pair_score_fn(rows, tf.concat([pairs.items, probe_pairs.items], axis=0)), tf.float32)
    scores_i, scores_j, probe_i, probe_j = tf.split(scores, tf.stack([k, k, q, q]))
    return [scores_i, scores_j], [probe_i, probe_j]


def _probe_outcomes(batch: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
    """Which probe slots count (real and ordered) and whether the teacher got each right (float 0/1).

    A probe is right when the teacher's order agrees with the truth: ``(pref > 0.5) == (truth > 0.5)``.
    Probes with ``pref = 0.5`` are excluded, not counted wrong: a tie creates no teacher pair either, so
    the gate estimates the teacher's accuracy on exactly the pairs it weights.
    """
    pref = tf.cast(batch[schema.PROBE_PREF], tf.float32)
    ordered = (tf.cast(batch[schema.PROBE_MASK], tf.float32) > 0) & labels.is_ordered(pref)
    correct = labels.probe_correct(pref, tf.cast(batch[schema.PROBE_TRUTH], tf.float32))
    return ordered, tf.cast(correct, tf.float32)
