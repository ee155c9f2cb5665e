"""Serving latency of exported SavedModels: ``none`` against ``reliability``, and against catalog size.

    python -m benchmarks.bench_serving [--run-none RUN --run-reliability RUN] [--backbone two_tower]
        [--catalogs ml-latest-small ml-1m synthetic-100k] [--prepared NAME=DIR ...] [--requests 3000]
        [--sweep-requests 500] [--workdir DIR] [--json FILE]

S-LLMR promises no inference cost: the regularizer and its gate are training-only, so a ``reliability``
export must serve as fast as a ``none`` export of the same backbone (target: p50 and p99 ratio within
1.00 +/- 0.05). Both are exported with ``tfrs-selreg export`` (``k`` = 100, history excluded), loaded
with ``tf.saved_model.load`` in this process, and ``serving_default`` is timed per request (inputs ready
as tensors, reply copied to NumPy) at batch 1 and 64. A second copy of the ``none`` export, loaded
separately and timed the same way, is the A/A control: its ratio to the first is the noise floor.
Without ``--run-none``/``--run-reliability`` both are trained for a few steps on a synthetic folder of
3,706 items (ML-1M's rated catalog) with an oracle teacher. The serving graph does not depend on how
long a model trained, only on its shapes.

For the two-tower backbone the ``none`` run is also exported with ``--fusion`` (the model fused with
the embedding teacher, :mod:`tfrs_selreg.export.fused`) and timed in the same loop: its ratio to the
plain export is the serving cost of the fusion (printed, no target). Without item embeddings in the
prepared folder, 384-dimensional random unit vectors (all-MiniLM-L6-v2's size) stand in: the graph's
cost depends on shapes only.

Latency against catalog size uses one ``none`` model per catalog, trained for a few steps: the bundled
ml-latest-small (9,742 items) and ML-1M (3,883 items, when ``../shared/data/ml-1m`` exists), both
prepared by ``beam_pipelines.prepare`` with the DirectRunner unless ``--prepared NAME=DIR`` gives the
folder, and a synthetic 100,000-item catalog: the ml-latest-small folder with never-interacted items
appended to its catalog (titles and genres drawn from the real ones), so that users, histories and
training stay real while the top-k runs over 100,000 items.

Run it from the repository root (it imports ``tests.synthetic``). The machine may be shared and
loaded: all models are measured in the same loop, taking turns request by request in a random order,
so load drift hits them alike; the load average is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Optional

import numpy as np
import tensorflow as tf

import tfrs_selreg  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from beam_pipelines import prepare
from tests.synthetic import make_prepared
from tfrs_selreg.data import item_embeddings, schema
from tfrs_selreg.data.prepared import ITEMS_FILE, ITEMS_VOCAB, STATS_FILE, PreparedData
from tfrs_selreg.export import exporter, fused
from tfrs_selreg.export import signatures as sig
from tfrs_selreg.models import BACKBONES
from tfrs_selreg.runs import config as config_lib
from tfrs_selreg.runs import folder as run_lib
from tfrs_selreg.training.train import train

HERE = os.path.dirname(os.path.abspath(__file__))
ML_1M = os.path.join(HERE, "..", "..", "shared", "data", "ml-1m")
CATALOGS = ("ml-latest-small", "ml-1m", "synthetic-100k")
BATCH_SIZES = (1, 64)
K = 100
TOLERANCE = 0.05
CONTROL = "none-again"
FUSED = "fused"
TEXT_DIM = 384
# Distinct request batches per batch size, cycled, so that no request is a cache hit of the previous one.
DISTINCT_BATCHES = 8


def quick_run(prepared: str, output: str, backbone: str, gate: str, steps: int = 10) -> str:
    """A run folder trained for ``steps`` steps of one epoch (paper defaults otherwise)."""
    train(config_lib.resolve(overrides={
        "prepared": prepared, "output": output, "epochs": 1, "steps_per_epoch": steps,
        "model.backbone": backbone, "regularizer.gate": gate, "validation_max_users": 20}), verbose=0,
        overwrite=True)
    return output


def pad_catalog(source: str, output: str, n_items: int, seed: int = 0) -> str:
    """A copy of the prepared folder ``source`` whose catalog is padded to ``n_items`` items.

    The extra items have no interaction (popularity 0, long-tail) and titles and categories drawn from
    the real items', so item features cost what real ones do; the TFRecords are unchanged.
    """
    shutil.rmtree(output, ignore_errors=True)
    shutil.copytree(source, output)
    data = PreparedData(output)
    real = data.items()
    rng = np.random.default_rng(seed)
    words = sorted({w for item in real for w in item.title.split()})
    categories = sorted({c for item in real for c in item.categories})
    extra = [f"synthetic{i:06d}" for i in range(n_items - len(real))]
    with open(os.path.join(output, ITEMS_VOCAB), "a", encoding="utf-8") as f:
        f.writelines(f"{item_id}\n" for item_id in extra)
    with open(os.path.join(output, ITEMS_FILE), "a", encoding="utf-8") as f:
        for item_id in extra:
            f.write(json.dumps({
                "item_id": item_id, "title": " ".join(rng.choice(words, size=4)),
                "categories": sorted(set(rng.choice(categories, size=2))), "popularity": 0, "long_tail": True,
            }) + "\n")
    stats = dataclasses.replace(data.stats(), items=n_items)
    with open(os.path.join(output, STATS_FILE), "w", encoding="utf-8") as f:
        f.write(stats.to_text())
    return output


def prepare_catalog(name: str, output: str) -> str:
    """A prepared folder for catalog ``name`` (Beam DirectRunner for the MovieLens sets)."""
    argv = ["--dataset", name, "--output", output, "--runner", "DirectRunner"]
    if name == "ml-1m":
        argv += ["--data-dir", ML_1M]
    prepare.run(argv)
    return output


def request_batches(prepared: str, batch_size: int) -> list[dict[str, tf.Tensor]]:
    """``serving_default`` inputs: real users with their last ``L`` training items, left-padded."""
    L = schema.Schema.load(prepared).history_length
    users = PreparedData(prepared).users()
    batches = []
    for b in range(DISTINCT_BATCHES):
        rows = [users[(b * batch_size + r) % len(users)] for r in range(batch_size)]
        history = [[""] * (L - len(u.train_items[-L:])) + list(u.train_items[-L:]) for u in rows]
        batches.append({schema.USER_ID: tf.constant([u.user_id for u in rows]), schema.HISTORY: tf.constant(history)})
    return batches


def interleaved_latency(endpoints: dict[str, tuple], requests: int, warmup: int, seed: int) -> dict[str, np.ndarray]:
    """Seconds per request of every endpoint ``{name: (signature, batches)}``, taking turns in random order."""
    rng = np.random.default_rng(seed)
    names = list(endpoints)
    seconds = {name: np.zeros(requests) for name in names}
    for step in range(-warmup, requests):
        for name in rng.permutation(names):
            function, batches = endpoints[name]
            batch = batches[step % len(batches)]
            start = time.perf_counter()
            function(**batch)[sig.SCORES].numpy()
            if step >= 0:
                seconds[name][step] = time.perf_counter() - start
    return seconds


def percentiles(seconds: np.ndarray) -> dict[str, float]:
    return {"p50_ms": 1000 * float(np.percentile(seconds, 50)), "p99_ms": 1000 * float(np.percentile(seconds, 99))}


def export(run: str, base: str, name: str) -> str:
    return exporter.export(exporter.ExportConfig(run=run, model_name=name, base=base, k=K))


def fused_export(run: str, base: str, name: str, work: str) -> str:
    """``run`` exported with ``--fusion`` (equal betas); gives its prepared folder text vectors if it has none."""
    prepared = config_lib.load(os.path.join(run, run_lib.CONFIG_FILE)).prepared
    if not item_embeddings.exists(prepared):
        vocabulary = PreparedData(prepared).item_vocabulary()
        vectors = np.random.default_rng(0).normal(size=(len(vocabulary), TEXT_DIM)).astype(np.float32)
        item_embeddings.write(prepared, vocabulary, vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
                              teacher="benchmark", model=f"random unit vectors ({TEXT_DIM})")
    weights = os.path.join(work, "fusion-weights.json")
    with open(weights, "w", encoding="utf-8") as f:
        json.dump({"fused_run": run, fused.FUSION_KEY: {"betas": [0.5] * fused.QUARTILES}}, f)
    return exporter.export(exporter.ExportConfig(run=run, model_name=name, base=base, k=K, fusion=weights))


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-none", help="run folder of a gate-none training (default: trained here)")
    p.add_argument("--run-reliability", help="run folder of a gate-reliability training of the same backbone")
    p.add_argument("--backbone", choices=BACKBONES, default="two_tower")
    p.add_argument("--catalogs", nargs="*", choices=CATALOGS, default=list(CATALOGS),
                   help="catalogs of the size sweep (ml-1m is skipped when its folder is absent)")
    p.add_argument("--prepared", action="append", default=[], metavar="NAME=DIR",
                   help="reuse a prepared folder for a catalog of the sweep")
    p.add_argument("--requests", type=int, default=3000,
                   help="timed requests per model and batch size for none vs reliability")
    p.add_argument("--sweep-requests", type=int, default=500,
                   help="timed requests per catalog and batch size for the catalog-size sweep")
    p.add_argument("--warmup", type=int, default=20, help="untimed requests first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", help="keep prepared folders, runs and exports here (default: a temp folder)")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    if bool(args.run_none) != bool(args.run_reliability):
        p.error("--run-none and --run-reliability go together")
    reuse = dict(item.split("=", 1) for item in args.prepared)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or tmp
        base = os.path.join(work, "saved_models")
        setup = time.perf_counter()
        if args.run_none:
            runs = {"none": args.run_none, "reliability": args.run_reliability}
        else:
            folder = make_prepared(os.path.join(work, "synthetic-3706"), n_users=300, n_items=3706, seed=args.seed)
            runs = {gate: quick_run(folder, os.path.join(work, f"run-{gate}"), args.backbone, gate)
                    for gate in ("none", "reliability")}
        pair = {gate: export(run, base, f"{args.backbone}_{gate}") for gate, run in runs.items()}
        if args.backbone == "two_tower":
            pair[FUSED] = fused_export(runs["none"], base, f"{args.backbone}_{FUSED}", work)

        sweep = {}
        for name in args.catalogs:
            if name == "ml-1m" and name not in reuse and not os.path.isdir(ML_1M):
                print(f"ml-1m skipped: {ML_1M} is absent")
                continue
            folder = reuse.get(name)
            if folder is None and name == "synthetic-100k":
                small = reuse.get("ml-latest-small") or os.path.join(work, "prepared-ml-latest-small")
                if not os.path.isdir(small):
                    prepare_catalog("ml-latest-small", small)
                folder = pad_catalog(small, os.path.join(work, f"prepared-{name}"), 100_000)
            elif folder is None:
                folder = prepare_catalog(name, os.path.join(work, f"prepared-{name}"))
            run = quick_run(folder, os.path.join(work, f"run-{name}"), args.backbone, "none")
            sweep[name] = (export(run, base, f"{args.backbone}_{name}"), folder)
        print(f"set-up (prepare, train, export): {time.perf_counter() - setup:.0f} s")

        pair_prepared = config_lib.load(os.path.join(runs["none"], run_lib.CONFIG_FILE)).prepared
        pair_catalog = os.path.basename(os.path.normpath(pair_prepared))
        # A second, separately loaded copy of the none export: the A/A control that shows the noise floor.
        models = [(("pair", gate), path, pair_prepared) for gate, path in pair.items()]
        models.append((("pair", CONTROL), pair["none"], pair_prepared))
        models += [(("catalog", name), path, folder) for name, (path, folder) in sweep.items()]
        endpoints, items = {}, {}
        for label, path, folder in models:
            function = tf.saved_model.load(path).signatures[sig.SERVING_DEFAULT]
            with open(os.path.join(path, "assets.extra", exporter.EXPORT_INFO), encoding="utf-8") as f:
                items[label] = json.load(f)["num_items"]
            for batch_size in BATCH_SIZES:
                endpoints[f"{label[0]}/{label[1]}/{batch_size}"] = (function, request_batches(folder, batch_size))
        load_before = os.getloadavg()
        # Two loops: the ratio needs many requests for a stable p99; the sweep's large catalogs are slow.
        seconds = interleaved_latency({k: v for k, v in endpoints.items() if k.startswith("pair/")},
                                      args.requests, args.warmup, args.seed)
        sweep_endpoints = {k: v for k, v in endpoints.items() if k.startswith(("catalog/", "pair/none/"))}
        sweep_seconds = interleaved_latency(sweep_endpoints, args.sweep_requests, args.warmup, args.seed)
        load_after = os.getloadavg()

    result = {"backbone": args.backbone, "k": K, "requests": args.requests, "sweep_requests": args.sweep_requests,
              "cpus": os.cpu_count(),
              "load_average": [load_before[0], load_after[0]], "pair_catalog": pair_catalog, "pair": {}, "catalogs": {}}
    print(f"{args.backbone}, serving_default top-{K}, interleaved ({args.requests} requests per row for the ratio, "
          f"{args.sweep_requests} for the sweep); "
          f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    print(f"\nnone vs reliability ({pair_catalog}, {items[('pair', 'none')]:,} items)")
    print(f"{'batch':>6}{'none p50':>10}{'rel p50':>10}{'ratio':>8}{'none p99':>10}{'rel p99':>10}{'ratio':>8}"
          f"{'A/A p50':>9}{'A/A p99':>9}")
    within = True
    for batch_size in BATCH_SIZES:
        none, rel, control = (percentiles(seconds[f"pair/{key}/{batch_size}"])
                              for key in ("none", "reliability", CONTROL))
        ratios = {key: rel[key] / none[key] for key in none}
        noise = {key: control[key] / none[key] for key in none}
        within &= all(abs(r - 1.0) <= TOLERANCE for r in ratios.values())
        result["pair"][batch_size] = {"none": none, "reliability": rel, "ratio": ratios, CONTROL: control,
                                      "control_ratio": noise}
        print(f"{batch_size:>6}{none['p50_ms']:>10.3f}{rel['p50_ms']:>10.3f}{ratios['p50_ms']:>8.3f}"
              f"{none['p99_ms']:>10.3f}{rel['p99_ms']:>10.3f}{ratios['p99_ms']:>8.3f}"
              f"{noise['p50_ms']:>9.3f}{noise['p99_ms']:>9.3f}")
    print(f"reliability / none within 1.00 +/- {TOLERANCE}: {'yes' if within else 'NO'} "
          "(A/A: a second copy of the none export against the first, the noise of this machine)")
    result["ratio_within_tolerance"] = within
    if FUSED in pair:
        print(f"\nfused export (--fusion, {TEXT_DIM}-d text vectors) vs none: the serving cost of the fusion")
        print(f"{'batch':>6}{'none p50':>10}{'fused p50':>10}{'ratio':>8}{'none p99':>10}{'fused p99':>10}{'ratio':>8}")
        for batch_size in BATCH_SIZES:
            none, fuse = (percentiles(seconds[f"pair/{key}/{batch_size}"]) for key in ("none", FUSED))
            ratios = {key: fuse[key] / none[key] for key in none}
            result["pair"][batch_size].update({FUSED: fuse, "fused_ratio": ratios})
            print(f"{batch_size:>6}{none['p50_ms']:>10.3f}{fuse['p50_ms']:>10.3f}{ratios['p50_ms']:>8.3f}"
                  f"{none['p99_ms']:>10.3f}{fuse['p99_ms']:>10.3f}{ratios['p99_ms']:>8.3f}")

    if sweep:
        print(f"\nlatency against catalog size (gate none)\n{'catalog':<18}{'items':>9}"
              + "".join(f"{f'b{b} p50':>10}{f'b{b} p99':>10}" for b in BATCH_SIZES))
        rows = [("pair", "none", pair_catalog)] + [("catalog", name, name) for name in sweep]
        for kind, key, label in sorted(rows, key=lambda r: items[(r[0], r[1])]):
            stats = {b: percentiles(sweep_seconds[f"{kind}/{key}/{b}"]) for b in BATCH_SIZES}
            result["catalogs"][label] = {"items": items[(kind, key)], **stats}
            print(f"{label:<18}{items[(kind, key)]:>9,}"
                  + "".join(f"{stats[b]['p50_ms']:>10.3f}{stats[b]['p99_ms']:>10.3f}" for b in BATCH_SIZES))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
