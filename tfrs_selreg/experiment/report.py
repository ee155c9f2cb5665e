"""``report.md`` of a ``tfrs-selreg run``: metrics by segment, plots, teacher and gate diagnostics, a
sample top-10 and the commands.

Everything in the report is read back from the files the stages wrote (each run's ``metrics.json``,
``history.json`` and ``run.json``, the labels' ``manifest.json``, the prepared folder's ``stats.json``
and side files, and the saved weights of one run for the sample top-10), so the report holds exactly
the numbers on disk. Figures (:mod:`tfrs_selreg.plots`) go to ``RUN_ROOT/plots/`` and are linked with
relative paths, so the folder can be moved or browsed as a whole.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Optional

from tfrs_selreg.data.prepare_stats import PrepareStats
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.experiment import results

SEGMENTS = ("overall", "cold_start", "long_tail")
REPORT_METRICS = ("auc", "recall@20", "ndcg@20")
PLOTS_DIR = "plots"
TOP_K = 10


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _cell(text: Any) -> str:
    """Text for a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _read_json(path: str, default: Any = None) -> Any:
    if default is not None and not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def metrics_table(rows: dict[str, dict]) -> list[str]:
    """Markdown table: one row per run, one column per segment x metric, with counts."""
    header = ["run"] + [f"{s} {m}" for s in SEGMENTS for m in REPORT_METRICS] + [
        f"{s} users/items" for s in SEGMENTS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, metrics in rows.items():
        cells = [name] + [_fmt(metrics[s].get(m)) for s in SEGMENTS for m in REPORT_METRICS]
        cells += [f"{metrics[s]['users']}/{metrics[s]['items']}" for s in SEGMENTS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _data_line(stats: PrepareStats) -> str:
    """One sentence of dataset counts from ``stats.json``."""
    parts = [f"{stats.users:,} users, {stats.items:,} items",
             "interactions " + ", ".join(f"{k} {v:,}" for k, v in stats.interactions.items()),
             f"{stats.cold_start_users:,} cold-start users", f"{stats.long_tail_items:,} long-tail items",
             f"{stats.labels.joined_teacher_rows:,} teacher and {stats.labels.joined_probe_rows:,} "
             "probe label rows joined"]
    return "Data: " + "; ".join(parts) + "."


def _image(root: str, path: Optional[str], alt: str) -> list[str]:
    return [f"![{alt}]({os.path.relpath(path, root).replace(os.sep, '/')})", ""] if path else []


def top_k_section(samples: list[dict], run_name: str) -> list[str]:
    """Markdown for :func:`tfrs_selreg.evaluation.top_k.sample_top_k`'s users."""
    lines = [f"Model of run `{run_name}`; the whole catalog is ranked for the user's id and last training "
             "items, and the user's training and validation items are excluded, as in evaluation.", ""]
    if not samples:
        return lines + ["No test user to show.", ""]
    for sample in samples:
        kind = "Cold-start user" if sample["kind"] == "cold_start" else "Warm user"
        lines += [f"### {kind} `{sample['user_id']}` ({sample['history_length']} training interactions)", ""]
        if sample["recent_history"]:
            lines.append(f"- last {len(sample['recent_history'])} training items (oldest first): "
                         + "; ".join(f"{h['title'] or h['item_id']}" for h in sample["recent_history"]))
        lines += ["- held-out test item(s): " + "; ".join(t["title"] or t["item_id"] for t in sample["test_items"]),
                  "", "| rank | title | item id | score (logit) | held-out test item? |", "|---|---|---|---|---|"]
        for row in sample["top"]:
            lines.append(f"| {row['rank']} | {_cell(row['title'])} | {_cell(row['item_id'])} | {row['score']:.3f} | "
                         f"{'**yes**' if row['held_out'] else 'no'} |")
        lines.append("")
    return lines


def write_report(config, commands: list[str], outputs: dict[str, Any]) -> str:
    """Writes ``RUN_ROOT/report.md`` and its figures under ``RUN_ROOT/plots/``; returns the report's path."""
    from tfrs_selreg import plots
    from tfrs_selreg.evaluation.top_k import sample_top_k

    root = config.root
    plots_dir = os.path.join(root, PLOTS_DIR)
    rows, metrics, histories, best_epochs, diagnostics = {}, {}, {}, {}, {}
    for (gate, seed), run_dir in outputs["runs"].items():
        run_metrics = _read_json(os.path.join(run_dir, "metrics.json"))
        rows[f"{config.backbone} {gate} seed {seed}"] = run_metrics
        metrics[(gate, seed)] = run_metrics
        diagnostics[f"{gate} seed {seed}"] = run_metrics.get("diagnostics") or {}
        histories[(gate, seed)] = _read_json(os.path.join(run_dir, "history.json"), [])
        best = _read_json(os.path.join(run_dir, "run.json"), {}).get("best_epoch")
        if best is not None:
            best_epochs[(gate, seed)] = best
    manifest = _read_json(os.path.join(outputs["labels"], "manifest.json"), {})
    stats = PreparedData(outputs["prepared"]).stats()

    lines = [f"# Run `{config.name}`: {config.dataset}, backbone `{config.backbone}`, teacher `{config.teacher}`",
             "", _data_line(stats), "",
             "## Test metrics (full ranking; training and validation items excluded)", ""]
    lines += metrics_table(rows) + [""]
    # The comparison over seeds is results.md's, written by the same code as for an experiment.
    compared = [results.load_run(run_dir, config.backbone, gate, seed, "test")
                for (gate, seed), run_dir in outputs["runs"].items()]
    baseline = "none" if "none" in config.gates else config.gates[0]
    table = results.to_markdown(results.aggregate(compared, dataset=config.dataset, baseline=baseline,
                                                  gates={g: g for g in config.gates},
                                                  teachers={g: config.teacher for g in config.gates}),
                                level=3)
    lines += [f"Mean ± sample standard deviation over seeds, and each gate against `{baseline}` (as in an "
              "experiment's results.md):", table]
    lines += _image(root, plots.segment_metrics(metrics, plots_dir), "Test metrics by segment and gate")

    lines += ["## Teacher and gate", ""]
    if manifest:
        counts = manifest.get("counts") or {}
        lines += [f"Teacher `{manifest.get('teacher', config.teacher)}` (model `{manifest.get('model', '-')}`): "
                  f"{counts.get('teacher_pairs', '-')} teacher pairs and {counts.get('probes', '-')} probes scored "
                  f"(labels' `manifest.json`).", ""]
    probe_key = next((key for key, m in metrics.items() if (m.get("diagnostics") or {}).get("probe_accuracy")), None)
    if probe_key is not None:
        probes = metrics[probe_key]["diagnostics"]["probe_accuracy"]
        source = f"metrics.json of {probe_key[0]} seed {probe_key[1]}"
        lines += [f"Teacher probe accuracy on the training split's probe pairs ({source}; chance is 0.5):", "",
                  "| segment | accuracy | probes |", "|---|---|---|"]
        lines += [f"| {s} | {_fmt((probes.get(s) or {}).get('accuracy'))} | {(probes.get(s) or {}).get('probes', 0)} |"
                  for s in SEGMENTS] + [""]
        lines += _image(root, plots.probe_accuracy(probes, plots_dir, source=source), "Teacher probe accuracy")
    gate_lines = []
    for name, diag in diagnostics.items():
        gate = diag.get("gate") or {}
        if gate:
            gate_lines.append(f"- `{name}`: mean pair weight " + ", ".join(
                f"{s} {_fmt(gate[s].get('mean_weight'))}" for s in SEGMENTS if s in gate))
    if gate_lines:
        lines += ["Mean weight the trained gate gives a teacher pair (training split, metrics.json):", ""]
        lines += gate_lines + [""]
        lines += _image(root, plots.gate_weight_by_bins(metrics, plots_dir),
                        "Gate weight by history length and item popularity")

    lines += ["## Training", ""]
    if best_epochs:
        lines += ["Kept epoch (best validation Recall@20, `run.json`): " + ", ".join(
            f"{gate} seed {seed} {best_epochs[(gate, seed)]}/{len(histories[(gate, seed)])}"
            for gate, seed in best_epochs) + ".", ""]
    if any(histories.values()):
        lines += _image(root, plots.training_curves({k: v for k, v in histories.items() if v}, plots_dir,
                                                    best_epochs=best_epochs), "Training curves")

    # The sample top-10 comes from the exported gate's first-seed run (the first run without an export gate).
    sample_key = (config.export_gate, config.seeds[0])
    if not config.export_gate or sample_key not in outputs["runs"]:
        sample_key = next(iter(outputs["runs"]))
    lines += [f"## Sample top-{TOP_K} (test split)", ""]
    lines += top_k_section(sample_top_k(outputs["runs"][sample_key], outputs["prepared"], k=TOP_K),
                           f"{sample_key[0]} seed {sample_key[1]}")

    if outputs.get("export_path"):
        lines += ["## Export", "", f"SavedModel for TF Serving: `{outputs['export_path']}` "
                  f"(gate `{config.export_gate}` run, seed {config.seeds[0]}; backbone only)."]
    lines += ["", "## Reproduce", "", "```bash"] + commands + ["```", ""]
    path = os.path.join(root, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path
