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

import yaml

# Flags the experiment sets itself for every train stage.
RESERVED_TRAIN_FLAGS = ("prepared", "output", "backbone", "gate", "seed")
SPLITS = ("val", "test")  # what `tfrs-selreg evaluate --split` ranks
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


class ConfigError(ValueError):
    """The experiment config cannot be used; the message names the file and the field."""


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
    gate: str
    seeds: tuple[int, ...] = (0,)
    train_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    teacher: Optional[str] = None
    backbones: Optional[tuple[str, ...]] = None
    fusion_of: Optional[str] = None


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


def merge_args(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``overrides``; where both values are lists they are concatenated."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(out.get(key), (list, tuple)) and isinstance(value, (list, tuple)):
            out[key] = [*out[key], *value]
        else:
            out[key] = value
    return out


# --- loading ------------------------------------------------------------------------------------


def _known(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _check_fields(values: Any, cls, where: str, required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, got {type(values).__name__}")
    unknown = sorted(set(values) - set(_known(cls)))
    if unknown:
        raise ConfigError(f"{where}: unknown field{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(map(repr, unknown))}; known: {', '.join(_known(cls))}")
    missing = [k for k in required if values.get(k) in (None, "", [])]
    if missing:
        raise ConfigError(f"{where}: missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    return values


def _str(value: Any, where: str, optional: bool = False) -> Optional[str]:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _name(value: Any, where: str) -> str:
    value = _str(value, where)
    if not _NAME.match(value):
        raise ConfigError(f"{where}: {value!r} must be letters, digits and _.+=- (it names folders)")
    return value


def _args(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of flag names to values, got {value!r}")
    for key, item in value.items():
        if not isinstance(key, str) or not key or key.startswith("-"):
            raise ConfigError(f"{where}: flag names are written without dashes, e.g. batch-size; got {key!r}")
        items = item if isinstance(item, list) else [item]
        if any(isinstance(x, (dict, list)) for x in items):
            raise ConfigError(f"{where}.{key}: expected a value or a list of values, got {item!r}")
    return dict(value)


def _args_by_name(value: Any, where: str, what: str) -> dict[str, dict[str, Any]]:
    """``{name: *_args}`` (``what`` names both, e.g. "backbone names to train_args")."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of {what}, got {value!r}")
    return {_str(k, where): _args(v, f"{where}.{k}") for k, v in value.items()}


def _backbone_seeds(value: Any, where: str) -> dict[str, tuple[int, ...]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of backbone names to seed lists, got {value!r}")
    return {_str(k, where): _seeds(v, f"{where}.{k}") for k, v in value.items()}


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    return tuple(_str(v, f"{where}[{i}]") for i, v in enumerate(value))


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of integer seeds, got {value!r}")
    for v in value:
        if not isinstance(v, int) or isinstance(v, bool):
            raise ConfigError(f"{where}: seeds must be integers, got {v!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: repeated seed in {list(value)}")
    return tuple(value)


def _method(values: Any, where: str) -> MethodConfig:
    from tfrs_selreg.regularizer import GATE_MODES

    if isinstance(values, dict) and isinstance(values.get("name"), str):
        where = f"{where} ({values['name']!r})"
    fusion_of = values.get("fusion_of") if isinstance(values, dict) else None
    _check_fields(values, MethodConfig, where, ("name",) if fusion_of else ("name", "gate"))
    name = _name(values["name"], f"{where}.name")
    gate = _str(values.get("gate", "none"), f"{where}.gate")
    if gate not in GATE_MODES:
        raise ConfigError(f"{where}.gate: {gate!r} is not a gate mode {GATE_MODES}")
    train_args = _args(values.get("train_args"), f"{where}.train_args")
    backbones = values.get("backbones")
    return MethodConfig(
        name=name, gate=gate, seeds=_seeds(values.get("seeds", [0]), f"{where}.seeds"), train_args=train_args,
        teacher=_str(values.get("teacher"), f"{where}.teacher", optional=True),
        backbones=None if backbones is None else _strings(backbones, f"{where}.backbones"),
        fusion_of=_str(fusion_of, f"{where}.fusion_of", optional=True))


def from_dict(values: Any, where: str = "experiment config") -> ExperimentConfig:
    """The :class:`ExperimentConfig` of a mapping; :class:`ConfigError` names ``where`` and the bad field."""
    from tfrs_selreg.models.config import BACKBONES
    from tfrs_selreg.teachers import base as teachers_base
    from tfrs_selreg.teachers import registry

    _check_fields(values, ExperimentConfig, where, ("name", "dataset", "methods"))
    if not isinstance(values["methods"], list):
        raise ConfigError(f"{where}: methods: expected a list of methods, got {values['methods']!r}")
    methods = tuple(_method(m, f"{where}: methods[{i}]") for i, m in enumerate(values["methods"]))
    backbones = _strings(values.get("backbones", ["two_tower"]), f"{where}: backbones")
    config = ExperimentConfig(
        name=_name(values["name"], f"{where}: name"),
        dataset=_str(values["dataset"], f"{where}: dataset"),
        methods=methods,
        data_dir=_str(values.get("data_dir"), f"{where}: data_dir", optional=True),
        prepare_args=_args(values.get("prepare_args"), f"{where}: prepare_args"),
        teacher=_str(values.get("teacher", "embedding"), f"{where}: teacher"),
        score_args=_args(values.get("score_args"), f"{where}: score_args"),
        teacher_score_args=_args_by_name(values.get("teacher_score_args"), f"{where}: teacher_score_args",
                                         "teacher names to score_args"),
        backbones=backbones,
        train_args=_args(values.get("train_args"), f"{where}: train_args"),
        backbone_train_args=_args_by_name(values.get("backbone_train_args"), f"{where}: backbone_train_args",
                                          "backbone names to train_args"),
        backbone_seeds=_backbone_seeds(values.get("backbone_seeds"), f"{where}: backbone_seeds"),
        baseline=_str(values.get("baseline", "none"), f"{where}: baseline"),
        split=_str(values.get("split", "test"), f"{where}: split"),
        runs_dir=_str(values.get("runs_dir", "runs"), f"{where}: runs_dir"),
        beam_args=_strings(values.get("beam_args", ["--runner", "DirectRunner"]), f"{where}: beam_args"),
    )

    if config.split not in SPLITS:
        raise ConfigError(f"{where}: split {config.split!r} is not one of {SPLITS} (val to choose settings, "
                          "test for the published table)")
    for b in (*config.backbones, *config.backbone_train_args, *config.backbone_seeds):
        if b not in BACKBONES:
            raise ConfigError(f"{where}: backbone {b!r} is not one of {BACKBONES}")
    names = [m.name for m in methods]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{where}: methods: repeated method name(s) {repeated}")
    if config.baseline not in names:
        raise ConfigError(f"{where}: baseline {config.baseline!r} is not one of the methods {names}")
    for m in methods:
        if m.fusion_of is not None:
            earlier = methods[:methods.index(m)]
            of = next((o for o in earlier if o.name == m.fusion_of), None)
            if of is None or of.fusion_of is not None:
                raise ConfigError(f"{where}: method {m.name!r}: fusion_of {m.fusion_of!r} is not a trained method "
                                  f"listed before it ({[o.name for o in earlier]})")
            if m.train_args or m.teacher or not set(m.seeds) <= set(of.seeds):
                raise ConfigError(f"{where}: method {m.name!r} fuses the runs of {of.name!r}: it takes no "
                                  f"train_args or teacher, and only seeds of {of.name!r} {list(of.seeds)}")
    known_teachers = set(registry.names()) | set(teachers_base._REGISTRY)  # noqa: SLF001  (same project)
    for m in methods:
        teacher = config.teacher_of(m)
        if teacher not in known_teachers:
            raise ConfigError(f"{where}: teacher {teacher!r}{f' of method {m.name!r}' if m.teacher else ''} "
                              f"is not one of {sorted(known_teachers)}")
        if m.backbones is not None:
            extra = [b for b in m.backbones if b not in config.backbones]
            if extra:
                raise ConfigError(f"{where}: method {m.name!r}: backbones {extra} are not among the "
                                  f"experiment's backbones {list(config.backbones)}")
    unused = [t for t in config.teacher_score_args if t not in config.teachers()]
    if unused:
        raise ConfigError(f"{where}: teacher_score_args: {unused} are not teachers of any method "
                          f"{config.teachers()}")
    for label, args in [("train_args", config.train_args)] + [
            (f"backbone_train_args.{k}", v) for k, v in config.backbone_train_args.items()] + [
            (f"method {m.name!r} train_args", m.train_args) for m in methods]:
        reserved = [k for k in args if k in RESERVED_TRAIN_FLAGS]
        if reserved:
            raise ConfigError(f"{where}: {label}: {reserved} are set by the experiment for every run "
                              "(use backbones, methods and seeds instead)")
    return config


def load(path: str, runs_dir: Optional[str] = None) -> ExperimentConfig:
    """The :class:`ExperimentConfig` in the YAML/JSON file ``path`` (``runs_dir`` overrides the file's)."""
    with open(path, encoding="utf-8") as f:
        try:
            values = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if isinstance(values, dict) and runs_dir:
        values = {**values, "runs_dir": runs_dir}
    return from_dict(values, where=path)
