"""``results.md`` and ``results.csv`` of an experiment: the header that says what ran, the tables
(:mod:`tfrs_selreg.experiment.results`) and the plots (:mod:`tfrs_selreg.plots`)."""

from __future__ import annotations

import os
import shlex

from tfrs_selreg.experiment import results
from tfrs_selreg.experiment.stages import flags
from tfrs_selreg.experiment.workflow import Experiment


def _fmt_args(args: dict) -> str:
    return f"`{shlex.join(flags(args))}`" if args else "none"


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
