"""``tfrs-selreg export``: a trained run as a versioned SavedModel that TF Serving picks up.

    tfrs-selreg export --run RUN_DIR --model-name NAME [--base saved_models] [--k 100]
        [--exclude-history | --no-exclude-history] [--prepared DIR] [--fusion METRICS_JSON]

writes ``BASE/NAME/VERSION/``, the layout TF Serving watches (``--model_base_path=BASE/NAME``)::

    BASE/NAME/VERSION/
      saved_model.pb                  signatures serving_default, score_items, serving_tf_example
      variables/                      serving variables only (no gate, no regularizer, no metrics)
      assets/schema.json              the serving part of the prepared folder's schema
      assets/items.txt                the item vocabulary (catalog order)
      assets.extra/tf_serving_warmup_requests   PredictionLog warm-up records
      assets.extra/export.json        which run, backbone, gate, k and history exclusion made it

``--fusion`` serves a two-tower run fused with the embedding teacher (:mod:`tfrs_selreg.export.fused`):
pass the ``metrics.json`` that ``tfrs-selreg evaluate --reference fusion --run RUN`` wrote (its betas are
fitted on validation); the prepared folder must hold the teacher's ``item_embeddings/``. Same signatures,
fused scores; ``export.json`` records the betas.

``VERSION`` is the next integer after the integer folders already in ``BASE/NAME`` (1 for the first
export): TF Serving serves the largest one, so the newest export wins, and small integers are easy to
pin in a ``model_version_policy``. The version is built in a hidden folder next to it
(``BASE/NAME/.tmp-export-PID``, which TF Serving ignores) and renamed when complete, so the server never
sees a half-written version; when another export took the number meanwhile, the next one is used.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import tempfile

import tensorflow as tf

from tfrs_selreg import flags
from tfrs_selreg.data import schema
from tfrs_selreg.data.prepared import ITEMS_VOCAB, PreparedData
from tfrs_selreg.export import fused, warmup
from tfrs_selreg.export import signatures as sig
from tfrs_selreg.models.base import RecommenderModel
from tfrs_selreg.runs import folder as run_lib

EXPORT_INFO = "export.json"
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Attempts to claim a version number when concurrent exports race for the same one.
_CLAIM_ATTEMPTS = 10


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What ``tfrs-selreg export`` needs.

    Attributes:
      run: run folder of ``tfrs-selreg train``.
      model_name: the model's name in TF Serving (the folder below ``base``).
      base: the model base folder that holds one folder per model name.
      k: items returned by ``serving_default`` and ``serving_tf_example``.
      exclude_history: leave the request's history items out of the top-k.
      prepared: prepared folder; ``None`` uses the one recorded in the run's ``config.json``.
      fusion: ``metrics.json`` of ``evaluate --reference fusion`` for this run: serve the fused scores.
    """

    run: str
    model_name: str
    base: str = "saved_models"
    k: int = 100
    exclude_history: bool = True
    prepared: str | None = None
    fusion: str | None = None


def serving_schema(spec: schema.Schema) -> schema.Schema:
    """``spec`` reduced to its ``serving`` features (no pair slots)."""
    return schema.Schema(spec.history_length, 0, 0, spec.by_role(schema.ROLE_SERVING))


def version_numbers(model_dir: str) -> list[int]:
    """The integer version folders in ``model_dir`` (what TF Serving considers), sorted."""
    if not tf.io.gfile.isdir(model_dir):
        return []
    return sorted(int(name.rstrip("/")) for name in tf.io.gfile.listdir(model_dir) if name.rstrip("/").isdigit())


def save_serving_model(model: RecommenderModel, data: PreparedData, directory: str, *, model_name: str, k: int,
                       exclude_history: bool, info: dict | None = None, fused: tf.Module | None = None) -> str:
    """Writes the SavedModel of ``model`` (trained on ``data``) to ``directory``, which must not exist yet.

    ``info`` is merged into ``assets.extra/export.json``; ``fused`` (a ``FusedIndex``) serves fused scores.
    """
    spec = serving_schema(schema.Schema.load(data.directory))
    module = sig.ServingModule(model, spec, k=k, exclude_history=exclude_history, fused=fused)
    with tempfile.TemporaryDirectory() as staging:
        module.schema_file = tf.saved_model.Asset(spec.save(staging))
        vocabulary = os.path.join(staging, "items.txt")  # a local copy: the prepared folder may be on gs://
        tf.io.gfile.copy(os.path.join(data.directory, ITEMS_VOCAB), vocabulary)
        module.item_vocabulary_file = tf.saved_model.Asset(vocabulary)
        tf.saved_model.save(module, directory, signatures=module.signatures())
    warmup.write_warmup(directory, model_name, data.user_vocabulary(), list(model.catalog.item_ids),
                        spec.history_length)
    details = {"model_name": model_name, "backbone": model.config.backbone, "k": k,
               "exclude_history": exclude_history, "num_items": model.num_items,
               "history_length": spec.history_length, "signatures": list(sig.SIGNATURES), **(info or {})}
    with tf.io.gfile.GFile(os.path.join(directory, warmup.WARMUP_DIR, EXPORT_INFO), "w") as f:
        f.write(json.dumps(details, indent=2) + "\n")
    return directory


def publish(staging_dir: str, model_dir: str) -> str:
    """Renames the finished ``staging_dir`` to the next free version folder of ``model_dir``; returns it."""
    for _ in range(_CLAIM_ATTEMPTS):
        target = os.path.join(model_dir, str((version_numbers(model_dir) or [0])[-1] + 1))
        if not tf.io.gfile.exists(target):
            try:
                tf.io.gfile.rename(staging_dir, target)
                return target
            except (tf.errors.OpError, OSError):
                pass  # another export claimed this version first
    raise RuntimeError(f"could not claim a version folder in {model_dir} after {_CLAIM_ATTEMPTS} attempts "
                       "(other exports kept taking the next number); run the export again.")


def check_model_name(name: str) -> str:
    """``name`` if it is one folder name TF Serving accepts as a model name (letters, digits, ``._-``)."""
    if not MODEL_NAME.fullmatch(name):  # the first character rules out "." and ".."
        raise ValueError(f"--model-name {name!r}: use one folder name of letters, digits, '.', '_' or '-' "
                         "(it becomes BASE/NAME and the model's name in TF Serving requests).")
    return name


def export(config: ExportConfig) -> str:
    """Exports ``config.run`` as ``config.base/config.model_name/VERSION``; returns that folder."""
    check_model_name(config.model_name)
    train_config, model = run_lib.load_run(config.run, config.prepared)
    data = PreparedData(config.prepared or train_config.prepared)
    info = {"run": os.path.abspath(config.run), "gate": train_config.regularizer.gate,
            "prepared": os.path.abspath(data.directory)}
    index = None
    if config.fusion:
        index = fused.build(model, data.directory, list(model.catalog.item_ids),
                            fused.load_betas(config.fusion, config.run))
        info[fused.FUSION_KEY] = {"betas": list(index.betas), "weights": os.path.abspath(config.fusion),
                                  "teacher_dim": index.teacher_dim}
    model_dir = os.path.join(config.base, config.model_name)
    created = not tf.io.gfile.exists(model_dir)
    tf.io.gfile.makedirs(model_dir)
    staging = os.path.join(model_dir, f".tmp-export-{os.getpid()}")
    if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)
    try:
        save_serving_model(model, data, staging, model_name=config.model_name, k=config.k,
                           exclude_history=config.exclude_history, info=info, fused=index)
        return publish(staging, model_dir)
    except BaseException:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
        if created and not tf.io.gfile.listdir(model_dir):
            tf.io.gfile.rmtree(model_dir)  # a failed first export leaves no empty model folder behind
        raise


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tfrs-selreg export", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run folder of `tfrs-selreg train`")
    p.add_argument("--model-name", required=True, help="model name in TF Serving (folder below --base)")
    p.add_argument("--base", default=ExportConfig.base, help="model base folder (default: %(default)s)")
    p.add_argument("--k", type=flags.integer(1), default=ExportConfig.k,
                   help="items per top-k reply (default: %(default)s)")
    p.add_argument("--exclude-history", action=argparse.BooleanOptionalAction, default=ExportConfig.exclude_history,
                   help="leave the request's history items out of the top-k (default: %(default)s)")
    p.add_argument("--prepared", help="prepared folder, when it moved since training (default: the run's)")
    p.add_argument("--fusion", metavar="METRICS_JSON",
                   help="serve the run fused with the embedding teacher, with the betas in this metrics.json of "
                        "`tfrs-selreg evaluate --reference fusion --run RUN` (two_tower only)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = ExportConfig(run=args.run, model_name=args.model_name, base=args.base, k=args.k,
                          exclude_history=args.exclude_history, prepared=args.prepared, fusion=args.fusion)
    try:
        path = export(config)
    except (FileNotFoundError, ValueError) as e:
        print(f"tfrs-selreg export: {e}", file=sys.stderr)
        return 2
    print(f"exported {config.run} as {config.model_name} version {os.path.basename(path)}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
