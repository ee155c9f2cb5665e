"""``tfrs-selreg run`` as a plan: one dataset, one backbone, its gate modes x seeds, then one export.

    prepare -> score (teacher) -> prepare --labels (join) -> train (one run per gate mode and seed)
    -> evaluate -> export (one gate's model)

A :class:`RunConfig` is an experiment with one backbone whose methods are its gate modes (named after
them), evaluated on ``test`` (:func:`to_experiment`), plus an export stage: the stages, their cache and the
folder layout are :class:`~tfrs_selreg.experiment.workflow.Experiment`'s. The config file (YAML or JSON)
holds :class:`RunConfig` fields; see ``tfrs_selreg/configs/``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from tfrs_selreg import typed_config
from tfrs_selreg.experiment.config import ExperimentConfig, MethodConfig
from tfrs_selreg.experiment.stages import CommandRunner, ConfigResolver
from tfrs_selreg.experiment.workflow import Experiment, ExportSpec
from tfrs_selreg.regularizer import GATE_MODES


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One end-to-end run.

    Attributes:
      name: run id; outputs go to ``runs_dir/name``.
      dataset, data_dir: the ``prepare`` reader and its folder (``None``: the bundled copy).
      prepare_args: extra ``tfrs-selreg prepare`` flags, e.g. ``{"cold-start-fraction": 0.2}``.
      teacher: ``tfrs-selreg score --teacher``.
      score_args: extra ``tfrs-selreg score`` flags.
      backbone: ``two_tower`` or ``dcn``.
      gates: gate modes trained and compared.
      seeds: training seeds (one run per gate and seed).
      train_args: extra ``tfrs-selreg train`` flags, e.g. ``{"epochs": 10, "batch-size": 1024}``.
      export_gate: the gate mode whose first-seed model is exported.
      model_name: TF Serving model name (default: ``name``).
      saved_models: export base folder.
      beam_args: Beam flags for both Beam jobs (the runner is always explicit).
    """

    name: str = "ml-latest-small"
    dataset: str = "ml-latest-small"
    data_dir: Optional[str] = None
    prepare_args: dict[str, Any] = dataclasses.field(default_factory=lambda: {"cold-start-fraction": 0.2})
    teacher: str = "embedding"
    score_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    backbone: str = "two_tower"
    gates: tuple[str, ...] = ("none", "global", "reliability")
    seeds: tuple[int, ...] = (0,)
    train_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    export_gate: str = "reliability"
    model_name: str = ""
    runs_dir: str = "runs"
    saved_models: str = "saved_models"
    beam_args: tuple[str, ...] = ("--runner", "DirectRunner")

    def __post_init__(self) -> None:
        unknown = [g for g in self.gates if g not in GATE_MODES]
        if unknown:
            raise ValueError(f"RunConfig.gates: {unknown} are not gate modes {GATE_MODES}")
        if self.export_gate and self.export_gate not in self.gates:
            raise ValueError(f"RunConfig.export_gate {self.export_gate!r} is not one of gates {self.gates}")
        if not self.seeds:
            raise ValueError("RunConfig.seeds must name at least one seed")

    @property
    def root(self) -> str:
        return os.path.join(self.runs_dir, self.name)


def load_config(path: Optional[str], overrides: dict[str, Any]) -> RunConfig:
    """Defaults, then the file at ``path`` (YAML/JSON), then the ``overrides`` that are not ``None``."""
    values = typed_config.load_file(path) if path else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return typed_config.from_dict(RunConfig, values, where=path or "run config")


def to_experiment(config: RunConfig) -> ExperimentConfig:
    """The experiment whose stages are the run's: one method per gate mode, named after it."""
    return ExperimentConfig(
        name=config.name, dataset=config.dataset, data_dir=config.data_dir, prepare_args=dict(config.prepare_args),
        teacher=config.teacher, score_args=dict(config.score_args), backbones=(config.backbone,),
        train_args=dict(config.train_args), baseline="none" if "none" in config.gates else config.gates[0],
        split="test", runs_dir=config.runs_dir, beam_args=tuple(config.beam_args),
        methods=tuple(MethodConfig(name=gate, gate=gate, seeds=tuple(config.seeds)) for gate in config.gates))


def plan(config: RunConfig, command: CommandRunner, force: bool = False,
         resolve: ConfigResolver | None = None) -> Experiment:
    """The run's stages (see the module docstring), ready to ``run()``."""
    export = (ExportSpec(config.export_gate, config.model_name or config.name, config.saved_models)
              if config.export_gate else None)
    return Experiment(to_experiment(config), command, force=force, export=export, resolve=resolve)


def outputs(experiment: Experiment) -> dict[str, Any]:
    """What the report reads: ``runs`` ``{(gate, seed): run folder}``, ``export_path``, ``prepared``, ``labels``."""
    c = experiment.config
    return {"runs": {(r.method.gate, r.seed): r.run_dir for r in experiment.runs},
            "export_path": experiment.export_path(), "prepared": experiment.prepared_dir(c.teacher),
            "labels": experiment.labels_dir(c.teacher)}
