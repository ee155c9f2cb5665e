"""Training throughput: the project's ``none`` and gated methods against a plain TFRS ids-only two-tower.

    python benchmarks/bench_train.py --prepared DIR [--backbone two_tower|dcn] [--batch-size 1024]

Every contender trains on the same prepared training split in the same process, with the train step
that ``fit`` compiles (``make_train_function``):

- ``ids-only``: the model of the TFRS basic-retrieval tutorial written as the tutorial writes it
  (``StringLookup`` + ``Embedding`` towers of size 64 for user and item id, ``tfrs.tasks.Retrieval``,
  Adam), reading ``user_id``/``item_id`` parsed once and cached by ``tf.data`` (``.cache()``, filled
  before timing), then shuffled and batched as a tutorial user would; the reference for the project's
  own input and feature cost;
- ``none``, ``none (A/A)``: the project's backbone without teacher, twice (two models, two iterators):
  their ratio is the noise floor of the machine during this run;
- the gate modes of ``--gates``, on the backbone of ``--backbone``, with the ``TrainConfig`` overrides of
  ``--set`` (e.g. ``--set regularizer.budget=256``).

The project's contenders use the training optimizer (:mod:`tfrs_selreg.training.optimizer`); the ids-only
model uses ``tf.keras.optimizers.Adam`` as the tutorials do.

All use the training input of ``tfrs-selreg train`` (the split in memory when it fits, see
``TrainConfig.in_memory_max_mb``). After ``--warmup`` steps the contenders take turns for
``--rounds`` rounds of ``--steps`` steps (each round starting with the next contender, after a pause
that lets the previous one's prefetching finish), so that load drifting on a shared machine slows them
all alike; a contender's figures are its median round's wall and CPU time (all threads) per step. The 1-minute load
average is printed before and after. Targets: ``none`` >= 0.6 x the ids-only model's examples/s (two-tower),
``reliability`` <= 1.10 x ``none`` (two-tower) or 1.15 x (DCN), A/A within 0.95-1.05.
A synthetic folder for it: ``python -m tests.synthetic DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from typing import Optional

# isort: off
import tfrs_selreg  # noqa: F401  (first: sets TF_USE_LEGACY_KERAS before TensorFlow and TFRS load)
# isort: on
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_selreg.data import in_memory as in_memory_lib
from tfrs_selreg.data import input_fn, schema
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.models import BACKBONES, build_model
from tfrs_selreg.regularizer import GATE_MODES
from tfrs_selreg.runs import config as config_lib
from tfrs_selreg.runs.config import TrainConfig
from tfrs_selreg.training.optimizer import make_optimizer

IDS_ONLY = "ids-only"
AA = "none (A/A)"
TARGET_NONE_VS_IDS_ONLY = 0.6
TARGET_GATED = {"two_tower": 1.10, "dcn": 1.15}
AA_RANGE = (0.95, 1.05)
PAUSE_SECONDS = 0.5


class IdsOnlyModel(tfrs.Model):
    """The TFRS basic-retrieval tutorial's two-tower: id embeddings and the retrieval task."""

    def __init__(self, user_ids: list[str], item_ids: list[str], embedding_dim: int = 64) -> None:
        super().__init__()
        self.user_model = tf.keras.Sequential([
            tf.keras.layers.StringLookup(vocabulary=user_ids, mask_token=None),
            tf.keras.layers.Embedding(len(user_ids) + 1, embedding_dim)])
        self.item_model = tf.keras.Sequential([
            tf.keras.layers.StringLookup(vocabulary=item_ids, mask_token=None),
            tf.keras.layers.Embedding(len(item_ids) + 1, embedding_dim)])
        self.task = tfrs.tasks.Retrieval()

    def compute_loss(self, features, training=False) -> tf.Tensor:
        return self.task(self.user_model(features[schema.USER_ID]), self.item_model(features[schema.ITEM_ID]),
                         compute_metrics=False)


class Contender:
    """A model, its compiled train step and its data iterator; times rounds of steps."""

    def __init__(self, model: tf.keras.Model, dataset: tf.data.Dataset,
                 optimizer: tf.keras.optimizers.Optimizer) -> None:
        self.model = model
        self.model.compile(optimizer=optimizer)
        self.step = self.model.make_train_function()
        self.iterator = iter(dataset)
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def run(self, steps: int, record: bool = True) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            logs = self.step(self.iterator)
        float(next(iter(logs.values())))  # waits for the last step
        if record:
            self.wall.append((time.perf_counter() - wall) / steps)
            self.cpu.append((time.process_time() - cpu) / steps)


def _ids_only(data: PreparedData, batch_size: int, seed: int) -> Contender:
    tf.keras.utils.set_random_seed(seed)
    spec = {schema.USER_ID: tf.io.FixedLenFeature([], tf.string), schema.ITEM_ID: tf.io.FixedLenFeature([], tf.string)}
    parsed = (tf.data.TFRecordDataset(input_fn.split_files(data.directory, "train"))
              .map(lambda r: tf.io.parse_single_example(r, spec), num_parallel_calls=tf.data.AUTOTUNE).cache())
    # One pass fills the cache: the timed steps are the tutorial's steady state from the second epoch on,
    # and no background parsing spills into another contender's timed steps.
    for _ in parsed.batch(65_536):
        pass
    ds = parsed.shuffle(10_000, seed=seed).repeat().batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return Contender(IdsOnlyModel(data.user_vocabulary(), data.item_vocabulary()), ds, tf.keras.optimizers.Adam(1e-3))


def _project(data: PreparedData, backbone: str, gate: str, batch_size: int, seed: int,
             in_memory: in_memory_lib.InMemorySplit | None, projection_dim: int | None = None,
             overrides: dict | None = None) -> Contender:
    tf.keras.utils.set_random_seed(seed)
    config = config_lib.resolve(overrides={**(overrides or {}), "model.backbone": backbone, "regularizer.gate": gate})
    model_config = config.model
    if projection_dim:
        model_config = dataclasses.replace(model_config,
                                           dcn=dataclasses.replace(model_config.dcn, projection_dim=projection_dim))
    model = build_model(model_config, data, config.regularizer)
    ds = input_fn.make_dataset(data.directory, "train", batch_size=batch_size, shuffle=True, seed=seed,
                               include_training_only=config.regularizer.uses_teacher, repeat=True,
                               drop_remainder=True, in_memory=in_memory)
    return Contender(model, ds, make_optimizer(1e-3))


def _load() -> float:
    return os.getloadavg()[0]


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prepared", required=True, help="prepared folder (with teacher labels for gated modes)")
    p.add_argument("--backbone", choices=BACKBONES, default="two_tower")
    p.add_argument("--gates", nargs="*", choices=[g for g in GATE_MODES if g != "none"], default=["reliability"])
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=7, help="rounds; every contender runs --steps steps per round")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (tracing, pipeline fill)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dcn-projection-dim", type=int, nargs="*", default=[],
                   help="with --backbone dcn: also time `none` with low-rank cross layers of these ranks")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="TrainConfig override for the --gates contenders, e.g. regularizer.budget=256")
    p.add_argument("--no-ids-only", action="store_true", help="leave out the ids-only reference")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)

    data = PreparedData(args.prepared)
    spec = schema.Schema.load(args.prepared)
    roles = (schema.ROLE_SERVING, schema.ROLE_EXAMPLE, schema.ROLE_TRAINING_ONLY)
    records = sum(len(u.train_items) for u in data.users())
    fits = (in_memory_lib.estimate_bytes(spec, roles, records) <= TrainConfig().in_memory_max_mb * 2**20)
    cached = in_memory_lib.InMemorySplit.load(args.prepared, "train", roles) if fits else None

    contenders = {}
    if args.backbone == "two_tower" and not args.no_ids_only:
        contenders[IDS_ONLY] = _ids_only(data, args.batch_size, args.seed)
    contenders["none"] = _project(data, args.backbone, "none", args.batch_size, args.seed, cached)
    contenders[AA] = _project(data, args.backbone, "none", args.batch_size, args.seed, cached)
    overrides = config_lib.parse_sets(args.set)
    for gate in args.gates:
        contenders[gate] = _project(data, args.backbone, gate, args.batch_size, args.seed, cached, overrides=overrides)
    for rank in args.dcn_projection_dim if args.backbone == "dcn" else ():
        contenders[f"none rank {rank}"] = _project(data, args.backbone, "none", args.batch_size, args.seed, cached,
                                                   projection_dim=rank)

    for c in contenders.values():
        c.run(args.warmup, record=False)
    load_before = _load()
    order = list(contenders.values())
    for r in range(args.rounds):
        # Each round starts with another contender, and a pause lets the previous contender's tf.data
        # prefetching finish, so no contender's input work is paid inside another's timed steps.
        for c in order[r % len(order):] + order[:r % len(order)]:
            time.sleep(PAUSE_SECONDS)
            c.run(args.steps)
    load_after = _load()

    wall = {name: statistics.median(c.wall) for name, c in contenders.items()}
    cpu = {name: statistics.median(c.cpu) for name, c in contenders.items()}
    rows = [{"contender": name, "step_ms": 1000 * wall[name], "cpu_ms_per_step": 1000 * cpu[name],
             "examples_per_second": args.batch_size / wall[name], "ratio_to_none": wall[name] / wall["none"]}
            for name in contenders]
    devices = ", ".join(d.name for d in tf.config.list_physical_devices())
    print(f"{args.backbone}, batch {args.batch_size}, {records} training records "
          f"({'in memory' if cached else 'streamed'}), median of {args.rounds} interleaved rounds of "
          f"{args.steps} steps, {devices}; load average {load_before:.2f} before, {load_after:.2f} after")
    print(f"{'contender':<14}{'step ms':>10}{'CPU ms':>10}{'examples/s':>12}{'x none':>8}")
    for r in rows:
        print(f"{r['contender']:<14}{r['step_ms']:>10.1f}{r['cpu_ms_per_step']:>10.1f}"
              f"{r['examples_per_second']:>12.0f}{r['ratio_to_none']:>8.2f}")

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"
    aa = wall[AA] / wall["none"]
    print(f"A/A: none (A/A) / none = {aa:.3f} (trusted within {AA_RANGE[0]}-{AA_RANGE[1]}): "
          f"{'trusted' if AA_RANGE[0] <= aa <= AA_RANGE[1] else 'NOT trusted, rerun on a quieter machine'}")
    if IDS_ONLY in wall:
        ratio = wall[IDS_ONLY] / wall["none"]
        print(f"none examples/s / ids-only examples/s = {ratio:.2f} (target >= {TARGET_NONE_VS_IDS_ONLY}): "
              f"{verdict(ratio >= TARGET_NONE_VS_IDS_ONLY)}")
    for gate in args.gates:
        ratio = wall[gate] / wall["none"]
        target = TARGET_GATED[args.backbone]
        print(f"{gate} / none step time = {ratio:.2f} (target <= {target}): {verdict(ratio <= target)}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"backbone": args.backbone, "batch_size": args.batch_size, "devices": devices,
                       "load_average": [load_before, load_after], "aa_ratio": aa, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
