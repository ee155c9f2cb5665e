"""The layout of a run folder, and how evaluation and export restore a trained model from it::

    RUN_DIR/
      config.json            the resolved TrainConfig (all that is needed to rebuild the model)
      model/weights.*        final weights (TF checkpoint): the best validation epoch
      history.json           per-epoch logs (losses, every regularizer term, validation metrics)
      run.json               TrainResult: best epoch, epochs trained, timings
      logs/                  TensorBoard
      checkpoints/epoch-NNN.*  weights after each epoch
      backup/                BackupAndRestore state while training runs (deleted when it ends)
      prepared.json          the prepared folder trained on and its fingerprint (PreparedData.fingerprint)
      diagnostics.json       gate and teacher diagnostics of the final weights (evaluation.diagnostics)
      metrics*.json, per_user-*.npz   written by `tfrs-selreg evaluate`
"""

from __future__ import annotations

import json
import os

from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.runs import config as config_lib

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
RUN_FILE = "run.json"
MODEL_DIR = "model"
WEIGHTS = os.path.join(MODEL_DIR, "weights")
LOGS_DIR = "logs"
CHECKPOINTS_DIR = "checkpoints"
BACKUP_DIR = "backup"
PREPARED_FILE = "prepared.json"
DIAGNOSTICS_FILE = "diagnostics.json"
# Everything the layout above names: what replacing a run removes (nothing else in the folder is touched).
RUN_OUTPUTS = (CONFIG_FILE, HISTORY_FILE, RUN_FILE, MODEL_DIR, LOGS_DIR, CHECKPOINTS_DIR, BACKUP_DIR, PREPARED_FILE,
               DIAGNOSTICS_FILE,
               "metrics.json", "metrics-*.json", "per_user-*.npz")


def clear(run_dir: str) -> None:
    """Removes the files of the layout above from ``run_dir`` (a run being replaced)."""
    import tensorflow as tf

    for pattern in RUN_OUTPUTS:
        for path in tf.io.gfile.glob(os.path.join(run_dir, pattern)):
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)


def checkpoint_path(run_dir: str, epoch: int) -> str:
    """Weights after 1-based ``epoch`` (Keras' ``{epoch}`` in ``ModelCheckpoint`` paths is 1-based)."""
    return os.path.join(run_dir, CHECKPOINTS_DIR, f"epoch-{epoch:03d}")


class RunFolderError(ValueError):
    """A run folder that cannot be loaded; the message names the file and what to do."""


class PreparedMismatchError(RunFolderError):
    """The prepared folder is not the one a run was trained on."""


def record_prepared(run_dir: str, data: PreparedData) -> None:
    """Writes ``prepared.json``: which prepared folder the run trains on, and its fingerprint."""
    import tensorflow as tf

    with tf.io.gfile.GFile(os.path.join(run_dir, PREPARED_FILE), "w") as f:
        f.write(json.dumps({"prepared": data.directory, "fingerprint": data.fingerprint()}, indent=2) + "\n")


def check_prepared(run_dir: str, data: PreparedData) -> None:
    """Raises when ``data`` is not the preparation the run was trained on (a run without the record passes)."""
    import tensorflow as tf

    path = os.path.join(run_dir, PREPARED_FILE)
    if not tf.io.gfile.exists(path):
        return
    with tf.io.gfile.GFile(path) as f:
        recorded = json.load(f)
    if recorded.get("fingerprint") != data.fingerprint():
        raise PreparedMismatchError(f"--prepared {data.directory} is not the preparation run {run_dir} was trained on "
                         f"({recorded.get('prepared')}): its vocabularies or schema differ ({path}), so every "
                         "item index would mean another item. Pass the folder the run was trained on.")


def load_run(run_dir: str, prepared_dir: str | None = None):
    """``(TrainConfig, model)`` of a finished run, the model holding its final weights.

    ``prepared_dir`` overrides the prepared folder recorded in ``config.json`` (e.g. when the run was
    copied to another machine).
    """
    import tensorflow as tf

    from tfrs_selreg.models import build_model

    config_path = os.path.join(run_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(config_path):
        raise FileNotFoundError(f"{config_path} not found: {run_dir!r} is not a run folder of `tfrs-selreg train`.")
    try:
        config = config_lib.load(config_path)
    except (ValueError, TypeError) as e:
        raise RunFolderError(f"{config_path} cannot be read ({' '.join(str(e).split())[:300]}): the run folder is "
                             "damaged; train it again (--overwrite).") from None
    weights = os.path.join(run_dir, WEIGHTS)
    if not tf.io.gfile.exists(weights + ".index"):
        raise FileNotFoundError(f"{weights}.index not found: the run in {run_dir!r} did not finish "
                                "(re-run `tfrs-selreg train` with the same --output to resume it).")
    data = PreparedData(prepared_dir or config.prepared)
    check_prepared(run_dir, data)
    model = build_model(config.model, data, config.regularizer)
    # Every variable of the model must come back; optimizer slots in the file are not needed.
    try:
        model.load_weights(weights).assert_existing_objects_matched().expect_partial()
    except (tf.errors.OpError, AssertionError, ValueError, IndexError) as e:  # IndexError: a truncated shard
        raise RunFolderError(f"{weights}: the weights cannot be restored into this run's model "
                             f"({type(e).__name__}: {str(e).splitlines()[0][:300]}); the files are damaged or "
                             "belong to another configuration: train the run again (--overwrite).") from None
    return config, model
