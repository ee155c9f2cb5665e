"""The stages of an experiment and where they write, laid out like ``tfrs-selreg run``'s::

    RUNS_DIR/NAME/
      prepared-base/                      prepare (shared by every teacher)
      labels/, prepared/                  score + join of the default teacher
      labels-TEACHER/, prepared-TEACHER/  score + join of another teacher a method names
      train/BACKBONE-METHOD-seedSEED/     train + evaluate of each run
      results.md, results.csv             the tables (tfrs_selreg.experiment.results)

Every stage is cached by :class:`tfrs_selreg.cli.stages.StageRunner` (``stage-COMMAND.json`` records), so
a re-run computes only the stages whose command, or an upstream stage, changed.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Callable

from tfrs_selreg.cli import stages
from tfrs_selreg.cli.run import _flags
from tfrs_selreg.cli.stages import Stage, StageRunner
from tfrs_selreg.experiment import results
from tfrs_selreg.experiment.config import ExperimentConfig, MethodConfig


def _main_of(command: str) -> Callable[[list[str]], int]:
    """The subcommand's ``main``, imported when the stage runs (so planning imports neither Beam nor TF)."""

    def call(argv: list[str]) -> int:
        from tfrs_selreg.cli import COMMANDS

        return importlib.import_module(COMMANDS[command][0]).main(argv)

    return call


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
    """Plans and runs the stages of an :class:`ExperimentConfig`."""

    def __init__(self, config: ExperimentConfig, force: bool = False):
        self.config = config
        self.runner = StageRunner(force=force, prefix="[run]")
        self.data_stages, self.runs = self._plan()

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
        prepare_base = Stage("prepare", "prepare", data_args + ["--output", base] + _flags(c.prepare_args) + beam,
                             os.path.join(base, "schema.json"), _main_of("prepare"),
                             adopt=stages.prepare_outputs_match)
        data_stages = [prepare_base]
        joins = {}
        for teacher in c.teachers():
            suffix = "" if teacher == c.teacher else f" ({teacher})"
            labels, joined = self.labels_dir(teacher), self.prepared_dir(teacher)
            scored = Stage(f"score{suffix}", "score",
                           ["--prepared", base, "--teacher", teacher, "--output", labels]
                           + _flags(c.score_args_for(teacher)) + beam,
                           os.path.join(labels, "manifest.json"), _main_of("score"), after=[prepare_base],
                           adopt=stages.score_outputs_match)
            joins[teacher] = Stage(f"join labels{suffix}", "prepare",
                                   data_args + ["--output", joined, "--labels", labels] + _flags(c.prepare_args) + beam,
                                   os.path.join(joined, "schema.json"), _main_of("prepare"), after=[scored],
                                   adopt=stages.prepare_outputs_match)
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
                                + _flags(c.train_args_for(backbone, method)),
                                os.path.join(run_dir, "run.json"), stages.train_main, after=[joins[teacher]],
                                adopt=stages.train_outputs_match)
                    evaluate = Stage(f"evaluate {title}", "evaluate", ["--run", run_dir, "--split", c.split],
                                     os.path.join(run_dir, results.metrics_file(c.split)), _main_of("evaluate"),
                                     after=[fit], record=None if c.split == "test" else f"evaluate-{c.split}",
                                     adopt=stages.evaluate_outputs_match)
                    runs.append(PlannedRun(backbone, method, seed, teacher, run_dir, fit, evaluate))
        return data_stages, runs

    def _fusion_run(self, backbone: str, method: MethodConfig, seed: int, teacher: str, run_dir: str, title: str,
                    planned: list[PlannedRun]) -> PlannedRun:
        c = self.config
        of = next(r for r in planned if r.backbone == backbone and r.method.name == method.fusion_of and r.seed == seed)
        evaluate = Stage(f"evaluate {title}", "evaluate",
                         ["--reference", "fusion", "--run", of.run_dir, "--output", run_dir, "--split", c.split],
                         os.path.join(run_dir, results.metrics_file(c.split)), _main_of("evaluate"),
                         after=[of.train], record=None if c.split == "test" else f"evaluate-{c.split}")
        return PlannedRun(backbone, method, seed, teacher, run_dir, None, evaluate)

    @property
    def stages(self) -> list[Stage]:
        return self.data_stages + [s for r in self.runs for s in (r.train, r.evaluate) if s is not None]

    def run(self) -> None:
        """Runs every stage that is not done for its command and inputs (see ``StageRunner``)."""
        os.makedirs(self.config.root, exist_ok=True)
        total = len(self.stages)
        for k, stage in enumerate(self.stages, 1):
            self.runner.prefix = f"[run] {k}/{total}"
            self.runner.run(stage)
        self.runner.prefix = "[run]"
