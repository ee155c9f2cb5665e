"""``tfrs-selreg run``: the whole flow on one dataset, each stage as the command a user would type.

    prepare -> score (teacher) -> prepare --labels (join) -> train (one run per gate mode and seed)
    -> evaluate -> export (one gate's model) -> report.md

Every stage is called through its own ``main``-level entry with the exact argument list that is also
written to ``report.md`` as a shell command, so the report's commands reproduce the run. A stage
whose output is complete and was made by the same command from the same inputs is skipped (its
``stage-COMMAND.json`` record, see :mod:`tfrs_selreg.cli.stages`), so re-running a killed ``run``
resumes and a changed config redoes only what it changes; ``--force`` redoes everything. Outputs go
to ``RUNS_DIR/RUN_ID/`` and the export to ``saved_models/MODEL_NAME/VERSION/``.

The config file (YAML or JSON) holds :class:`RunConfig` fields; see ``tfrs_selreg/configs/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from typing import Any, Optional

import yaml

import tfrs_selreg  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfrs_selreg.cli import stages
from tfrs_selreg.cli.stages import Stage, StageRunner
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
    values: dict[str, Any] = {}
    if path:
        with open(path, encoding="utf-8") as f:
            try:
                values = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ValueError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of RunConfig fields")
    values.update({k: v for k, v in overrides.items() if v is not None})
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"{path or 'run config'}: unknown field(s) {unknown}; known: {sorted(fields)}")
    for key in ("gates", "seeds", "beam_args"):
        if key in values:
            values[key] = tuple(values[key])
    return RunConfig(**values)


def _flags(args: dict[str, Any]) -> list[str]:
    """``{"epochs": 3, "set": ["a=1", "b=2"]}`` -> ``--epochs 3 --set a=1 --set b=2`` (a list repeats the flag;
    ``True``/``False`` give ``--key``/``--no-key``; ``None`` leaves the flag out)."""
    out: list[str] = []
    for key, value in args.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is None:
                continue
            if isinstance(item, bool):
                out.append(f"--{key}" if item else f"--no-{key}")
            else:
                out += [f"--{key}", str(item)]
    return out


class Workflow:
    """Runs the stages of one :class:`RunConfig`, recording each command for the report.

    Stages are cached by :class:`tfrs_selreg.cli.stages.StageRunner`: one is skipped only when its outputs
    exist and were made by the same command from the same upstream outputs.
    """

    def __init__(self, config: RunConfig, force: bool = False):
        self.config = config
        self.force = force
        self.runner = StageRunner(force=force)
        self.commands = self.runner.commands
        self.timings = self.runner.timings

    def _stage(self, stage: Stage) -> bool:
        """Runs one stage unless it is done for the same argv and inputs; returns whether it ran."""
        return self.runner.run(stage)

    def run(self) -> dict[str, Any]:
        from beam_pipelines import prepare, score
        from tfrs_selreg.evaluation import evaluate
        from tfrs_selreg.export import exporter

        c = self.config
        root = c.root
        os.makedirs(root, exist_ok=True)
        data_args = ["--dataset", c.dataset] + (["--data-dir", c.data_dir] if c.data_dir else [])
        base = os.path.join(root, "prepared-base")
        labels = os.path.join(root, "labels")
        joined = os.path.join(root, "prepared")
        prepare_base = Stage("prepare", "prepare", data_args + ["--output", base] + _flags(c.prepare_args)
                             + list(c.beam_args), os.path.join(base, "schema.json"), prepare.main,
                             adopt=stages.prepare_outputs_match)
        self._stage(prepare_base)
        scored = Stage("score", "score", ["--prepared", base, "--teacher", c.teacher, "--output", labels]
                       + _flags(c.score_args) + list(c.beam_args), os.path.join(labels, "manifest.json"),
                       score.main, after=[prepare_base], adopt=stages.score_outputs_match)
        self._stage(scored)
        join = Stage("join labels", "prepare", data_args + ["--output", joined, "--labels", labels]
                     + _flags(c.prepare_args) + list(c.beam_args), os.path.join(joined, "schema.json"),
                     prepare.main, after=[scored], adopt=stages.prepare_outputs_match)
        self._stage(join)
        runs, trained = {}, {}
        for gate in c.gates:
            for seed in c.seeds:
                run_dir = os.path.join(root, "train", f"{c.backbone}-{gate}-seed{seed}")
                runs[(gate, seed)] = run_dir
                trained[(gate, seed)] = fit = Stage(
                    f"train {gate} seed {seed}", "train",
                    ["--prepared", joined, "--backbone", c.backbone, "--gate", gate, "--seed", str(seed),
                     "--output", run_dir] + _flags(c.train_args),
                    os.path.join(run_dir, "run.json"), stages.train_main, after=[join],
                    adopt=stages.train_outputs_match)
                self._stage(fit)
                self._stage(Stage(f"evaluate {gate} seed {seed}", "evaluate", ["--run", run_dir, "--split", "test"],
                                  os.path.join(run_dir, "metrics.json"), evaluate.main, after=[fit],
                                  adopt=stages.evaluate_outputs_match))
        export_path = None
        if c.export_gate:
            model_name = c.model_name or c.name
            export_run = runs[(c.export_gate, c.seeds[0])]
            marker = os.path.join(export_run, "exported.json")
            argv = ["--run", export_run, "--model-name", model_name, "--base", c.saved_models]

            def write_marker() -> None:
                version = exporter.version_numbers(os.path.join(c.saved_models, model_name))[-1]
                with open(marker, "w", encoding="utf-8") as f:
                    json.dump({"path": os.path.join(c.saved_models, model_name, str(version))}, f)

            self._stage(Stage(f"export {c.export_gate}", "export", argv, marker, exporter.main,
                              after=[trained[(c.export_gate, c.seeds[0])]], adopt=stages.marker_matches,
                              on_done=write_marker))
            with open(marker, encoding="utf-8") as f:
                export_path = json.load(f)["path"]
        return {"runs": runs, "export_path": export_path, "prepared": joined, "labels": labels}


def _report(config: RunConfig, flow: Workflow, outputs: dict[str, Any]) -> str:
    from tfrs_selreg.report import write_report

    return write_report(config, flow.commands, outputs)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="tfrs-selreg run", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML/JSON file of RunConfig fields (default: ml-latest-small settings)")
    p.add_argument("--name", help="run id (folder under runs_dir)")
    p.add_argument("--runs-dir", dest="runs_dir")
    p.add_argument("--force", action="store_true", help="redo stages whose outputs exist")
    args = p.parse_args(argv)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    try:
        config = load_config(args.config, {"name": args.name, "runs_dir": args.runs_dir})
    except (OSError, ValueError, TypeError) as e:
        print(f"tfrs-selreg run: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    flow = Workflow(config, force=args.force)
    try:
        outputs = flow.run()
    except RuntimeError as e:
        print(f"tfrs-selreg run: {e}", file=sys.stderr)
        return 1
    report = _report(config, flow, outputs)
    print(f"[run] done in {time.perf_counter() - start:.0f} s; report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
