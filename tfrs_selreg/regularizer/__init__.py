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

from tfrs_selreg.regularizer.config import (
    DEFAULT_BUDGETS,
    GATE_LOSS,
    GATE_MEAN,
    GATE_MODES,
    HISTORY_SCALE,
    OUTPUT_KEYS,
    PAIR_SELECTIONS,
    PAIR_WEIGHT_MEAN,
    PAPER_FEATURES,
    PROBE_ACCURACY,
    RELIABILITY_FEATURES,
    TEACHER_GRADIENTS,
    TEACHER_LOSS,
    TEACHER_PAIRS_KEPT,
    RegularizerConfig,
)
from tfrs_selreg.regularizer.layer import SelectiveRegularizer
from tfrs_selreg.regularizer.pairs import ItemIndexFn, PairScoreFn

__all__ = ["DEFAULT_BUDGETS", "GATE_LOSS", "GATE_MEAN", "GATE_MODES", "HISTORY_SCALE", "OUTPUT_KEYS",
           "PAIR_SELECTIONS", "PAIR_WEIGHT_MEAN", "PAPER_FEATURES", "PROBE_ACCURACY", "RELIABILITY_FEATURES",
           "TEACHER_GRADIENTS", "TEACHER_LOSS", "TEACHER_PAIRS_KEPT", "ItemIndexFn", "PairScoreFn",
           "RegularizerConfig", "SelectiveRegularizer"]
