"""Training hyper-parameters: one typed, frozen :class:`TrainConfig` per run.

Resolution order: the dataclass defaults (the paper's settings: Adam, learning rate 1e-3, embedding
size 64, ``teacher_lambda`` 0.1, batch 128), then a YAML or JSON file, then command-line flags. The
resolved config is written to ``RUN_DIR/config.json`` and is all evaluation and export need to rebuild
the model. Nested sections mirror the dataclasses::

    model: {backbone: dcn, embedding_dim: 64, dcn: {num_negatives: 8}}
    regularizer: {gate: reliability, teacher_lambda: 0.1}
    epochs: 30
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from tfrs_selreg.models.config import ModelConfig
from tfrs_selreg.regularizer import RegularizerConfig
from tfrs_selreg.typed_config import ConfigError, from_dict, load_file, merge, parse_sets

__all__ = ["TrainConfig", "ConfigError", "resolve", "save", "load", "parse_sets", "merge", "load_file"]

# tf.distribute strategies a run may train with (tfrs_selreg.training.strategy builds them).
STRATEGIES = ("default", "mirrored", "multi_worker")

# The validation metric that early stopping and the choice of the final weights follow.
VALIDATION_METRIC = "val_recall@20"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on.

    Attributes:
      prepared: the prepared folder (``tfrs-selreg prepare`` output).
      output: the run folder.
      model: backbone and embeddings.
      regularizer: gate mode and teacher-loss settings.
      seed: seeds weights, shuffling and negative sampling.
      epochs: maximum number of epochs.
      batch_size: global batch size (split over replicas).
      learning_rate: Adam's learning rate.
      steps_per_epoch: batches per epoch; ``None`` is one pass over the training examples.
      shuffle_buffer: examples in the shuffle buffer when the training split is streamed (in memory, every pass
        is a uniform permutation).
      in_memory_max_mb: parse the training split once into memory (ids as indices,
        :mod:`tfrs_selreg.data.in_memory`) when its columns take at most this many MiB; larger splits, 0,
        and multi-replica strategies stream the TFRecords every epoch. The batches are the same either way.
      early_stopping_patience: epochs without a better ``val_recall@20`` before stopping.
      validation_max_users: rank at most this many (seeded) validation users per epoch; ``None``: all.
      strategy: ``default`` (one device), ``mirrored`` (the local GPUs) or ``multi_worker``
        (``TF_CONFIG``).
    """

    prepared: str = ""
    output: str = ""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    regularizer: RegularizerConfig = dataclasses.field(default_factory=RegularizerConfig)
    seed: int = 0
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    steps_per_epoch: int | None = None
    shuffle_buffer: int = 10_000
    in_memory_max_mb: int = 4096
    early_stopping_patience: int = 3
    validation_max_users: int | None = None
    strategy: str = "default"

    def __post_init__(self) -> None:
        # The resolved budget goes into config.json, so a run records the number it trained with.
        object.__setattr__(self, "regularizer", self.regularizer.for_backbone(self.model.backbone))
        if self.strategy not in STRATEGIES:
            raise ValueError(f"TrainConfig.strategy: {self.strategy!r} is not one of {STRATEGIES}.")
        for name in ("epochs", "batch_size", "shuffle_buffer"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if self.in_memory_max_mb < 0:
            raise ValueError(f"TrainConfig.in_memory_max_mb must be >= 0, got {self.in_memory_max_mb}.")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate}.")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve(path: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the file at ``path``, then ``overrides`` (dotted keys)."""
    values = load_file(path) if path else {}
    values = merge(values, overrides or {})
    return from_dict(TrainConfig, values, where=os.path.basename(path) if path else "config")


def save(config: TrainConfig, path: str) -> None:
    import tensorflow as tf
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(config.to_json(), indent=2, sort_keys=True) + "\n")


# Fields that runs trained before their removal recorded, with the only value the code has kept.
_REMOVED_REGULARIZER_FIELDS = {"gate_hidden_units": 0, "initial_gate": 0.5}


def load(path: str) -> TrainConfig:
    """The :class:`TrainConfig` saved in a run's ``config.json``.

    A run trained before ``regularizer.gate_hidden_units`` and ``regularizer.initial_gate`` were removed
    loads when it used their defaults (the gate the code still builds); another value is an error.
    """
    import tensorflow as tf
    with tf.io.gfile.GFile(path) as f:
        values = json.load(f)
    regularizer = values.get("regularizer") if isinstance(values, dict) else None
    for key, kept in _REMOVED_REGULARIZER_FIELDS.items():
        if isinstance(regularizer, dict) and key in regularizer:
            if regularizer.pop(key) != kept:
                raise ConfigError(f"{path}: regularizer.{key} is no longer an option (only {kept} is built); "
                                 "train the run again with this version.")
    return from_dict(TrainConfig, values, where=path)
