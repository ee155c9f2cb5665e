"""Losses: pure functions of tensors, no model imports."""

from tfrs_selreg.losses.pairwise import (
    budget_mask,
    pointwise_teacher_mse,
    selective_pairwise_hinge,
)

__all__ = ["budget_mask", "pointwise_teacher_mse", "selective_pairwise_hinge"]
