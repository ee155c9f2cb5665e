"""The figures of ``report.md``: PNG files drawn with matplotlib's Agg backend (no display needed).

Every function draws one figure from numbers the stages wrote to disk (``metrics.json`` and
``history.json`` of each run), saves it as ``OUT_DIR/<name>.png`` and returns that path. Runs are
keyed by ``(gate, seed)``; a gate keeps one colour in every figure and a seed one line style.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from tfrs_selreg.seed_stats import mean_std  # noqa: E402

RunKey = tuple[str, int]

SEGMENTS = ("overall", "cold_start", "long_tail")
SEGMENT_LABELS = {"overall": "overall", "cold_start": "cold-start users", "long_tail": "long-tail items"}
SPLIT_LABELS = {"val": "Validation", "test": "Test"}
# (metrics.json key, axis label): every metric is a mean over the segment's users, in [0, 1].
SEGMENT_METRICS = (
    ("auc", "AUC (mean over users, 0-1)"),
    ("recall@20", "Recall@20 (mean over users, 0-1)"),
    ("ndcg@20", "NDCG@20 (mean over users, 0-1)"),
)
# One colour per gate mode of ``tfrs_selreg.regularizer.GATE_MODES`` (tests check the keys), the same in every figure.
GATE_COLOURS = {"none": "tab:blue", "global": "tab:orange", "pointwise": "tab:red", "paper": "tab:brown",
                "reliability": "tab:green"}
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v")
DPI = 120


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _gates(keys: Sequence[RunKey]) -> list[str]:
    """Gate modes in the order the runs were given."""
    return list(dict.fromkeys(gate for gate, _ in keys))


def _colours(gates: Sequence[str]) -> dict[str, str]:
    extra = iter(("tab:purple", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"))
    return {gate: GATE_COLOURS.get(gate) or next(extra, "black") for gate in gates}


def _seed_styles(keys: Sequence[RunKey]) -> dict[int, tuple[str, str]]:
    seeds = list(dict.fromkeys(seed for _, seed in keys))
    return {seed: (LINE_STYLES[k % len(LINE_STYLES)], MARKERS[k % len(MARKERS)]) for k, seed in enumerate(seeds)}


def _save(fig, out_dir: str, name: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.png")
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def segment_metrics(metrics: Mapping[RunKey, dict], out_dir: str, name: str = "test_metrics_by_segment",
                    what: str = "gate", split: str = "test") -> str:
    """AUC, Recall@20 and NDCG@20 of ``split`` by segment, one bar per gate mode (grouped bars, one panel per metric).

    x: the segments ``overall``, ``cold_start`` and ``long_tail`` (with their user counts); y: the
    metric (mean over the segment's users, from each run's ``metrics.json``). With several seeds per
    gate a bar is the mean over seeds and its error bar one sample standard deviation; the legend
    gives the number of seeds. A segment without users has no bar. ``what`` names the first element of a
    run key in legends (``gate`` in a run's report, ``method`` in an experiment's).
    """
    keys = list(metrics)
    gates = _gates(keys)
    colours = _colours(gates)
    seeds = {gate: [key for key in keys if key[0] == gate] for gate in gates}
    first = metrics[keys[0]]
    ticks = [f"{SEGMENT_LABELS[s]}\n({first[s]['users']:,} users)" for s in SEGMENTS]
    width = 0.8 / len(gates)
    x = np.arange(len(SEGMENTS))
    fig, axes = plt.subplots(1, len(SEGMENT_METRICS), figsize=(5.2 * len(SEGMENT_METRICS), 4.6))
    for ax, (metric, label) in zip(axes, SEGMENT_METRICS):
        top = 0.0
        for g, gate in enumerate(gates):
            stats = [mean_std([metrics[key][s].get(metric) for key in seeds[gate]]) for s in SEGMENTS]
            means = np.array([m for m, _, _ in stats])
            stds = np.array([d for _, d, _ in stats])
            n = max(c for _, _, c in stats)
            offset = (g - (len(gates) - 1) / 2) * width
            show_err = n > 1
            suffix = f" (mean ± s.d., {n} seeds)" if show_err else f" (seed {seeds[gate][0][1]})"
            ax.bar(x + offset, np.nan_to_num(means), width, color=colours[gate],
                   yerr=np.nan_to_num(stds) if show_err else None, capsize=3, error_kw={"elinewidth": 1},
                   label=f"{what} {gate}{suffix}")
            for k, (mean, std) in enumerate(zip(means, stds)):
                if math.isfinite(mean) and len(gates) <= 4:  # more value labels than that overlap
                    ax.annotate(f"{mean:.3f}", (x[k] + offset, mean + (std if show_err else 0.0)), xytext=(0, 2),
                                textcoords="offset points", ha="center", va="bottom", fontsize=6.5)
            top = max(top, float(np.nanmax(np.where(np.isfinite(means), means + np.nan_to_num(stds), 0.0))))
        if metric == "auc":
            ax.axhline(0.5, color="black", linestyle="--", linewidth=0.8, label="AUC of a random ranking (0.5)")
        ax.set_xticks(x, ticks)
        ax.set_ylabel(label)
        ax.set_title(f"{SPLIT_LABELS[split]} {label.split(' ')[0]} by segment")
        ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)  # error bars may pass 1; the labels need room
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(handles), 4), frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    by = "gate mode" if what == "gate" else what
    fig.suptitle(f"{SPLIT_LABELS[split]} metrics by segment and {by} (full-catalog ranking)", fontsize=13)
    fig.tight_layout(rect=(0, 0.06 * math.ceil(len(handles) / 4), 1, 1))
    return _save(fig, out_dir, name)


def _bin_start(label: str) -> float:
    match = re.match(r"\d+", label)
    return float(match.group()) if match else math.inf


def gate_weight_by_bins(metrics: Mapping[RunKey, dict], out_dir: str,
                        name: str = "gate_weight_by_bins", what: str = "gate") -> str | None:
    """Mean gate weight of the teacher pairs by bins of user history length and of item popularity.

    Left: x is the user's history length ``|H(u)|`` (training interactions), binned as in
    ``diagnostics.gate.by_history_length``; right: x is the popularity (training interactions) of the
    pair's less popular item (``diagnostics.gate.by_popularity``). y: the mean weight the trained gate
    gives a teacher pair (0: ignored, 1: full weight). One line per run whose gate is not ``none``; the
    tick labels carry the number of training pairs in each bin (of the first gated run). Returns
    ``None`` when no run has gate diagnostics. ``what``: as in :func:`segment_metrics`.
    """
    gated = {key: m["diagnostics"]["gate"] for key, m in metrics.items()
             if key[0] != "none" and (m.get("diagnostics") or {}).get("gate")}
    if not gated:
        return None
    keys = list(gated)
    colours = _colours(_gates(keys))
    styles = _seed_styles(keys)
    panels = (("by_history_length", "user history length |H(u)| (training interactions)",
               "Gate weight by user history length"),
              ("by_popularity", "popularity of the pair's less popular item (training interactions)",
               "Gate weight by item popularity"))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for ax, (field, xlabel, title) in zip(axes, panels):
        bins = sorted({b["bin"] for gate in gated.values() for b in gate.get(field, [])}, key=_bin_start)
        position = {b: k for k, b in enumerate(bins)}
        for key, gate in gated.items():
            rows = [b for b in gate.get(field, []) if _finite(b.get("mean_weight"))]
            line, marker = styles[key[1]]
            ax.plot([position[b["bin"]] for b in rows], [b["mean_weight"] for b in rows], linestyle=line,
                    marker=marker, color=colours[key[0]], label=f"{what} {key[0]}, seed {key[1]}", alpha=0.9)
        pairs = {b["bin"]: b["pairs"] for b in gated[keys[0]].get(field, [])}
        ax.set_xticks(range(len(bins)), [f"{b}\n{pairs[b]:,} pairs" if b in pairs else b for b in bins], fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean gate weight per teacher pair (0-1)")
    axes[0].set_ylim(-0.03, 1.05)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.suptitle("What the trained gate does with teacher pairs (training split)", fontsize=13)
    fig.tight_layout()
    return _save(fig, out_dir, name)


def probe_accuracy(probes: dict, out_dir: str, name: str = "teacher_probe_accuracy",
                   source: str = "metrics.json") -> str | None:
    """The teacher's accuracy on probe pairs by segment, against the 0.5 of a coin flip.

    x: the segments ``overall``, ``cold_start`` and ``long_tail``; y: the fraction of probe pairs
    (a known positive against an unseen item) that the teacher orders correctly, from
    ``diagnostics.probe_accuracy`` of ``source``. Each bar is annotated with its accuracy and number of
    probes; a dashed line marks chance (0.5). A segment without probes is marked "no probes".
    Returns ``None`` when ``probes`` is empty.
    """
    if not probes:
        return None
    fig, ax = plt.subplots(figsize=(6.6, 4.4))
    x = np.arange(len(SEGMENTS))
    for k, segment in enumerate(SEGMENTS):
        row = probes.get(segment) or {}
        accuracy, n = row.get("accuracy"), row.get("probes", 0)
        if _finite(accuracy):
            ax.bar(k, accuracy, 0.6, color="tab:purple", alpha=0.8)
            ax.annotate(f"{accuracy:.3f}\n{n:,} probes", (k, accuracy), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=9)
        else:
            ax.annotate(f"no probes\n({n:,})", (k, 0.02), ha="center", va="bottom", fontsize=9, color="grey")
    ax.axhline(0.5, color="black", linestyle="--", linewidth=1, label="chance (0.5)")
    ax.set_xticks(x, [SEGMENT_LABELS[s] for s in SEGMENTS])
    ax.set_xlabel("segment of the probe pair (user or item)")
    ax.set_ylabel("probe accuracy (fraction correct, 0-1)")
    ax.set_ylim(0, 1.12)
    ax.set_title("Teacher accuracy on probe pairs (training split)")
    ax.annotate(f"source: {source}", (0.01, 0.99), xycoords="axes fraction", ha="left", va="top", fontsize=7,
                color="grey")
    ax.legend(loc="upper right", frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out_dir, name)


# (history.json key, panel title, y label, whether runs without a teacher term are left out)
CURVES = (
    ("rec_loss", "Recommendation loss L_rec (training)", "L_rec (nats per example, epoch mean)", False),
    ("teacher_loss", "Teacher loss L_teacher (training, before × λ)", "L_teacher (per pair, epoch mean)", True),
    ("val_recall@20", "Validation Recall@20", "Recall@20 (mean over users, 0-1)", False),
    ("pair_weight_mean", "Mean teacher-pair weight (training)", "mean pair weight (0-1, epoch mean)", True),
)


def training_curves(histories: Mapping[RunKey, list[dict]], out_dir: str, name: str = "training_curves",
                    best_epochs: Mapping[RunKey, int] | None = None) -> str:
    """Per-epoch training curves of every run from its ``history.json``: a 2 x 2 grid of panels.

    Panels: ``rec_loss`` (the backbone's loss), ``teacher_loss`` (``L_teacher``, not multiplied by
    lambda), validation ``Recall@20`` and ``pair_weight_mean`` (the mean weight of the teacher pairs
    kept in a batch), each an epoch mean over training batches (validation: over validation users).
    x: epoch (1-based). One line per run; runs with gate ``none`` have no teacher term and are left
    out of the two teacher panels. A larger marker shows the epoch whose weights were kept (``best_epochs``,
    from ``run.json``).
    """
    keys = list(histories)
    colours = _colours(_gates(keys))
    styles = _seed_styles(keys)
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    max_epoch = 1
    for ax, (field, title, ylabel, teacher_only) in zip(axes.flat, CURVES):
        drawn = 0
        for key, history in histories.items():
            if teacher_only and key[0] == "none":
                continue
            rows = [e for e in history if _finite(e.get(field))]
            if not rows:
                continue
            epochs = [e["epoch"] for e in rows]
            max_epoch = max(max_epoch, *epochs)
            line, marker = styles[key[1]]
            ax.plot(epochs, [e[field] for e in rows], linestyle=line, marker=marker, markersize=3,
                    color=colours[key[0]], label=f"gate {key[0]}, seed {key[1]}", alpha=0.9)
            best = (best_epochs or {}).get(key)
            for e in rows:
                if e["epoch"] == best:
                    ax.plot([best], [e[field]], marker=marker, markersize=8, color=colours[key[0]],
                            markerfacecolor="none")
            drawn += 1
        if teacher_only:
            ax.annotate("gate none: no teacher term, not drawn", (0.99, 0.99), xycoords="axes fraction",
                        ha="right", va="top", fontsize=7, color="grey")
        if not drawn:
            ax.text(0.5, 0.5, "no run logged this value", transform=ax.transAxes, ha="center", color="grey")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in axes.flat:
        ax.set_xlim(0.5, max_epoch + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9, frameon=False,
               title="run (large open marker:\nkept epoch)" if best_epochs else "run")
    fig.suptitle("Training curves", fontsize=13)
    fig.tight_layout()
    return _save(fig, out_dir, name)
