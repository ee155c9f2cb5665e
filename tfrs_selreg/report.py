"""``report.md`` of a ``tfrs-selreg run``: metrics by segment, teacher and gate diagnostics, commands.

Everything in the report is read back from the files the stages wrote (``metrics.json``,
``manifest.json``, ``stats.json``), so the report holds exactly the numbers on disk.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

SEGMENTS = ("overall", "cold_start", "long_tail")
REPORT_METRICS = ("auc", "recall@20", "ndcg@20")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


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


def write_report(config, commands: list[str], outputs: dict[str, Any]) -> str:
    """Writes ``RUN_ROOT/report.md``; returns its path."""
    root = config.root
    rows = {}
    diagnostics = {}
    for (gate, seed), run_dir in outputs["runs"].items():
        with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
        rows[f"{config.backbone} {gate} seed {seed}"] = metrics
        diagnostics[f"{gate} seed {seed}"] = metrics.get("diagnostics") or {}
    with open(os.path.join(outputs["labels"], "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    with open(os.path.join(outputs["prepared"], "stats.json"), encoding="utf-8") as f:
        stats = json.load(f)

    lines = [f"# Run `{config.name}`: {config.dataset}, backbone `{config.backbone}`, teacher `{config.teacher}`",
             "",
             f"Data: {stats['users']:,} users, {stats['items']:,} items; interactions "
             + ", ".join(f"{k} {v:,}" for k, v in stats["interactions"].items())
             + f"; {stats['cold_start_users']:,} cold-start users, {stats['long_tail_items']:,} long-tail items; "
             f"{stats['labels']['joined_teacher_rows']:,} teacher and {stats['labels']['joined_probe_rows']:,} "
             "probe label rows joined.",
             "",
             "## Test metrics (full ranking; training and validation items excluded)",
             ""]
    lines += metrics_table(rows)
    lines += ["", "## Teacher and gate", ""]
    acc = manifest.get("probe_accuracy", {})
    lines.append("Teacher probe accuracy (from `manifest.json`): " + json.dumps(acc))
    for name, diag in diagnostics.items():
        gate = diag.get("gate") or {}
        if gate:
            lines.append(f"- `{name}`: mean pair weight " + ", ".join(
                f"{s} {_fmt(gate[s].get('mean_weight'))}" for s in SEGMENTS if s in gate))
    if outputs.get("export_path"):
        lines += ["", "## Export", "", f"SavedModel for TF Serving: `{outputs['export_path']}` "
                  f"(gate `{config.export_gate}` run, seed {config.seeds[0]}; backbone only)."]
    lines += ["", "## Reproduce", "", "```bash"] + commands + ["```", ""]
    path = os.path.join(root, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path
