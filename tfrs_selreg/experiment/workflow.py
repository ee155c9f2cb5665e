"""The stages of an experiment and where they write (``tfrs-selreg run`` is one backbone's experiment
plus an export, :mod:`tfrs_selreg.experiment.run`)::

    RUNS_DIR/NAME/
      prepared-base/                      prepare (shared by every teacher)
      labels/, prepared/                  score + join of the default teacher
      labels-TEACHER/, prepared-TEACHER/  score + join of another teacher a method names
      train/BACKBONE-METHOD-seedSEED/     train + evaluate of each run (+ export of one run)
      results.md, results.csv             the tables (tfrs_selreg.experiment.results)

Every stage is cached by :class:`tfrs_selreg.experiment.stages.StageRunner` (``stage-COMMAND.json``
records), so a re-run computes only the stages whose command, or an upstream stage, changed. Stages run
their subcommand through the ``CommandRunner`` they are given (the CLI's dispatch), so planning imports
neither Beam nor TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

from tfrs_selreg.data.prepare_config import PREPARE_CONFIG_FILE
from tfrs_selreg.experiment import results
from tfrs_selreg.experiment.config import ExperimentConfig, MethodConfig
from tfrs_selreg.experiment.stages import CommandRunner, ConfigResolver, Stage, StageRunner, flags

EXPORT_MARKER = "exported.json"


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """Export the first-seed run of ``method`` (first backbone) as TF Serving model ``model_name`` under ``base``."""

    method: str
    model_name: str
    base: str


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One backbone x method x seed: its folder and its train and evaluate stages."""

    backbone: str
    method: MethodConfig
    seed: int
    teacher: str
    run_dir: str
    train: Stage | None  # None for a fusion reference (it ranks another method's run)
    evaluate: Stage


class Experiment:
    """Plans and runs the stages of an :class:`ExperimentConfig` (and an optional export).

    Args:
      config: the experiment.
      command: runs a ``tfrs-selreg`` subcommand: ``command(name, argv) -> exit code``.
      force: redo every stage.
      export: an export stage after the training runs (``tfrs-selreg run``).
      resolve: the configs that prepare and train stages are compared by (the CLI's; ``None``: argv).
    """

    def __init__(self, config: ExperimentConfig, command: CommandRunner, force: bool = False,
                 export: ExportSpec | None = None, resolve: ConfigResolver | None = None):
        self.config = config
        self.command = command
        self.runner = StageRunner(force=force, prefix="[run]", resolve=resolve)
        self.data_stages, self.runs = self._plan()
        self.export = export
        self.export_stage = self._export_stage(export) if export else None

    def _call(self, name: str, *extra: str) -> Callable[[list[str]], int]:
        return lambda argv: self.command(name, [*argv, *extra])

    def prepared_dir(self, teacher: str) -> str:
        c = self.config
        return os.path.join(c.root, "prepared" if teacher == c.teacher else f"prepared-{teacher}")

    def labels_dir(self, teacher: str) -> str:
        c = self.config
        return os.path.join(c.root, "labels" if teacher == c.teacher else f"labels-{teacher}")

    def _plan(self) -> tuple[list[Stage], list[PlannedRun]]:
        c = self.config
        data_args = ["--dataset", c.dataset] + (["--data-dir", c.data_dir] if c.data_dir else [])
        beam = list(c.beam_args)
        base = os.path.join(c.root, "prepared-base")
        prepare_base = Stage("prepare", "prepare", data_args + ["--output", base] + flags(c.prepare_args) + beam,
                             os.path.join(base, PREPARE_CONFIG_FILE), self._call("prepare"),
                             config_file=os.path.join(base, PREPARE_CONFIG_FILE))
        data_stages = [prepare_base]
        joins = {}
        for teacher in c.teachers():
            suffix = "" if teacher == c.teacher else f" ({teacher})"
            labels, joined = self.labels_dir(teacher), self.prepared_dir(teacher)
            scored = Stage(f"score{suffix}", "score",
                           ["--prepared", base, "--teacher", teacher, "--output", labels]
                           + flags(c.score_args_for(teacher)) + beam,
                           os.path.join(labels, "manifest.json"), self._call("score"), after=[prepare_base])
            joins[teacher] = Stage(f"join labels{suffix}", "prepare",
                                   data_args + ["--output", joined, "--labels", labels] + flags(c.prepare_args) + beam,
                                   os.path.join(joined, PREPARE_CONFIG_FILE), self._call("prepare"), after=[scored],
                                   config_file=os.path.join(joined, PREPARE_CONFIG_FILE))
            data_stages += [scored, joins[teacher]]
        runs = []
        for backbone in c.backbones:
            for method in c.methods:
                if backbone not in c.backbones_of(method):
                    continue
                teacher = c.teacher_of(method)
                for seed in c.seeds_of(backbone, method):
                    run_dir = os.path.join(c.root, "train", f"{backbone}-{method.name}-seed{seed}")
                    title = f"{backbone} {method.name} seed {seed}"
                    if method.fusion_of is not None:
                        runs.append(self._fusion_run(backbone, method, seed, teacher, run_dir, title, runs))
                        continue
                    fit = Stage(f"train {title}", "train",
                                ["--prepared", self.prepared_dir(teacher), "--backbone", backbone,
                                 "--gate", method.gate, "--seed", str(seed), "--output", run_dir]
                                + flags(c.train_args_for(backbone, method)),
                                # A redone stage replaces the run its folder holds (a killed run of the same
                                # argv is still resumed); --overwrite is not part of the recorded argv.
                                os.path.join(run_dir, "run.json"), self._call("train", "--overwrite"),
                                after=[joins[teacher]], config_file=os.path.join(run_dir, "config.json"))
                    evaluate = Stage(f"evaluate {title}", "evaluate", ["--run", run_dir, "--split", c.split],
                                     os.path.join(run_dir, results.metrics_file(c.split)), self._call("evaluate"),
                                     after=[fit], record=None if c.split == "test" else f"evaluate-{c.split}")
                    runs.append(PlannedRun(backbone, method, seed, teacher, run_dir, fit, evaluate))
        return data_stages, runs

    def _fusion_run(self, backbone: str, method: MethodConfig, seed: int, teacher: str, run_dir: str, title: str,
                    planned: list[PlannedRun]) -> PlannedRun:
        c = self.config
        of = next(r for r in planned if r.backbone == backbone and r.method.name == method.fusion_of and r.seed == seed)
        evaluate = Stage(f"evaluate {title}", "evaluate",
                         ["--reference", "fusion", "--run", of.run_dir, "--output", run_dir, "--split", c.split],
                         os.path.join(run_dir, results.metrics_file(c.split)), self._call("evaluate"),
                         after=[of.train], record=None if c.split == "test" else f"evaluate-{c.split}")
        return PlannedRun(backbone, method, seed, teacher, run_dir, None, evaluate)

    def _export_stage(self, export: ExportSpec) -> Stage:
        run = next(r for r in self.runs if r.method.name == export.method and r.backbone == self.config.backbones[0])
        marker = os.path.join(run.run_dir, EXPORT_MARKER)

        def write_marker() -> None:
            from tfrs_selreg.export import exporter

            version = exporter.version_numbers(os.path.join(export.base, export.model_name))[-1]
            with open(marker, "w", encoding="utf-8") as f:
                json.dump({"path": os.path.join(export.base, export.model_name, str(version))}, f)

        return Stage(f"export {export.method}", "export",
                     ["--run", run.run_dir, "--model-name", export.model_name, "--base", export.base], marker,
                     self._call("export"), after=[run.train], on_done=write_marker)

    def export_path(self) -> str | None:
        """The SavedModel version folder the export stage wrote (``None`` without an export)."""
        if self.export_stage is None:
            return None
        with open(self.export_stage.done_file, encoding="utf-8") as f:
            return json.load(f)["path"]

    @property
    def stages(self) -> list[Stage]:
        trained = [s for r in self.runs for s in (r.train, r.evaluate) if s is not None]
        return self.data_stages + trained + ([self.export_stage] if self.export_stage else [])

    def run(self) -> None:
        """Runs every stage that is not done for its command and inputs (see ``StageRunner``)."""
        os.makedirs(self.config.root, exist_ok=True)
        total = len(self.stages)
        for k, stage in enumerate(self.stages, 1):
            self.runner.prefix = f"[run] {k}/{total}"
            self.runner.run(stage)
        self.runner.prefix = "[run]"
