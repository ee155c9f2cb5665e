"""The regularizer's names (gate modes, features, output keys) and its typed :class:`RegularizerConfig`."""

from __future__ import annotations

import dataclasses
import math

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
