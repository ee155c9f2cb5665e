"""Step time of ``examples/own_tfrs_model.py`` with S-LLMR against the same model without, in one run.

    python benchmarks/bench_own_model.py --prepared out/ml-small --labels out/labels [--batch-size 1024]

Three contenders on the bundled MovieLens ratings (``--data-dir``), each with its own model and iterator
(``bench_train.Contender``): the tutorial's model alone, the same again (the A/A control), and the model
with ``TeacherPairs`` and ``SelectiveLLMRegularization`` (the labels ``score`` wrote for ``--prepared``).
Interleaved rounds, each starting with another contender; median wall and CPU time per step; the load
average before and after. Target: with / without <= 1.2, A/A within 0.95-1.05. Also the cost of the
lookup alone: ``TeacherPairs`` on one batch of user ids, and its memory.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

# isort: off
import tfrs_selreg  # noqa: F401  (first: sets TF_USE_LEGACY_KERAS before TensorFlow loads)
# isort: on
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_train import AA_RANGE, PAUSE_SECONDS, Contender  # noqa: E402

TARGET = 1.2
WITHOUT, AA, WITH = "without", "without (A/A)", "with S-LLMR"


def _example():
    path = os.path.join(os.path.dirname(HERE), "examples", "own_tfrs_model.py")
    spec = importlib.util.spec_from_file_location("own_tfrs_model", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    example = _example()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=example.bundled_data_dir())
    p.add_argument("--prepared", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args(argv)

    ratings, movies, title_of = example.load_movielens(args.data_dir)
    for _ in ratings.batch(65_536):
        pass  # fills the cache: no contender pays the csv parse in its timed steps
    dataset = ratings.shuffle(100_000, seed=0).repeat().batch(args.batch_size, drop_remainder=True)
    contenders, pairs = {}, None
    for name in (WITHOUT, AA, WITH):
        tf.keras.utils.set_random_seed(0)
        model, teacher_pairs = example.build(ratings, movies, title_of, prepared=args.prepared,
                                             labels=args.labels if name == WITH else None)
        if teacher_pairs is not None:
            pairs = teacher_pairs
        batches = dataset if pairs is None or name != WITH else example.with_teacher_pairs(dataset, pairs)
        # Every contender prefetches: tf.data overlaps the input work with the step alike.
        contenders[name] = Contender(model, batches.prefetch(2), tf.keras.optimizers.Adagrad(0.5))
    for c in contenders.values():
        c.run(args.warmup, record=False)
    load_before = os.getloadavg()[0]
    order = list(contenders.values())
    for r in range(args.rounds):
        for c in order[r % len(order):] + order[:r % len(order)]:
            time.sleep(PAUSE_SECONDS)
            c.run(args.steps)
    load_after = os.getloadavg()[0]
    wall = {n: statistics.median(c.wall) for n, c in contenders.items()}
    cpu = {n: statistics.median(c.cpu) for n, c in contenders.items()}
    print(f"examples/own_tfrs_model.py, batch {args.batch_size}, median of {args.rounds} interleaved rounds of "
          f"{args.steps} steps; load average {load_before:.2f} before, {load_after:.2f} after")
    print(f"{'contender':<16}{'step ms':>10}{'CPU ms':>10}{'examples/s':>12}{'x without':>11}")
    for n in contenders:
        print(f"{n:<16}{1000 * wall[n]:>10.1f}{1000 * cpu[n]:>10.1f}{args.batch_size / wall[n]:>12.0f}"
              f"{wall[n] / wall[WITHOUT]:>11.2f}")
    aa, ratio = wall[AA] / wall[WITHOUT], wall[WITH] / wall[WITHOUT]
    print(f"A/A = {aa:.3f} ({'trusted' if AA_RANGE[0] <= aa <= AA_RANGE[1] else 'NOT trusted: rerun when quiet'}); "
          f"with / without = {ratio:.2f} (target <= {TARGET}): {'met' if ratio <= TARGET else 'NOT met'}")

    users = tf.constant([str(1 + k % 610) for k in range(args.batch_size)])
    lookup = tf.function(lambda ids, salt: pairs(ids, salt=salt))
    lookup(users, tf.constant(0, tf.int64))
    start = time.perf_counter()
    for salt in range(50):
        lookup(users, tf.constant(salt, tf.int64))  # a tensor: one trace for every salt
    print(f"TeacherPairs: {pairs.num_users} users, {pairs.memory_bytes() / 2**20:.1f} MiB of arrays; one lookup of "
          f"{args.batch_size} users {1000 * (time.perf_counter() - start) / 50:.2f} ms")
    _million_users(args.batch_size)
    return 0


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _million_users(batch_size: int, users: int = 1_000_000, per_user: int = 20) -> None:
    """TeacherPairs over 1M users x 20 teacher pairs (+ 4 probes), from arrays: memory and lookup time."""
    import numpy as np

    from tfrs_selreg.tasks import TeacherPairs

    rng = np.random.default_rng(0)
    before = _rss_mb()
    start = time.perf_counter()

    def table(n: int, probes: bool):
        rows = users * n
        columns = {"item_i": rng.integers(0, 100_000, rows, dtype=np.int32),
                   "item_j": rng.integers(0, 100_000, rows, dtype=np.int32),
                   "pref": rng.random(rows, dtype=np.float32), "confidence": rng.random(rows, dtype=np.float32)}
        if probes:
            columns["truth"] = np.ones(rows, np.float32)
        return np.arange(users + 1, dtype=np.int64) * n, columns
    pairs = TeacherPairs([f"i{k}" for k in range(100_000)], [f"u{k}" for k in range(users)],
                         rng.integers(1, 200, users), table(per_user, False), table(4, True))
    built = time.perf_counter() - start
    ids = tf.constant([f"u{k}" for k in rng.integers(0, users, batch_size)])
    lookup = tf.function(lambda ids, salt: pairs(ids, salt=salt))
    lookup(ids, tf.constant(0, tf.int64))
    start = time.perf_counter()
    for salt in range(50):
        lookup(ids, tf.constant(salt, tf.int64))
    print(f"TeacherPairs, {users:,} users x {per_user} pairs + 4 probes: {pairs.memory_bytes() / 2**30:.2f} GiB of "
          f"arrays, process RSS +{(_rss_mb() - before) / 1024:.2f} GiB (ids, hash table and arrays), built in "
          f"{built:.0f} s; one lookup of {batch_size} users {1000 * (time.perf_counter() - start) / 50:.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
