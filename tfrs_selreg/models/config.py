"""Hyper-parameters of the backbones, as typed frozen dataclasses (paper defaults where it gives any)."""

from __future__ import annotations

import dataclasses

BACKBONES = ("two_tower", "dcn")
# How the item-id embedding rows start (tfrs_selreg.models.item_init); the last two are controls.
ITEM_INITS = ("random", "teacher", "teacher_shuffled", "random_matched")
NEGATIVE_SAMPLING = ("uniform", "popularity")


@dataclasses.dataclass(frozen=True)
class TwoTowerConfig:
    """In-batch softmax retrieval (``tfrs.tasks.Retrieval``).

    Attributes:
      logq_correction: subtract ``log Q(i)`` from every in-batch logit, with ``Q(i)`` the item's share of
        training interactions (its probability of being an in-batch negative).
      remove_accidental_hits: drop in-batch negatives that are the row's own positive item.
      temperature: softmax temperature; ``None`` is 1.
    """

    logq_correction: bool = True
    remove_accidental_hits: bool = True
    temperature: float | None = None


@dataclasses.dataclass(frozen=True)
class DCNConfig:
    """DCNv2 ranking trained CTR-style (``tfrs.layers.dcn.Cross`` + ``tfrs.tasks.Ranking``).

    Attributes:
      cross_layers: number of stacked ``Cross`` layers.
      projection_dim: low-rank size of each cross kernel; ``None`` is full rank.
      deep_layers: widths of the ReLU layers after the cross stack.
      num_negatives: sampled negatives per positive in the binary cross-entropy.
      negative_sampling: ``uniform`` over the catalog, or ``popularity`` (proportional to training
        interactions, the in-batch negatives' distribution).
    """

    cross_layers: int = 2
    projection_dim: int | None = None
    deep_layers: tuple[int, ...] = (256, 128)
    num_negatives: int = 4
    negative_sampling: str = "uniform"

    def __post_init__(self) -> None:
        if self.negative_sampling not in NEGATIVE_SAMPLING:
            raise ValueError(f"DCNConfig.negative_sampling: {self.negative_sampling!r} is not one of "
                             f"{NEGATIVE_SAMPLING}.")
        if self.num_negatives < 1:
            raise ValueError(f"DCNConfig.num_negatives must be >= 1, got {self.num_negatives}.")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The backbone and its feature embeddings.

    Attributes:
      backbone: ``two_tower`` or ``dcn``.
      embedding_dim: size of every embedding (paper: 64).
      max_title_tokens: title tokens kept per item.
      max_categories: categories kept per item.
      text_vocabulary_size: most frequent title tokens kept (others are dropped).
      item_init: how the item-id embedding rows start: ``random`` (Keras' uniform init), ``teacher``
        (the teacher's item text embeddings projected by PCA, norm-matched to the random init; needs
        ``item_embeddings/`` in the prepared folder), or the controls ``teacher_shuffled`` (the same
        rows permuted across items) and ``random_matched`` (random directions with the same row norms).
        Only the starting point changes: the served model has the same variables and ops.
    """

    backbone: str = "two_tower"
    embedding_dim: int = 64
    max_title_tokens: int = 16
    max_categories: int = 8
    text_vocabulary_size: int = 20_000
    item_init: str = "random"
    two_tower: TwoTowerConfig = TwoTowerConfig()
    dcn: DCNConfig = DCNConfig()

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"ModelConfig.backbone: {self.backbone!r} is not one of {BACKBONES}.")
        if self.item_init not in ITEM_INITS:
            raise ValueError(f"ModelConfig.item_init: {self.item_init!r} is not one of {ITEM_INITS}.")
        if self.embedding_dim < 1:
            raise ValueError(f"ModelConfig.embedding_dim must be >= 1, got {self.embedding_dim}.")
