"""What the gate did and how good the teacher is, over the training split's pairs.

- Gate: the weight the trained regularizer gives each real, ordered teacher pair
  (``SelectiveRegularizer.pair_weights`` with the trained backbone's scores), averaged overall, on
  cold-start users, on pairs holding a long-tail item, and by bins of the user's history length and of
  the popularity of the pair's less popular item.
- Teacher: its accuracy on probe pairs (``(pref > 0.5) == truth``, ties ``pref = 0.5`` left out), by
  the same segments.

A (user, item_i, item_j) pair repeated over a user's training records counts once, with the first
record that holds it (in file order: shards sorted, records as written) as its context. The split is
parsed once (:class:`~tfrs_selreg.data.in_memory.InMemorySplit`), pairs are de-duplicated before any
scoring, and only the distinct teacher pairs are scored; probe accuracy needs no model at all.

``tfrs-selreg train`` computes them once, on the split it already holds in memory, when the final weights
are saved, and writes them into the run folder (``diagnostics.json``, :func:`save`); ``tfrs-selreg
evaluate`` reads that file (:func:`load`) instead of parsing the training split again for every split.
"""

from __future__ import annotations

import json
import math

import numpy as np

from tfrs_selreg.data import labels, schema
from tfrs_selreg.data.in_memory import InMemorySplit

HISTORY_BINS = (1, 2, 3, 4, 6, 11, 21, 51, 101)
POPULARITY_BINS = (0, 1, 3, 6, 11, 21, 51, 101, 501)

_ROLES = (schema.ROLE_SERVING, schema.ROLE_EXAMPLE, schema.ROLE_TRAINING_ONLY)
_ROW_FEATURES = (schema.USER_ID, schema.HISTORY, schema.HISTORY_LENGTH, schema.COLD_START)
_TEACHER_FEATURES = (schema.TEACHER_ITEM_I, schema.TEACHER_ITEM_J, schema.TEACHER_PREF, schema.TEACHER_CONFIDENCE,
                     schema.TEACHER_MASK)
_PROBE_FEATURES = (schema.PROBE_ITEM_I, schema.PROBE_ITEM_J, schema.PROBE_PREF, schema.PROBE_TRUTH, schema.PROBE_MASK)


def _bin_labels(edges) -> list[str]:
    names = []
    for lo, hi in zip(edges, edges[1:] + (None,)):
        names.append(f"{lo}+" if hi is None else (str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}"))
    return names


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


def _distinct_slots(columns: dict[str, np.ndarray], prefix: str, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, slots)`` of the real, ordered ``prefix`` pair slots, one per distinct (user, item_i, item_j)
    (its first occurrence in row-major order), sorted by that key."""
    pref = columns[f"{prefix}_pref"]
    rows, slots = np.nonzero((columns[f"{prefix}_mask"] > 0) & labels.is_ordered(pref))
    user = columns[schema.USER_ID][rows].astype(np.int64)
    item_i = columns[f"{prefix}_item_i"][rows, slots].astype(np.int64)
    item_j = columns[f"{prefix}_item_j"][rows, slots].astype(np.int64)
    base = num_items + 1
    if (int(user.max(initial=0)) + 1) * base * base < 2**63:
        _, first = np.unique((user * base + item_i) * base + item_j, return_index=True)
    else:
        _, first = np.unique(np.stack([user, item_i, item_j], axis=1), axis=0, return_index=True)
    return rows[first], slots[first]


def _teacher_weights(model, columns: dict[str, np.ndarray], rows: np.ndarray, slots: np.ndarray,
                     batch_size: int) -> np.ndarray:
    """The trained gate's weight of each pair ``(rows[k], slots[k])``, scored in its row's context."""
    weights = []
    for start in range(0, rows.size, batch_size):
        r, c = rows[start:start + batch_size], slots[start:start + batch_size]
        batch = {name: columns[name][r] for name in _ROW_FEATURES}
        batch.update({name: columns[name][r, c][:, None] for name in _TEACHER_FEATURES})
        weights.append(model.regularizer.pair_weights(batch, model.pair_scorer(batch), model.item_index).numpy()[:, 0])
    return np.concatenate(weights) if weights else np.zeros([0])


def pair_diagnostics(model, prepared_dir: str, *, batch_size: int = 4096, max_examples: int | None = None,
                     split: InMemorySplit | None = None) -> dict:
    """``{"gate": ..., "probe_accuracy": ...}`` over the training split (see the module docstring).

    ``gate`` is ``None`` for gate mode ``none``. ``max_examples`` caps the training records read (the first
    ones in file order). ``split``: the whole training split of ``prepared_dir`` already in memory (as
    training holds it), read instead of the files.
    """
    popularity = model.catalog.popularity
    long_tail = model.catalog.long_tail.astype(bool)
    gated = model.regularizer.config.uses_teacher
    names = _ROW_FEATURES + _PROBE_FEATURES + (_TEACHER_FEATURES if gated else ())
    if split is None:
        split = InMemorySplit.load(prepared_dir, "train", _ROLES, names, max_records=max_examples)
    elif max_examples is not None:
        raise ValueError("pair_diagnostics: pass max_examples or an in-memory split, not both.")
    columns = {name: split.columns[name].numpy() for name in names}
    cold = columns[schema.COLD_START].astype(bool)
    history_length = columns[schema.HISTORY_LENGTH]

    out: dict = {"gate": None, "probe_accuracy": None}
    if gated:
        rows, slots = _distinct_slots(columns, "teacher", model.num_items)
        if rows.size:
            item_i = columns[schema.TEACHER_ITEM_I][rows, slots]
            item_j = columns[schema.TEACHER_ITEM_J][rows, slots]
            w = _teacher_weights(model, columns, rows, slots, batch_size).astype(np.float64)
            tail = long_tail[item_i] | long_tail[item_j]
            min_popularity = np.minimum(popularity[item_i], popularity[item_j])
            out["gate"] = {
                "mode": model.regularizer.config.gate,
                **_segments(w, cold[rows], tail, "mean_weight", "pairs"),
                "by_history_length": _by_bin(w, history_length[rows], HISTORY_BINS, "mean_weight", "pairs"),
                "by_popularity": _by_bin(w, min_popularity, POPULARITY_BINS, "mean_weight", "pairs"),
            }
    rows, slots = _distinct_slots(columns, "probe", model.num_items)
    if rows.size:
        pref = columns[schema.PROBE_PREF][rows, slots]
        correct = labels.probe_correct(pref, columns[schema.PROBE_TRUTH][rows, slots]).astype(np.float64)
        tail = (long_tail[columns[schema.PROBE_ITEM_I][rows, slots]]
                | long_tail[columns[schema.PROBE_ITEM_J][rows, slots]])
        out["probe_accuracy"] = _segments(correct, cold[rows], tail, "accuracy", "probes")
    return out


def finite(value):
    """``value`` (nested dicts and lists) with NaN and infinities as ``None`` (JSON ``null``)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save(path: str, diagnostics: dict) -> None:
    """Writes ``diagnostics`` (of :func:`pair_diagnostics`) to the JSON file ``path``."""
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(finite(diagnostics), indent=2) + "\n")


def load(path: str) -> dict | None:
    """The diagnostics :func:`save` wrote to ``path``; ``None`` when there is no such file (older runs).

    Raises ``ValueError`` naming the file when it holds anything else.
    """
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        text = f.read()
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not (isinstance(value, dict) and set(value) == {"gate", "probe_accuracy"}):
        raise ValueError(f"{path} is damaged (not the diagnostics that `tfrs-selreg train` writes); delete it and "
                         "`tfrs-selreg evaluate` computes them from the training split.")
    return value
