"""Aggregation of an experiment's runs into paper-style tables: pure functions over evaluate's files.

Input, per run (backbone x method x seed): ``metrics.json`` and ``per_user-test.npz`` as written by
``tfrs-selreg evaluate``. Output: one :class:`Row` per backbone x method x segment x metric with

- ``mean`` and ``std`` (``ddof=1``; NaN with one seed) over the method's seeds, the seeds and their values,
  and the segment's size (``users``);
- against the baseline method of the same backbone: ``diff = mean - baseline mean``,
  ``rel_diff = diff / baseline mean``; a paired t-test over the seeds both have
  (``scipy.stats.ttest_rel``; NaN with fewer than 2 paired seeds); and a per-user test: in each common
  seed the users of both runs are matched by ``user_id``, the pairs of all common seeds are pooled and
  compared with a two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``), ``user_pairs`` pairs.

Metrics: AUC, Recall@20, NDCG@20 and, for gated methods, the gate's mean pair weight
(``diagnostics.gate.SEGMENT.mean_weight``, no per-user values). :func:`to_markdown` and
:func:`write_csv` write the tables.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import warnings
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from tfrs_selreg.seed_stats import mean_std

# tfrs_selreg.evaluation.ranking.SEGMENTS and USER_ID_KEY, without importing TensorFlow.
SEGMENTS = ("overall", "cold_start", "long_tail")
USER_ID_KEY = "user_id"
METRICS = ("auc", "recall@20", "ndcg@20")
GATE_WEIGHT = "gate_weight"
LABELS = {"auc": "AUC", "recall@20": "Recall@20", "ndcg@20": "NDCG@20", GATE_WEIGHT: "gate weight"}
METRICS_FILE = "metrics.json"  # the test split's; other splits: metrics_file(split)


def metrics_file(split: str = "test") -> str:
    """The metrics file ``tfrs-selreg evaluate --split SPLIT`` writes in a run folder."""
    return METRICS_FILE if split == "test" else f"metrics-{split}.json"


def per_user_file(split: str = "test") -> str:
    """The per-user arrays ``tfrs-selreg evaluate --split SPLIT`` writes in a run folder."""
    return f"per_user-{split}.npz"


@dataclasses.dataclass(frozen=True)
class RunOutput:
    """What one evaluated run left: its ``metrics.json`` and per-user arrays (``{segment/key: array}``)."""

    backbone: str
    method: str
    seed: int
    metrics: dict[str, Any]
    per_user: Optional[dict[str, np.ndarray]] = None


@dataclasses.dataclass(frozen=True)
class Row:
    """One backbone x method x segment x metric cell of the tables, with its comparison to the baseline."""

    dataset: str
    backbone: str
    method: str
    gate: str
    teacher: str
    segment: str
    metric: str
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    mean: float
    std: float
    users: Optional[int]
    baseline: str
    baseline_mean: float = math.nan
    diff: float = math.nan
    rel_diff: float = math.nan
    paired_seeds: int = 0
    t_stat: float = math.nan
    t_pvalue: float = math.nan
    user_pairs: int = 0
    wilcoxon_stat: float = math.nan
    wilcoxon_pvalue: float = math.nan


# --- reading -------------------------------------------------------------------------------------


def load_run(run_dir: str, backbone: str, method: str, seed: int, split: str = "test") -> RunOutput:
    """The :class:`RunOutput` of a run folder evaluated on ``split`` (per-user arrays ``None`` when the
    file is absent)."""
    with open(os.path.join(run_dir, metrics_file(split)), encoding="utf-8") as f:
        metrics = json.load(f)
    per_user = None
    path = os.path.join(run_dir, per_user_file(split))
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as z:
            per_user = {k: z[k] for k in z.files}
    return RunOutput(backbone, method, seed, metrics, per_user)


def metric_value(metrics: Mapping[str, Any], segment: str, metric: str) -> float:
    """A segment's metric in a ``metrics.json`` mapping (the gate weight from its diagnostics); NaN if absent."""
    if metric == GATE_WEIGHT:
        gate = ((metrics.get("diagnostics") or {}).get("gate") or {}).get(segment) or {}
        value = gate.get("mean_weight")
    else:
        value = (metrics.get(segment) or {}).get(metric)
    return math.nan if value is None else float(value)


def user_values(run: RunOutput, segment: str, metric: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """``(user_ids, values)`` of a run's segment; ``None`` without per-user values for ``metric``."""
    if run.per_user is None:
        return None
    ids, values = run.per_user.get(f"{segment}/{USER_ID_KEY}"), run.per_user.get(f"{segment}/{metric}")
    if ids is None or values is None:
        return None
    return np.asarray(ids).astype(str), np.asarray(values, dtype=float)


# --- statistics ----------------------------------------------------------------------------------


def paired_t_test(values: Mapping[int, float], baseline: Mapping[int, float]) -> tuple[float, float, int]:
    """``(t, p, n)``: ``scipy.stats.ttest_rel`` over the seeds both have (finite values); NaN when n < 2."""
    seeds = [s for s in sorted(values) if s in baseline and math.isfinite(values[s]) and math.isfinite(baseline[s])]
    if len(seeds) < 2:
        return math.nan, math.nan, len(seeds)
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical differences: t and p are NaN
        result = stats.ttest_rel([values[s] for s in seeds], [baseline[s] for s in seeds])
    return float(result.statistic), float(result.pvalue), len(seeds)


def matched_users(runs: Mapping[int, tuple[np.ndarray, np.ndarray]],
                  baseline: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: per-user values of the method and the baseline, users matched by id within each seed
    the two have, pooled over those seeds (in seed order, then the method's user order). Users missing
    from either run, or with a non-finite value in either, are left out."""
    xs, ys = [], []
    for seed in sorted(runs):
        if seed not in baseline:
            continue
        ids, values = runs[seed]
        position = {u: k for k, u in enumerate(baseline[seed][0])}
        for u, value in zip(ids, values):
            k = position.get(u)
            if k is None:
                continue
            other = baseline[seed][1][k]
            if math.isfinite(value) and math.isfinite(other):
                xs.append(value)
                ys.append(other)
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def wilcoxon_test(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """``(statistic, p, pairs)`` of the two-sided Wilcoxon signed-rank test of paired ``x`` and ``y``;
    NaN without a non-zero difference."""
    n = int(len(x))
    if n == 0 or not np.any(np.asarray(x) != np.asarray(y)):
        return math.nan, math.nan, n
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.wilcoxon(x, y, alternative="two-sided")
    return float(result.statistic), float(result.pvalue), n


# --- the rows ------------------------------------------------------------------------------------


def aggregate(runs: Iterable[RunOutput], *, dataset: str, baseline: str, gates: Mapping[str, str],
              teachers: Mapping[str, str] | None = None, segments: Sequence[str] = SEGMENTS,
              metrics: Sequence[str] = METRICS) -> list[Row]:
    """The rows of every backbone x method (in first-seen order) x segment x metric.

    ``gates`` maps a method to its gate mode (a method whose gate is ``none`` gets no gate-weight row);
    ``teachers`` maps a method to its teacher (for the table only).
    """
    by_key: dict[tuple[str, str], dict[int, RunOutput]] = {}
    for run in runs:
        by_key.setdefault((run.backbone, run.method), {})[run.seed] = run
    teachers = teachers or {}
    rows = []
    for (backbone, method), seeds in by_key.items():
        base_runs = by_key.get((backbone, baseline), {}) if method != baseline else {}
        gate = gates.get(method, "")
        names = list(metrics) + ([GATE_WEIGHT] if gate and gate != "none" else [])
        for segment in segments:
            for metric in names:
                per_seed = {s: metric_value(r.metrics, segment, metric) for s, r in sorted(seeds.items())}
                mean, std, _ = mean_std(list(per_seed.values()))
                users = {(r.metrics.get(segment) or {}).get("users") for r in seeds.values()} - {None}
                row = dict(dataset=dataset, backbone=backbone, method=method, gate=gate,
                           teacher=teachers.get(method, ""), segment=segment, metric=metric,
                           seeds=tuple(per_seed), values=tuple(per_seed.values()), mean=mean, std=std,
                           users=int(max(users)) if users else None, baseline=baseline)
                if base_runs:
                    base = {s: metric_value(r.metrics, segment, metric) for s, r in sorted(base_runs.items())}
                    base_mean, _, _ = mean_std(list(base.values()))
                    diff = mean - base_mean
                    t, p, n = paired_t_test(per_seed, base)
                    mine = {s: v for s, r in seeds.items() if (v := user_values(r, segment, metric)) is not None}
                    theirs = {s: v for s, r in base_runs.items()
                              if (v := user_values(r, segment, metric)) is not None}
                    w, wp, pairs = wilcoxon_test(*matched_users(mine, theirs))
                    row.update(baseline_mean=base_mean, diff=diff,
                               rel_diff=diff / base_mean if base_mean else math.nan,
                               paired_seeds=n, t_stat=t, t_pvalue=p, user_pairs=pairs,
                               wilcoxon_stat=w, wilcoxon_pvalue=wp)
                rows.append(Row(**row))
    return rows


# --- output --------------------------------------------------------------------------------------

CSV_COLUMNS = [f.name for f in dataclasses.fields(Row)]


def _csv_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return " ".join(str(_csv_value(v)) for v in value)
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else value


def write_csv(rows: Sequence[Row], path: str) -> str:
    """One line per row, every field (tuples space-separated; NaN and ``None`` empty)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([_csv_value(getattr(row, c)) for c in CSV_COLUMNS])
    return path


def _num(value: float, digits: int = 4, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _p(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def _cell(row: Row) -> str:
    if not math.isfinite(row.mean):
        return "-"
    return _num(row.mean) + (f" ± {_num(row.std)}" if math.isfinite(row.std) else "")


def to_markdown(rows: Sequence[Row], header: Sequence[str] = (), level: int = 2) -> str:
    """Tables by backbone and segment: mean ± std per method and metric, then each method against the
    baseline (difference, relative difference, p of the paired t-test over seeds, p of the per-user
    Wilcoxon test and its number of pairs). Backbones get headings of ``level``, segments one below."""
    lines = list(header)
    h = "#" * level
    backbones = list(dict.fromkeys(r.backbone for r in rows))
    for backbone in backbones:
        lines += ["", f"{h} {backbone}"]
        for segment in dict.fromkeys(r.segment for r in rows if r.backbone == backbone):
            cells = [r for r in rows if r.backbone == backbone and r.segment == segment]
            methods = list(dict.fromkeys(r.method for r in cells))
            metrics = list(dict.fromkeys(r.metric for r in cells))
            users = {r.users for r in cells if r.users is not None}
            size = f" ({max(users):,} users)" if users else ""
            lines += ["", f"{h}# {segment}{size}", ""]
            lines.append("| method | seeds | " + " | ".join(LABELS.get(m, m) for m in metrics) + " |")
            lines.append("|---|---|" + "---:|" * len(metrics))
            for method in methods:
                mine = {r.metric: r for r in cells if r.method == method}
                seeds = next(iter(mine.values())).seeds
                lines.append(f"| {method} | {', '.join(map(str, seeds))} | "
                             + " | ".join(_cell(mine[m]) if m in mine else "" for m in metrics) + " |")
            compared = [r for r in cells if r.method != r.baseline and math.isfinite(r.baseline_mean)]
            if compared:
                lines += ["", f"| vs {compared[0].baseline} | metric | Δ | rel. Δ | p (t-test, seeds) "
                          "| p (Wilcoxon, users) | user pairs |",
                          "|---|---|---:|---:|---:|---:|---:|"]
                for r in compared:
                    rel = f"{100 * r.rel_diff:+.2f}%" if math.isfinite(r.rel_diff) else "-"
                    seeds = f"{r.paired_seeds} seed{'s' if r.paired_seeds != 1 else ''}"
                    lines.append(f"| {r.method} | {LABELS.get(r.metric, r.metric)} | {_num(r.diff, sign=True)} | "
                                 f"{rel} | {_p(r.t_pvalue)} ({seeds}) | {_p(r.wilcoxon_pvalue)} | {r.user_pairs:,} |")
    return "\n".join(lines) + "\n"
