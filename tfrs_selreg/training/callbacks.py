"""Keras callbacks of a training run: validation ranking metrics and a crash-safe per-epoch history."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import tensorflow as tf

from tfrs_selreg.evaluation.ranking import KS, OVERALL, RankingEvaluator


class ValidationRanking(tf.keras.callbacks.Callback):
    """Adds full-ranking validation metrics (``val_auc``, ``val_recall@20``, ...) to each epoch's logs.

    Place it before the callbacks that read them (``EarlyStopping``, the history writer, TensorBoard).
    Every worker of a multi-worker run computes the same values from the same weights, so their
    early-stopping decisions agree.
    """

    def __init__(self, evaluator: RankingEvaluator, ks: Sequence[int] = KS, batch_users: int = 256) -> None:
        super().__init__()
        self.evaluator = evaluator
        self.ks = tuple(ks)
        self.batch_users = batch_users

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        result = self.evaluator.evaluate(self.model, ks=self.ks, batch_users=self.batch_users, segments=(OVERALL,))
        for name, value in result[OVERALL].summary().items():
            if name not in ("users", "items") and logs is not None:
                logs[f"val_{name}"] = value


class HistoryWriter(tf.keras.callbacks.Callback):
    """Writes ``history.json`` (a list of ``{"epoch": 1-based, **logs}``) after every epoch.

    Entries written before a restart are kept, so a run resumed by ``BackupAndRestore`` has one history.
    ``first_epoch`` is the first (1-based) epoch this process trained.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.entries: dict[int, dict] = {}
        self.first_epoch: int | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        if tf.io.gfile.exists(self.path):
            with tf.io.gfile.GFile(self.path) as f:
                self.entries = {int(e["epoch"]): e for e in json.load(f)}

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.first_epoch is None:
            self.first_epoch = epoch + 1
            # Epochs at or after the restart point are trained again: forget what a killed process wrote.
            self.entries = {e: v for e, v in self.entries.items() if e <= epoch}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.entries[epoch + 1] = {"epoch": epoch + 1, **{k: _number(v) for k, v in (logs or {}).items()}}
        tmp = self.path + ".tmp"
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write(json.dumps([self.entries[e] for e in sorted(self.entries)], indent=1) + "\n")
        tf.io.gfile.rename(tmp, self.path, overwrite=True)

    @property
    def history(self) -> list[dict]:
        return [self.entries[e] for e in sorted(self.entries)]


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
