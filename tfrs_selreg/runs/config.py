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
import types
import typing
from typing import Any

from tfrs_selreg.models.config import ModelConfig
from tfrs_selreg.regularizer import RegularizerConfig

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


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """``value`` (from JSON/YAML/CLI) as the field type ``annotation``; errors name ``where``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return None if value is None else _convert(value, args[0], where)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping of {annotation.__name__} fields, got {value!r}.")
        return from_dict(annotation, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}.")
        return tuple(_convert(v, typing.get_args(annotation)[0], where) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"{where}: expected true or false, got {value!r}.")
    if annotation in (int, float, str):
        if isinstance(value, bool) or (annotation is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{where}: expected {annotation.__name__}, got {value!r}.")
        try:
            return annotation(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected {annotation.__name__}, got {value!r}.") from None
    return value


def from_dict(cls: type, values: dict[str, Any], where: str = "config") -> Any:
    """A dataclass ``cls`` from a nested dict; unknown keys are errors that name the key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known keys of {cls.__name__}: {sorted(fields)}.")
    kwargs = {name: _convert(v, hints[name], f"{where}.{name}") for name, v in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def load_file(path: str) -> dict[str, Any]:
    """The mapping in a ``.yaml``/``.yml`` or ``.json`` file."""
    import yaml

    with open(path, encoding="utf-8") as f:
        try:
            if path.endswith((".yaml", ".yml")):
                values = yaml.safe_load(f) or {}
            elif path.endswith(".json"):
                values = json.load(f)
            else:
                raise ValueError(f"{path}: config files must end in .yaml, .yml or .json.")
        except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                             f"{' '.join(str(e).split())}") from None
    if not isinstance(values, dict):
        raise TypeError(f"{path}: the top level must be a mapping of TrainConfig fields.")
    return values


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; dotted keys (``model.dcn.num_negatives``) reach into sections."""
    out = json.loads(json.dumps(base))
    for key, value in overrides.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise TypeError(f"override {key!r}: {part!r} is not a section.")
        node[leaf] = value
    return out


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as dotted-key overrides for :func:`resolve` (values parsed as YAML)."""
    import yaml

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. model.dcn.num_negatives=8.")
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {item!r}: the value is not valid YAML ({' '.join(str(e).split())}); "
                             "quote strings that hold ':' or '#'.") from None
    return overrides


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
                raise ValueError(f"{path}: regularizer.{key} is no longer an option (only {kept} is built); "
                                 "train the run again with this version.")
    return from_dict(TrainConfig, values, where=path)
