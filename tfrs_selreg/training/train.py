"""``tfrs-selreg train``: fit a backbone with a gate mode on a prepared folder.

    tfrs-selreg train --prepared DIR --backbone {two_tower,dcn} --gate {none,global,pointwise,paper,reliability}
        [--config FILE.yaml|json] [--seed N] [--epochs N] [--batch-size N] ... [--set key.path=value]
        --output RUN_DIR [--strategy {default,mirrored,multi_worker}]

The run is ``model.fit`` on the ``tf.data`` pipeline of the training split, with callbacks for

- validation: full-ranking metrics on the validation split after every epoch (``val_recall@20``, ...);
- early stopping on ``val_recall@20``, restoring the best epoch's weights;
- ``BackupAndRestore``: a killed run started again with the same ``--output`` resumes after its last
  finished epoch instead of epoch 0;
- per-epoch checkpoints, TensorBoard logs and ``history.json``.

The run folder layout is in :mod:`tfrs_selreg.runs.folder`; the final weights are the best validation
epoch's, and the gate and teacher diagnostics of those weights (:mod:`tfrs_selreg.evaluation.diagnostics`)
are written next to them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import tensorflow as tf

from tfrs_selreg import flags
from tfrs_selreg.data import in_memory as in_memory_lib
from tfrs_selreg.data import input_fn, schema
from tfrs_selreg.data.item_embeddings import ItemEmbeddingsError
from tfrs_selreg.data.prepared import STATS_FILE, PreparedData, PreparedFolderError
from tfrs_selreg.evaluation import diagnostics
from tfrs_selreg.evaluation.ranking import RankingEvaluator
from tfrs_selreg.models import BACKBONES, build_model, item_init
from tfrs_selreg.regularizer import GATE_MODES
from tfrs_selreg.runs import config as config_lib
from tfrs_selreg.runs import folder as run_lib
from tfrs_selreg.runs.config import VALIDATION_METRIC, TrainConfig
from tfrs_selreg.training import optimizer as optimizer_lib
from tfrs_selreg.training import strategy as strategy_lib
from tfrs_selreg.training.callbacks import HistoryWriter, ValidationRanking


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
      run_dir: this worker's run folder.
      best_epoch: 1-based epoch of the best ``val_recall@20`` (the final weights).
      best_validation: the validation metrics of that epoch.
      epochs_completed: epochs in ``history.json`` (including those before a restart).
      first_epoch: first epoch this process trained; above 1 when it resumed from a backup.
      stopped_early: whether early stopping ended the run before ``epochs``.
      train_seconds: wall time of ``fit`` in this process (validation included).
      examples_per_second: training examples per second of ``fit`` in this process (validation included).
    """

    run_dir: str
    best_epoch: int
    best_validation: dict[str, float | None]
    epochs_completed: int
    first_epoch: int
    stopped_early: bool
    train_seconds: float
    examples_per_second: float


class TrainFolderError(ValueError):
    """The --prepared or --output folder cannot be used for this configuration; the message says what to do."""


def _check_teacher_pairs(config: TrainConfig, data: PreparedData) -> None:
    """A gate other than ``none`` on a folder without teacher pairs would silently train the plain backbone."""
    gate = config.regularizer.gate
    if gate == "none":
        return
    stats_file = os.path.join(config.prepared, STATS_FILE)
    joined = data.stats().labels
    teacher, probe = joined.joined_teacher_rows, joined.joined_probe_rows
    fix = ("score the folder (`tfrs-selreg score --prepared ...`) and join the labels with `tfrs-selreg prepare "
           "--labels LABELS`, or train with --gate none.")
    if teacher == 0:
        raise TrainFolderError(f"--gate {gate} needs teacher pairs, but {config.prepared} holds none "
                               f"({stats_file}: labels.joined_teacher_rows = 0): " + fix)
    if gate == "reliability" and probe == 0:
        raise TrainFolderError(f"--gate reliability trains its gate on probe pairs, but {config.prepared} "
                               f"holds none ({stats_file}: labels.joined_probe_rows = 0): " + fix)


def _claim_output(config: TrainConfig, run_dir: str, overwrite: bool) -> None:
    """Resume a killed run of the same config; replace a finished (or other) run only with ``overwrite``."""
    saved = os.path.join(run_dir, run_lib.CONFIG_FILE)
    if not tf.io.gfile.exists(saved):
        return
    try:
        same = config_lib.load(saved).to_json() == config.to_json()
    except (ValueError, TypeError, OSError):
        same = False  # an unreadable config.json is not a run this config can resume
    finished = tf.io.gfile.exists(os.path.join(run_dir, run_lib.RUN_FILE))
    if same and not finished:
        return  # BackupAndRestore resumes it
    if not overwrite:
        what = "a finished run" if finished else "a killed run of another configuration"
        resume = "." if finished else " (or the same flags to resume it)."
        raise TrainFolderError(f"--output {config.output} holds {what} ({saved}); pass --overwrite to replace "
                               "it, or choose another --output" + resume)
    run_lib.clear(run_dir)


def train(config: TrainConfig, *, verbose: int = 1, overwrite: bool = False) -> TrainResult:
    """Trains ``config`` and writes its run folder; see the module docstring.

    A folder holding a killed run of the same config is resumed; one holding a finished run, or a run of
    another config, is refused unless ``overwrite``, which first removes that run's files.
    """
    if not config.prepared or not config.output:
        raise ValueError("TrainConfig.prepared and TrainConfig.output are required (--prepared, --output).")
    data = PreparedData(config.prepared)  # plain files: no TensorFlow op before the strategy below
    _check_teacher_pairs(config, data)
    train_examples, has_val = 0, False
    for user in data.iter_users():
        train_examples += len(user.train_items)
        has_val = has_val or bool(user.val_items)
    if not has_val:
        raise TrainFolderError(f"{config.prepared} has no validation items: training keeps the epoch with the best "
                               "validation Recall@20. Prepare it with a validation split (leave_last_out, or "
                               "--temporal-val-fraction > 0).")
    if config.batch_size > train_examples:
        # Streaming would repeat the split into one batch larger than the data and run out of memory.
        raise TrainFolderError(f"--batch-size {config.batch_size} is larger than the {train_examples:,} training "
                               f"examples of {config.prepared}; pass --batch-size {train_examples} or less.")
    strategy = strategy_lib.make_strategy(config.strategy)  # first: MultiWorkerMirroredStrategy needs it
    worker = strategy_lib.worker_info(strategy)
    run_dir = strategy_lib.worker_output(config.output, worker)
    _claim_output(config, run_dir, overwrite)
    tf.io.gfile.makedirs(run_dir)
    tf.keras.utils.set_random_seed(config.seed)
    config_lib.save(config, os.path.join(run_dir, run_lib.CONFIG_FILE))
    run_lib.record_prepared(run_dir, data)
    spec = schema.Schema.load(config.prepared)
    steps = config.steps_per_epoch or max(1, math.ceil(train_examples / config.batch_size))
    with strategy.scope():
        model = build_model(config.model, data, config.regularizer)
        item_init.apply(model, data, config.model.item_init, config.seed)
        model.compile(optimizer=optimizer_lib.make_optimizer(config.learning_rate))

    options = tf.data.Options()
    # Shards are few and uneven; every worker reads them all and keeps its share of the batches.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    split = _in_memory(config, spec, train_examples, strategy)
    dataset = input_fn.make_dataset(
        config.prepared, "train", batch_size=config.batch_size, shuffle=True, seed=config.seed,
        include_training_only=config.regularizer.uses_teacher, repeat=True, drop_remainder=True,
        shuffle_buffer=config.shuffle_buffer, in_memory=split).with_options(options)

    evaluator = RankingEvaluator(data, "val", spec.history_length, max_users=config.validation_max_users,
                                 seed=config.seed)
    history = HistoryWriter(os.path.join(run_dir, run_lib.HISTORY_FILE))
    early_stopping = tf.keras.callbacks.EarlyStopping(
        monitor=VALIDATION_METRIC, mode="max", patience=config.early_stopping_patience,
        restore_best_weights=True, verbose=verbose)
    callbacks = [
        tf.keras.callbacks.BackupAndRestore(os.path.join(config.output, run_lib.BACKUP_DIR)),
        ValidationRanking(evaluator),
        history,
        tf.keras.callbacks.ModelCheckpoint(
            os.path.join(config.output, run_lib.CHECKPOINTS_DIR, "epoch-{epoch:03d}"), save_weights_only=True),
        early_stopping,
        tf.keras.callbacks.TensorBoard(os.path.join(run_dir, run_lib.LOGS_DIR), profile_batch=0),
    ]
    start = time.perf_counter()
    model.fit(dataset, epochs=config.epochs, steps_per_epoch=steps, callbacks=callbacks, verbose=verbose)
    seconds = time.perf_counter() - start

    entries = history.history
    if not entries:
        raise RuntimeError(f"{run_dir}: training ended without a finished epoch; see the log above.")
    best = max(entries, key=lambda e: -math.inf if e.get(VALIDATION_METRIC) is None else e[VALIDATION_METRIC])
    first_epoch = history.first_epoch or config.epochs + 1
    if best["epoch"] < first_epoch:
        # The best epoch was trained before a restart, so EarlyStopping never held its weights.
        model.load_weights(run_lib.checkpoint_path(config.output, best["epoch"])).expect_partial()
    model.save_weights(os.path.join(run_dir, run_lib.WEIGHTS))
    if worker.is_chief and split is not None:
        # Once, with the final weights and the split already in memory, not in every evaluation; a streamed
        # split is too large to load for them here (evaluate computes them, --max-diagnostic-examples bounds it).
        diagnostics.save(os.path.join(run_dir, run_lib.DIAGNOSTICS_FILE),
                         diagnostics.pair_diagnostics(model, config.prepared, split=split))

    trained_epochs = len([e for e in entries if e["epoch"] >= first_epoch])
    result = TrainResult(
        run_dir=run_dir,
        best_epoch=int(best["epoch"]),
        best_validation={k: v for k, v in best.items() if k.startswith("val_")},
        epochs_completed=len(entries),
        first_epoch=first_epoch,
        stopped_early=early_stopping.stopped_epoch > 0,
        train_seconds=seconds,
        examples_per_second=trained_epochs * steps * config.batch_size / max(seconds, 1e-9),
    )
    with tf.io.gfile.GFile(os.path.join(run_dir, run_lib.RUN_FILE), "w") as f:
        f.write(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    return result


def _in_memory(config: TrainConfig, spec: schema.Schema, records: int,
               strategy: tf.distribute.Strategy) -> in_memory_lib.InMemorySplit | None:
    """The training split in memory when it fits ``in_memory_max_mb`` on a one-replica strategy."""
    # A distributed dataset is serialized to its workers, and its columns would be copied into the graph.
    if config.in_memory_max_mb == 0 or strategy.num_replicas_in_sync > 1 or config.strategy != "default":
        return None
    roles = (schema.ROLE_SERVING, schema.ROLE_EXAMPLE, schema.ROLE_TRAINING_ONLY)
    if in_memory_lib.estimate_bytes(spec, roles, records) > config.in_memory_max_mb * 2**20:
        return None
    return in_memory_lib.InMemorySplit.load(config.prepared, "train", roles)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tfrs-selreg train", description=__doc__.split("\n\n")[0])
    p.add_argument("--prepared", help="prepared folder (`tfrs-selreg prepare` output)")
    p.add_argument("--output", help="run folder (re-use it to resume a killed run)")
    p.add_argument("--config", help="YAML or JSON file of TrainConfig fields")
    p.add_argument("--backbone", choices=BACKBONES)
    p.add_argument("--gate", choices=GATE_MODES)
    p.add_argument("--teacher-lambda", type=flags.number(0.0))
    p.add_argument("--seed", type=flags.integer(0))
    p.add_argument("--epochs", type=flags.integer(1))
    p.add_argument("--batch-size", type=flags.integer(1))
    p.add_argument("--learning-rate", type=flags.number(above=0.0))
    p.add_argument("--embedding-dim", type=flags.integer(1))
    p.add_argument("--steps-per-epoch", type=flags.integer(1))
    p.add_argument("--early-stopping-patience", type=flags.integer(0))
    p.add_argument("--validation-max-users", type=flags.integer(1))
    p.add_argument("--strategy", choices=strategy_lib.STRATEGIES)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any field by its dotted path, e.g. --set model.dcn.num_negatives=8 (YAML value)")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras fit verbosity")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --output when it is finished or has another configuration "
                        "(a killed run of the same configuration is resumed without it)")
    return p


# CLI flag -> dotted TrainConfig field.
_FLAGS = {
    "prepared": "prepared", "output": "output", "backbone": "model.backbone", "gate": "regularizer.gate",
    "teacher_lambda": "regularizer.teacher_lambda", "seed": "seed", "epochs": "epochs",
    "batch_size": "batch_size", "learning_rate": "learning_rate", "embedding_dim": "model.embedding_dim",
    "steps_per_epoch": "steps_per_epoch", "early_stopping_patience": "early_stopping_patience",
    "validation_max_users": "validation_max_users", "strategy": "strategy",
}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then ``--config``, then ``--set`` overrides, then the named flags."""
    overrides = config_lib.parse_sets(args.set)
    overrides.update({field: getattr(args, flag) for flag, field in _FLAGS.items()
                      if getattr(args, flag) is not None})
    return config_lib.resolve(args.config, overrides)


def resolve_config(argv: list[str]) -> dict:
    """The ``config.json`` that ``argv`` would write (a cached stage compares it with the saved one)."""
    return json.loads(json.dumps(config_from_args(_parser().parse_args(argv)).to_json()))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except (OSError, TypeError, ValueError) as e:
        print(f"tfrs-selreg train: {e}", file=sys.stderr)
        return 2
    try:
        result = train(config, verbose=args.verbose, overwrite=args.overwrite)
    except (FileNotFoundError, ItemEmbeddingsError, TrainFolderError, PreparedFolderError) as e:
        print(f"tfrs-selreg train: {e}", file=sys.stderr)
        return 2
    best = ", ".join(f"{k}={v:.4f}" for k, v in result.best_validation.items() if v is not None)
    print(f"best epoch {result.best_epoch} of {result.epochs_completed}: {best}\nrun folder: {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
