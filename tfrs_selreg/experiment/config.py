"""The typed config of ``tfrs-selreg experiment``: backbones x methods x seeds on one dataset.

A YAML (or JSON) file of :class:`ExperimentConfig` fields, e.g.::

    name: ml-1m                      # outputs under RUNS_DIR/ml-1m/
    dataset: ml-1m
    data_dir: ../shared/data/ml-1m
    prepare_args: {cold-start-fraction: 0.2}
    teacher: embedding               # default teacher of every method
    backbones: [two_tower, dcn]
    train_args: {epochs: 2, batch-size: 2048}
    backbone_train_args:             # per-backbone overrides of train_args
      dcn: {set: ["model.dcn.num_negatives=8"]}
    backbone_seeds: {dcn: [0]}       # a costly backbone runs only these of each method's seeds
    baseline: none                   # differences and tests are against this method, same backbone
    methods:
      - {name: none, gate: none, seeds: [0, 1, 2]}
      - {name: reliability, gate: reliability, seeds: [0, 1, 2]}
      - {name: random-teacher, gate: reliability, seeds: [0], teacher: random}   # own score + join
      - {name: paper-dcn, gate: paper, seeds: [0], backbones: [dcn], train_args: {teacher-lambda: 0.5}}

``*_args`` mappings become command-line flags of the stage: ``{epochs: 2}`` is ``--epochs 2``, a list
repeats the flag (``{set: [a, b]}`` is ``--set a --set b``), ``true``/``false`` is ``--key``/``--no-key``.
A run's train flags are ``train_args``, then ``backbone_train_args[backbone]``, then the method's
``train_args``: a later value replaces an earlier one, except that two lists are concatenated (so
``--set`` overrides add up, the later one winning for the same key).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

from tfrs_selreg import typed_config
from tfrs_selreg.typed_config import ConfigError

__all__ = ["ConfigError", "ExperimentConfig", "MethodConfig", "from_dict", "load", "merge_args"]
# Flags the experiment sets itself for every train stage.
RESERVED_TRAIN_FLAGS = ("prepared", "output", "backbone", "gate", "seed")
SPLITS = ("val", "test")  # what `tfrs-selreg evaluate --split` ranks
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


def _check_name(value: str, field: str) -> None:
    if not _NAME.match(value):
        raise ConfigError(f"{field}: {value!r} must be letters, digits and _.+=- (it names folders)")


def _check_args(args: dict[str, Any], field: str) -> None:
    """A ``*_args`` mapping: flag names without dashes, each value a scalar or a list of scalars."""
    for key, item in args.items():
        if not isinstance(key, str) or not key or key.startswith("-"):
            raise ConfigError(f"{field}: flag names are written without dashes, e.g. batch-size; got {key!r}")
        if any(isinstance(x, (dict, list)) for x in (item if isinstance(item, list) else [item])):
            raise ConfigError(f"{field}.{key}: expected a value or a list of values, got {item!r}")


def _check_seeds(seeds: tuple[int, ...], field: str) -> None:
    if not seeds:
        raise ConfigError(f"{field}: expected a non-empty list of integer seeds")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{field}: repeated seed in {list(seeds)}")


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """One compared method: a gate mode, its seeds and optional overrides.

    Attributes:
      name: the method's name in tables and run folders (``BACKBONE-NAME-seedSEED``).
      gate: ``tfrs-selreg train --gate``.
      seeds: training seeds; one run per backbone and seed.
      train_args: overrides of the experiment's train flags for this method.
      teacher: a teacher other than the experiment's (``None``: the experiment's); its labels get their own
        ``score`` and join stages and prepared folder.
      backbones: the backbones this method runs on (``None``: all of the experiment's).
      fusion_of: a reference, not a trained method: the runs of that method (same backbone and seed) fused
        with the embedding teacher's scores (``tfrs-selreg evaluate --reference fusion``); no training.
    """

    name: str
    gate: Optional[str] = None
    seeds: tuple[int, ...] = (0,)
    train_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    teacher: Optional[str] = None
    backbones: Optional[tuple[str, ...]] = None
    fusion_of: Optional[str] = None

    def __post_init__(self) -> None:
        from tfrs_selreg.regularizer import GATE_MODES

        _check_name(self.name, "name")
        if self.gate is None:
            if self.fusion_of is None:
                raise ConfigError(f"method {self.name!r}: missing field 'gate' (a trained method needs one)")
            object.__setattr__(self, "gate", "none")  # a fusion reference trains nothing
        if self.gate not in GATE_MODES:
            raise ConfigError(f"method {self.name!r}: gate {self.gate!r} is not a gate mode {GATE_MODES}")
        _check_seeds(self.seeds, f"method {self.name!r}: seeds")
        _check_args(self.train_args, f"method {self.name!r}: train_args")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Backbones x methods x seeds on one dataset.

    Attributes:
      name: experiment id; outputs go to ``runs_dir/name``.
      dataset, data_dir: the ``prepare`` reader and its folder (``None``: the bundled copy).
      prepare_args: extra ``tfrs-selreg prepare`` flags.
      teacher: the default ``tfrs-selreg score --teacher``.
      score_args: extra ``tfrs-selreg score`` flags (every teacher).
      teacher_score_args: per-teacher overrides of ``score_args`` (e.g. a slow LLM teacher scores a
        ``max-users`` sample and no long-tail augmentation).
      backbones: ``two_tower`` and/or ``dcn``.
      train_args: extra ``tfrs-selreg train`` flags common to every run.
      backbone_train_args: per-backbone overrides of ``train_args``.
      backbone_seeds: per-backbone subset of seeds: a backbone listed here runs only the seeds of each
        method that are also in its list (a costly backbone with fewer seeds, without renaming methods).
      baseline: the method every other one is compared with (same backbone).
      split: the split every run is evaluated on: ``test`` for published tables, ``val`` to choose
        settings (a sweep) without looking at the test split.
      methods: the compared methods.
      runs_dir: the folder of experiments.
      beam_args: Beam flags for the Beam jobs (prepare, score).
    """

    name: str
    dataset: str
    methods: tuple[MethodConfig, ...]
    data_dir: Optional[str] = None
    prepare_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    teacher: str = "embedding"
    score_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    teacher_score_args: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    backbones: tuple[str, ...] = ("two_tower",)
    train_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    backbone_train_args: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    backbone_seeds: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    baseline: str = "none"
    split: str = "test"
    runs_dir: str = "runs"
    beam_args: tuple[str, ...] = ("--runner", "DirectRunner")

    def __post_init__(self) -> None:
        _check_name(self.name, "name")
        if not self.methods:
            raise ConfigError("methods: expected a non-empty list of methods")
        _check_args(self.prepare_args, "prepare_args")
        _check_args(self.score_args, "score_args")
        _check_args(self.train_args, "train_args")
        for field in ("teacher_score_args", "backbone_train_args"):
            for key, args in getattr(self, field).items():
                _check_args(args, f"{field}.{key}")
        for key, seeds in self.backbone_seeds.items():
            _check_seeds(seeds, f"backbone_seeds.{key}")
        _check_methods(self)

    @property
    def root(self) -> str:
        import os

        return os.path.join(self.runs_dir, self.name)

    def method(self, name: str) -> MethodConfig:
        return next(m for m in self.methods if m.name == name)

    def teacher_of(self, method: MethodConfig) -> str:
        return method.teacher or self.teacher

    def backbones_of(self, method: MethodConfig) -> tuple[str, ...]:
        return method.backbones if method.backbones is not None else self.backbones

    def teachers(self) -> list[str]:
        """The default teacher, then the other teachers in the order methods name them."""
        out = [self.teacher]
        for m in self.methods:
            if self.teacher_of(m) not in out:
                out.append(self.teacher_of(m))
        return out

    def seeds_of(self, backbone: str, method: MethodConfig) -> tuple[int, ...]:
        """The method's seeds, limited to ``backbone_seeds[backbone]`` where that is set."""
        allowed = self.backbone_seeds.get(backbone)
        return method.seeds if allowed is None else tuple(s for s in method.seeds if s in allowed)

    def score_args_for(self, teacher: str) -> dict[str, Any]:
        """``score_args``, then the teacher's overrides (lists concatenate)."""
        return merge_args(self.score_args, self.teacher_score_args.get(teacher, {}))

    def train_args_for(self, backbone: str, method: MethodConfig) -> dict[str, Any]:
        """``train_args``, then the backbone's, then the method's overrides (lists concatenate)."""
        return merge_args(merge_args(self.train_args, self.backbone_train_args.get(backbone, {})),
                          method.train_args)


def _check_methods(config: ExperimentConfig) -> None:
    """The rules between fields: known backbones and teachers, one baseline, fusions of earlier methods."""
    from tfrs_selreg.models.config import BACKBONES
    from tfrs_selreg.teachers import base as teachers_base
    from tfrs_selreg.teachers import registry

    methods = config.methods
    if config.split not in SPLITS:
        raise ConfigError(f"split {config.split!r} is not one of {SPLITS} (val to choose settings, "
                          "test for the published table)")
    for b in (*config.backbones, *config.backbone_train_args, *config.backbone_seeds):
        if b not in BACKBONES:
            raise ConfigError(f"backbone {b!r} is not one of {BACKBONES}")
    names = [m.name for m in methods]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"methods: repeated method name(s) {repeated}")
    if config.baseline not in names:
        raise ConfigError(f"baseline {config.baseline!r} is not one of the methods {names}")
    for m in methods:
        if m.fusion_of is not None:
            earlier = methods[:methods.index(m)]
            of = next((o for o in earlier if o.name == m.fusion_of), None)
            if of is None or of.fusion_of is not None:
                raise ConfigError(f"method {m.name!r}: fusion_of {m.fusion_of!r} is not a trained method "
                                  f"listed before it ({[o.name for o in earlier]})")
            if m.train_args or m.teacher or not set(m.seeds) <= set(of.seeds):
                raise ConfigError(f"method {m.name!r} fuses the runs of {of.name!r}: it takes no "
                                  f"train_args or teacher, and only seeds of {of.name!r} {list(of.seeds)}")
    known_teachers = set(registry.names()) | set(teachers_base._REGISTRY)  # noqa: SLF001  (same project)
    for m in methods:
        teacher = config.teacher_of(m)
        if teacher not in known_teachers:
            raise ConfigError(f"teacher {teacher!r}{f' of method {m.name!r}' if m.teacher else ''} "
                              f"is not one of {sorted(known_teachers)}")
        if m.backbones is not None:
            extra = [b for b in m.backbones if b not in config.backbones]
            if extra:
                raise ConfigError(f"method {m.name!r}: backbones {extra} are not among the "
                                  f"experiment's backbones {list(config.backbones)}")
    unused = [t for t in config.teacher_score_args if t not in config.teachers()]
    if unused:
        raise ConfigError(f"teacher_score_args: {unused} are not teachers of any method {config.teachers()}")
    for label, args in [("train_args", config.train_args)] + [
            (f"backbone_train_args.{k}", v) for k, v in config.backbone_train_args.items()] + [
            (f"method {m.name!r} train_args", m.train_args) for m in methods]:
        reserved = [k for k in args if k in RESERVED_TRAIN_FLAGS]
        if reserved:
            raise ConfigError(f"{label}: {reserved} are set by the experiment for every run "
                              "(use backbones, methods and seeds instead)")


def merge_args(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``overrides``; where both values are lists they are concatenated."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(out.get(key), (list, tuple)) and isinstance(value, (list, tuple)):
            out[key] = [*out[key], *value]
        else:
            out[key] = value
    return out


def from_dict(values: Any, where: str = "experiment config") -> ExperimentConfig:
    """The :class:`ExperimentConfig` of a mapping; :class:`ConfigError` names ``where`` and the bad field."""
    return typed_config.from_dict(ExperimentConfig, values, where)


def load(path: str, runs_dir: Optional[str] = None) -> ExperimentConfig:
    """The :class:`ExperimentConfig` in the YAML/JSON file ``path`` (``runs_dir`` overrides the file's)."""
    values = typed_config.load_file(path)
    if runs_dir:
        values = {**values, "runs_dir": runs_dir}
    return from_dict(values, where=path)
