"""Pairs of a batch as flat tensors: gathering ``[B, n]`` pair slots, scoring them, probe outcomes, means."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Optional

import tensorflow as tf

from tfrs_selreg.data import labels, schema

PairScoreFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
ItemIndexFn = Callable[[tf.Tensor], tf.Tensor]

# Batch features of one pair kind: (item_i, item_j, pref, confidence).
_TEACHER_KEYS = (schema.TEACHER_ITEM_I, schema.TEACHER_ITEM_J, schema.TEACHER_PREF, schema.TEACHER_CONFIDENCE)
_PROBE_KEYS = (schema.PROBE_ITEM_I, schema.PROBE_ITEM_J, schema.PROBE_PREF, schema.PROBE_CONFIDENCE)


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
