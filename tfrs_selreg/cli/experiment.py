"""``tfrs-selreg experiment``: backbones x methods x seeds on one dataset, then paper-style tables.

    tfrs-selreg experiment --config FILE.yaml [--runs-dir DIR] [--only-aggregate] [--force]

Runs, as the commands a user would type (each printed as a ``[run]`` line), one shared ``prepare``,
a ``score`` and a join (``prepare --labels``) per teacher, and a ``train`` + ``evaluate`` per backbone x
method x seed under ``RUNS_DIR/NAME/train/BACKBONE-METHOD-seedSEED/``. Each stage records its command
next to its outputs and is skipped when it is done for the same command and inputs, so a re-run computes
only what changed (a method's new ``train_args`` redo that method's runs, a new ``prepare_args`` redo
everything). Then it writes ``RUNS_DIR/NAME/results.md`` (tables by backbone and segment: mean ± std
over seeds of AUC, Recall@20, NDCG@20 and the gate's mean pair weight; the difference to the baseline
method with a paired t-test over seeds and a per-user Wilcoxon test) and ``results.csv`` (every number,
one row per backbone, method, segment and metric), and prints the markdown.

The config format is in :mod:`tfrs_selreg.experiment.config`; examples in ``tfrs_selreg/configs/experiment-*.yaml``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from typing import Optional

import tfrs_selreg  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfrs_selreg.cli.run import _flags
from tfrs_selreg.experiment import config as config_lib
from tfrs_selreg.experiment import results
from tfrs_selreg.experiment.workflow import Experiment


def _fmt_args(args: dict) -> str:
    return f"`{shlex.join(_flags(args))}`" if args else "none"


def header(experiment: Experiment, command: str, missing: list[str]) -> list[str]:
    """The lines above the tables: what was run, with which settings, by which command."""
    c = experiment.config
    lines = [f"# Experiment `{c.name}`", "",
             f"- dataset: `{c.dataset}`" + (f" from `{c.data_dir}`" if c.data_dir else " (bundled copy)")
             + f"; prepare args {_fmt_args(c.prepare_args)}",
             f"- teacher: `{c.teacher}`; score args {_fmt_args(c.score_args_for(c.teacher))}",
             f"- backbones: {', '.join(f'`{b}`' for b in c.backbones)}",
             f"- evaluated on the `{c.split}` split" + (" (a settings sweep: the test split is not looked at)"
                                                        if c.split == "val" else ""),
             f"- train args: {_fmt_args(c.train_args)}"]
    lines += [f"  - `{b}`: {_fmt_args(args)}" for b, args in c.backbone_train_args.items()]
    lines += [f"  - score args of `{t}`: {_fmt_args(c.score_args_for(t))}" for t in c.teachers()[1:]
              if c.score_args_for(t)]
    lines.append("- methods:")
    for m in c.methods:
        extra = [f"teacher `{m.teacher}`"] if m.teacher and m.teacher != c.teacher else []
        extra += [f"train args {_fmt_args(m.train_args)}"] if m.train_args else []
        extra += [f"backbones {', '.join(m.backbones)}"] if m.backbones is not None else []
        lines.append(f"  - `{m.name}`: gate `{m.gate}`, seeds {', '.join(map(str, m.seeds))}"
                     + "".join(f", {e}" for e in extra) + (" (baseline)" if m.name == c.baseline else ""))
    lines += [f"- made by: `{command}`",
              f"- Δ = method − `{c.baseline}` (same backbone), rel. Δ = Δ / `{c.baseline}`; p (t-test, seeds): "
              "`scipy.stats.ttest_rel` over the seeds both have (- below 2); p (Wilcoxon, users): two-sided "
              "`scipy.stats.wilcoxon` over users matched by user_id within each common seed, pooled over seeds; "
              "± is the standard deviation over seeds (ddof=1); gate weight: mean teacher-pair weight of the gate"]
    if missing:
        lines.append(f"- not evaluated yet, left out: {', '.join(missing)}")
    return lines


def draw_plots(root: str, outputs: list[results.RunOutput], split: str = "test") -> str:
    """Per backbone: the split's metrics by segment (mean ± s.d. over seeds per method) and gate weight by
    history-length/popularity bins, as PNGs in ``ROOT/plots/``; returns the markdown that shows them."""
    from tfrs_selreg import plots

    lines = []
    for backbone in dict.fromkeys(o.backbone for o in outputs):
        metrics = {(o.method, o.seed): o.metrics for o in outputs if o.backbone == backbone}
        out_dir = os.path.join(root, "plots")
        drawn = [plots.segment_metrics(metrics, out_dir, name=f"{backbone}-{split}_metrics_by_segment",
                                      what="method", split=split),
                 plots.gate_weight_by_bins(metrics, out_dir, name=f"{backbone}-gate_weight_by_bins", what="method")]
        lines += [f"![{backbone}: {os.path.basename(p)[:-4]}](plots/{os.path.basename(p)})" for p in drawn if p]
    return "\n## Plots\n\n" + "\n\n".join(lines) + "\n" if lines else ""


def aggregate(experiment: Experiment, command: str) -> str:
    """Reads every evaluated run, writes ``results.md`` and ``results.csv``; returns the markdown."""
    c = experiment.config
    outputs, missing = [], []
    for r in experiment.runs:
        if os.path.exists(os.path.join(r.run_dir, results.metrics_file(c.split))):
            outputs.append(results.load_run(r.run_dir, r.backbone, r.method.name, r.seed, c.split))
        else:
            missing.append(os.path.basename(r.run_dir))
    rows = results.aggregate(outputs, dataset=c.dataset, baseline=c.baseline,
                             gates={m.name: m.gate for m in c.methods},
                             teachers={m.name: c.teacher_of(m) for m in c.methods})
    text = results.to_markdown(rows, header(experiment, command, missing)) + draw_plots(c.root, outputs, c.split)
    os.makedirs(c.root, exist_ok=True)
    with open(os.path.join(c.root, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    results.write_csv(rows, os.path.join(c.root, "results.csv"))
    return text


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="tfrs-selreg experiment", description=__doc__.split("\n\n")[0],
                                epilog="The config format: see tfrs_selreg/experiment/config.py and "
                                       "tfrs_selreg/configs/experiment-*.yaml.")
    p.add_argument("--config", required=True, help="YAML/JSON file of ExperimentConfig fields")
    p.add_argument("--runs-dir", dest="runs_dir", help="folder of experiments (default: the config's runs_dir)")
    p.add_argument("--only-aggregate", action="store_true",
                   help="run no stage: rebuild results.md/csv from the runs evaluated so far")
    p.add_argument("--force", action="store_true", help="redo every stage, whatever its record says")
    args = p.parse_args(argv)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    try:
        config = config_lib.load(args.config, runs_dir=args.runs_dir)
    except (OSError, ValueError) as e:
        print(f"tfrs-selreg experiment: {e}", file=sys.stderr)
        return 2
    # The tables do not depend on these flags: the recorded command is the one that reproduces them.
    command = shlex.join(["tfrs-selreg", "experiment", *(a for a in argv if a not in ("--only-aggregate", "--force"))])
    start = time.perf_counter()
    experiment = Experiment(config, force=args.force)
    if not args.only_aggregate:
        print(f"[run] experiment {config.name}: {len(experiment.runs)} runs, {len(experiment.stages)} stages "
              f"under {config.root}", flush=True)
        try:
            experiment.run()
        except RuntimeError as e:
            print(f"tfrs-selreg experiment: {e}", file=sys.stderr)
            return 1
    text = aggregate(experiment, command)
    print(text, end="")
    ran = experiment.runner.ran
    print(f"[run] done in {time.perf_counter() - start:.0f} s ({len(ran)} stage(s) ran, "
          f"{len(experiment.runner.skipped)} skipped); tables: {os.path.join(config.root, 'results.md')}, "
          f"{os.path.join(config.root, 'results.csv')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
