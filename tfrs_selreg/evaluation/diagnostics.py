"""What the gate did and how good the teacher is, over the training split's pairs.

- Gate: the weight the trained regularizer gives each real, ordered teacher pair
  (``SelectiveRegularizer.pair_weights`` with the trained backbone's scores), averaged overall, on
  cold-start users, on pairs holding a long-tail item, and by bins of the user's history length and of
  the popularity of the pair's less popular item.
- Teacher: its accuracy on probe pairs (``(pref > 0.5) == truth``, ties ``pref = 0.5`` left out), by
  the same segments.

A (user, item_i, item_j) pair repeated over a user's training records counts once.
"""

from __future__ import annotations

import numpy as np

from tfrs_selreg.data import input_fn, schema

HISTORY_BINS = (1, 2, 3, 4, 6, 11, 21, 51, 101)
POPULARITY_BINS = (0, 1, 3, 6, 11, 21, 51, 101, 501)


def _bin_labels(edges) -> list[str]:
    labels = []
    for lo, hi in zip(edges, edges[1:] + (None,)):
        labels.append(f"{lo}+" if hi is None else (str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}"))
    return labels


def _by_bin(values: np.ndarray, key: np.ndarray, edges, value_name: str, count_name: str) -> list[dict]:
    which = np.searchsorted(np.asarray(edges), key, side="right") - 1
    out = []
    for b, label in enumerate(_bin_labels(edges)):
        inside = which == b
        if inside.any():
            out.append({"bin": label, value_name: float(values[inside].mean()), count_name: int(inside.sum())})
    return out


def _segments(values: np.ndarray, cold: np.ndarray, tail: np.ndarray, value_name: str, count_name: str) -> dict:
    out = {}
    for name, where in (("overall", np.ones_like(cold)), ("cold_start", cold), ("long_tail", tail)):
        out[name] = {value_name: float(values[where].mean()) if where.any() else float("nan"),
                     count_name: int(where.sum())}
    return out


def _unique_pairs(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    keys = np.stack([columns["user"], columns["item_i"], columns["item_j"]], axis=1)
    _, first = np.unique(keys, axis=0, return_index=True)
    return {k: v[first] for k, v in columns.items()}


def pair_diagnostics(model, prepared_dir: str, *, batch_size: int = 1024,
                     max_examples: int | None = None) -> dict:
    """``{"gate": ..., "probe_accuracy": ...}`` over the training split (see the module docstring).

    ``gate`` is ``None`` for gate mode ``none``. ``max_examples`` caps the training records read.
    """
    popularity = model.catalog.popularity
    long_tail = model.catalog.long_tail.astype(bool)
    gated = model.regularizer.config.gate != "none"
    teacher, probe = [], []
    ds = input_fn.make_dataset(prepared_dir, "train", batch_size=batch_size, shuffle=False, seed=None)
    if max_examples is not None:
        ds = ds.unbatch().take(max_examples).batch(batch_size)
    for batch in ds:
        user = model.query_features.user_lookup(batch[schema.USER_ID]).numpy()
        history_length = batch[schema.HISTORY_LENGTH].numpy()
        cold = batch[schema.COLD_START].numpy().astype(bool)
        weights = (model.regularizer.pair_weights(batch, model.pair_scorer(batch), model.item_index).numpy()
                   if gated else None)
        for rows, prefix, mask_key, extra in (
                (teacher, "teacher", schema.TEACHER_MASK, weights),
                (probe, "probe", schema.PROBE_MASK, batch[schema.PROBE_TRUTH].numpy())):
            if extra is None:
                continue
            pref = batch[f"{prefix}_pref"].numpy()
            real = (batch[mask_key].numpy() > 0) & (pref != 0.5)
            r, c = np.nonzero(real)
            rows.append({
                "user": user[r],
                "item_i": model.item_index(batch[f"{prefix}_item_i"]).numpy()[r, c],
                "item_j": model.item_index(batch[f"{prefix}_item_j"]).numpy()[r, c],
                "pref": pref[r, c], "extra": extra[r, c],
                "cold": cold[r], "history_length": history_length[r],
            })

    def gather(rows):
        columns = {k: np.concatenate([part[k] for part in rows]) for k in rows[0]} if rows else None
        return None if columns is None or columns["user"].size == 0 else _unique_pairs(columns)

    out: dict = {"gate": None, "probe_accuracy": None}
    pairs = gather(teacher)
    if pairs is not None:
        tail = long_tail[pairs["item_i"]] | long_tail[pairs["item_j"]]
        min_popularity = np.minimum(popularity[pairs["item_i"]], popularity[pairs["item_j"]])
        w = pairs["extra"].astype(np.float64)
        out["gate"] = {
            "mode": model.regularizer.config.gate,
            **_segments(w, pairs["cold"], tail, "mean_weight", "pairs"),
            "by_history_length": _by_bin(w, pairs["history_length"], HISTORY_BINS, "mean_weight", "pairs"),
            "by_popularity": _by_bin(w, min_popularity, POPULARITY_BINS, "mean_weight", "pairs"),
        }
    probes = gather(probe)
    if probes is not None:
        correct = ((probes["pref"] > 0.5) == (probes["extra"] > 0.5)).astype(np.float64)
        tail = long_tail[probes["item_i"]] | long_tail[probes["item_j"]]
        out["probe_accuracy"] = _segments(correct, probes["cold"], tail, "accuracy", "probes")
    return out
