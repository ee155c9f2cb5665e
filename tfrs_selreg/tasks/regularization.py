""":class:`SelectiveLLMRegularization`: S-LLMR as a loss task for any ``tfrs.Model``."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tensorflow as tf

from tfrs_selreg.data.in_memory import vocabulary_lookup
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.regularizer import GATE_LOSS, OUTPUT_KEYS, TEACHER_LOSS, RegularizerConfig, SelectiveRegularizer

Tensor = tf.Tensor


def with_item_gradient(items: Tensor, item_gradient: bool | Tensor) -> Tensor:
    """``items [K, ...]`` with the gradient kept only where ``item_gradient`` (a bool or a ``[K]`` mask) holds."""
    if isinstance(item_gradient, bool):
        return items if item_gradient else tf.stop_gradient(items)
    mask = tf.reshape(item_gradient, [-1] + [1] * (items.shape.rank - 1))
    return tf.where(mask, items, tf.stop_gradient(items))


def by_unique(fn: Callable[[Tensor], Tensor], index: Tensor) -> Tensor:
    """``fn`` applied to the distinct values of ``index [...]`` only, then gathered back to ``[..., out]``.

    A batch scores the same items many times (histories, teacher and probe pairs); computing each
    distinct item once keeps the cost of an item tower proportional to the distinct items.
    """
    unique, position = tf.unique(tf.reshape(index, [-1]))
    values = fn(unique)
    out = tf.reshape(tf.gather(values, position), tf.concat([tf.shape(index), tf.shape(values)[1:]], axis=0))
    return tf.ensure_shape(out, index.shape.concatenate(values.shape[1:]))


def memoized(item_index: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``item_index`` that looks each tensor up once per step.

    The regularizer looks up the same pair items for its gate features and for scoring, and string hash
    lookups are a visible part of a CPU step.
    """
    cache: dict = {}

    def lookup(item_ids: Tensor) -> Tensor:
        key = item_ids.ref()
        if key not in cache:
            cache[key] = item_index(item_ids)
        return cache[key]
    return lookup


def _takes_item_gradient(fn: Callable) -> bool:
    try:
        return "item_gradient" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@tf.keras.utils.register_keras_serializable(package="tfrs_selreg")
class SelectiveLLMRegularization(tf.keras.layers.Layer):
    """The teacher and gate terms of S-LLMR, in the manner of ``tfrs.tasks.Retrieval``.

    Called in a model's ``compute_loss`` with the batch's teacher pairs (the training-only features of
    :mod:`tfrs_selreg.data.schema`, e.g. from :class:`~tfrs_selreg.tasks.TeacherPairs`) and the model's
    scores for (batch row, item) pairs; returns the loss to add to the model's own::

        loss = teacher_lambda * L_teacher + L_gate
        L_teacher = sum_k w_k max(0, m - o_k (s(u_k, i_k) - s(u_k, j_k))) / K

    over the ``K <= budget`` most confident ordered teacher pairs (``o_k = sign(pref_k - 1/2)``), ``w_k`` the
    gate's pair weight (``gate``: ``reliability``, ``global``, ``paper``, ``pointwise`` or ``none``) and
    ``L_gate`` the reliability gate's cross-entropy on probe pairs (``tfrs_selreg.regularizer``, the
    formulas and the gate features). The scores come from either

    - ``query_embeddings [B, d]`` and ``candidate_model`` (item ids ``[K]`` -> ``[K, d]``): a retrieval model's
      dot product, ``s(u, i) = q_u . c_i`` (the model is called once per distinct item); or
    - ``pair_score_fn(rows [K], item_ids [K]) -> logits [K]``, any model's score of ``item_ids[k]`` for the
      user of batch row ``rows[k]`` (a ranking network on (user features, item) pairs). With
      ``teacher_gradient`` other than ``all`` it must take ``item_gradient=`` (a bool or ``[K]`` mask; see
      :func:`with_item_gradient`) and hold the item side constant where it is False.

    Each term (``OUTPUT_KEYS``: ``teacher_loss``, ``gate_loss``, ``pair_weight_mean``, ``gate_mean``,
    ``probe_accuracy``, ``teacher_pairs_kept``) is a ``Mean`` metric of this layer, so ``fit`` logs it.

    Args:
      item_ids: the catalog; ``item_popularity[k]`` (training interactions) and ``long_tail[k]`` (0/1)
        belong to ``item_ids[k]``. Unknown items count as popularity 0, not long-tail.
      cold_start_max_history: ``tau_u``: a user with ``history_length <= tau_u`` is cold-start.
      **options: the fields of :class:`~tfrs_selreg.regularizer.RegularizerConfig` (``gate``,
        ``teacher_lambda``, ``margin``, ``budget``, ``probe_budget``, ``teacher_gradient``,
        ``item_gradient_min_weight``, ``pairs``); ``budget`` defaults to 512.
    """

    def __init__(self, item_ids: Sequence[str], item_popularity: Sequence[int], long_tail: Sequence[int], *,
                 cold_start_max_history: int, name: str | None = None, **options: Any) -> None:
        layer_keys = {"trainable", "dtype", "dynamic"}
        super().__init__(name=name, **{k: options.pop(k) for k in list(options) if k in layer_keys})
        fields = {f.name for f in dataclasses.fields(RegularizerConfig)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise TypeError(f"SelectiveLLMRegularization: unknown option(s) {unknown}; options are {sorted(fields)}.")
        self.config = RegularizerConfig(**options).for_backbone("two_tower")
        self.item_ids = tuple(item_ids)
        if len(self.item_ids) != len(item_popularity) or len(self.item_ids) != len(long_tail):
            raise ValueError(f"SelectiveLLMRegularization: item_ids ({len(self.item_ids)}), item_popularity "
                             f"({len(item_popularity)}) and long_tail ({len(long_tail)}) must have one entry per item.")
        # Index 0 is the out-of-vocabulary slot of the lookup below.
        self.regularizer = SelectiveRegularizer(
            self.config, [0] + [int(p) for p in item_popularity], [0] + [int(t) for t in long_tail],
            cold_start_max_history, name="selective_regularizer")
        self.item_lookup = vocabulary_lookup(self.item_ids, "item_lookup")
        self._vocabulary = tf.constant(("",) + self.item_ids, tf.string)  # index -> id, 0 the OOV slot
        self.trackers = {key: tf.keras.metrics.Mean(name=key) for key in OUTPUT_KEYS}

    @classmethod
    def from_prepared(cls, prepared: str, **options: Any) -> SelectiveLLMRegularization:
        """With the catalog statistics of a prepared folder (``items.jsonl``) and its ``tau_u`` (``stats.json``)."""
        data = PreparedData(prepared)
        items = {item.item_id: item for item in data.items()}
        vocabulary = data.item_vocabulary()
        return cls(vocabulary, [items[i].popularity for i in vocabulary], [int(items[i].long_tail) for i in vocabulary],
                   cold_start_max_history=data.stats().thresholds.cold_start_max_history, **options)

    def item_index(self, items: Tensor) -> Tensor:
        """Item ids -> int64 indices (``item_ids[k]`` -> ``k + 1``, unknown -> 0); integer input is taken as
        indices already (``TeacherPairs(item_index=True)``)."""
        items = tf.convert_to_tensor(items)
        return tf.cast(items, tf.int64) if items.dtype.is_integer else self.item_lookup(items)

    def item_ids_of(self, items: Tensor) -> Tensor:
        """Item ids of ``items``: strings as they are, indices mapped back (0 -> ``""``)."""
        items = tf.convert_to_tensor(items)
        return tf.gather(self._vocabulary, items) if items.dtype.is_integer else items

    @property
    def teacher_lambda(self) -> float:
        return self.config.teacher_lambda

    @property
    def gate(self) -> tf.keras.layers.Layer | None:
        """The gate layer (``reliability``, ``paper``), whose ``trainable_variables`` are its weights per
        feature (``RELIABILITY_FEATURES``, ``PAPER_FEATURES``) and bias; ``None`` for the other modes."""
        return self.regularizer.gate

    def loss_terms(self, pairs: Mapping[str, Tensor], pair_score_fn: Callable[..., Tensor],
                   item_index_fn: Callable[[Tensor], Tensor] | None = None, training: Any = None
                   ) -> dict[str, Tensor]:
        """The terms (``OUTPUT_KEYS``) without touching the metrics. ``pair_score_fn(rows, item_ids,
        item_gradient=...)``; ``item_index_fn`` maps item ids to this layer's index (default: its lookup)."""
        item_index = item_index_fn or memoized(self.item_index)
        regularizer = self.regularizer
        if _takes_item_gradient(pair_score_fn):
            def scores(rows, item_ids, item_gradient=None):
                if item_gradient is None:
                    item_gradient = regularizer.item_gradient(item_index(item_ids))
                return pair_score_fn(rows, item_ids, item_gradient=item_gradient)
        elif self.config.teacher_gradient == "all" and self.config.item_gradient_min_weight == 0:
            def scores(rows, item_ids):
                return pair_score_fn(rows, item_ids)
        else:
            raise TypeError(f"SelectiveLLMRegularization: teacher_gradient={self.config.teacher_gradient!r} keeps "
                            "item representations out of the teacher loss, so pair_score_fn must take item_gradient= "
                            "(wrap the item side in tfrs_selreg.tasks.with_item_gradient), or pass "
                            "teacher_gradient='all'.")
        return regularizer(pairs, pair_score_fn=scores, item_index_fn=item_index, training=training)

    def pair_weights(self, pairs: Mapping[str, Tensor], pair_score_fn: Callable[[Tensor, Tensor], Tensor],
                     item_index_fn: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """The gate's weight of every teacher pair slot ``[B, P]`` (0 on padding, ties and pairs left out), from
        ``pair_score_fn(rows, item_ids)``; for diagnostics (``SelectiveRegularizer.pair_weights``)."""
        return self.regularizer.pair_weights(pairs, pair_score_fn, item_index_fn or memoized(self.item_index))

    def call(self, pairs: Mapping[str, Tensor], *, query_embeddings: Tensor | None = None,
             candidate_model: Callable[[Tensor], Tensor] | None = None,
             pair_score_fn: Callable[..., Tensor] | None = None, training: Any = None) -> Tensor:
        """``teacher_lambda * teacher_loss + gate_loss`` of the batch (class docstring); updates the metrics."""
        if (pair_score_fn is None) == (query_embeddings is None or candidate_model is None):
            raise ValueError("SelectiveLLMRegularization: pass query_embeddings and candidate_model (retrieval), or "
                             "pair_score_fn (any model), not both.")
        if pair_score_fn is None:
            def pair_score_fn(rows, item_ids, item_gradient=True):
                candidates = by_unique(lambda items: candidate_model(self.item_ids_of(items)), item_ids)
                candidates = with_item_gradient(candidates, item_gradient)
                return tf.reduce_sum(tf.gather(query_embeddings, rows) * tf.cast(candidates, query_embeddings.dtype),
                                     axis=-1)
        else:
            user_fn = pair_score_fn

            @functools.wraps(user_fn)  # keeps its signature: whether it takes item_gradient
            def pair_score_fn(rows, item_ids, **kwargs):
                return user_fn(rows, self.item_ids_of(item_ids), **kwargs)
        terms = self.loss_terms(pairs, pair_score_fn, training=training)
        if self.config.uses_teacher:
            for key, tracker in self.trackers.items():
                tracker.update_state(terms[key])
        return self.teacher_lambda * terms[TEACHER_LOSS] + terms[GATE_LOSS]

    def get_config(self) -> dict[str, Any]:
        reg = self.regularizer
        return {**super().get_config(), "item_ids": list(self.item_ids),
                "item_popularity": list(reg.item_popularity[1:]), "long_tail": list(reg.long_tail[1:]),
                "cold_start_max_history": reg.cold_start_max_history, **dataclasses.asdict(self.config)}

