"""Parsing a training split: string ids (as ``prepare`` writes them) against the same records with int64 indices.

    python benchmarks/bench_parse.py --work DIR [--users 12000 --items 3000] [--records 200000] [--rounds 9]

Decides whether ``prepare`` should write vocabulary indices next to the string ids. On a synthetic
prepared folder (``tests.synthetic.make_prepared``; every feature of every role), in interleaved rounds:

- ``tf.io.parse_example`` of the first ``--records`` training records as written, against the same
  records re-written with every string feature (``user_id``, ``history``, ``item_id``, the teacher and
  probe items) as int64 vocabulary indices: what indices in the files would save on the parse;
- ``InMemorySplit.load`` of the whole split (parse, ``StringLookup`` of every id, concatenation) against
  the parse alone: what the lookups cost.

Each round's figures and the medians over rounds are printed, with the 1-minute load average before and
after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

# isort: off
import tfrs_selreg  # noqa: F401  (first: sets TF_USE_LEGACY_KERAS before TensorFlow loads)
# isort: on

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import synthetic  # noqa: E402
from tfrs_selreg.data import input_fn, schema  # noqa: E402
from tfrs_selreg.data.in_memory import InMemorySplit  # noqa: E402

ROLES = (schema.ROLE_SERVING, schema.ROLE_EXAMPLE, schema.ROLE_TRAINING_ONLY)


def _parse_seconds(files: list[str], features: dict, records: int | None) -> float:
    start = time.perf_counter()
    ds = tf.data.TFRecordDataset(files)
    if records is not None:
        ds = ds.take(records)
    ds = ds.batch(8192).map(lambda r: tf.io.parse_example(r, features), num_parallel_calls=tf.data.AUTOTUNE)
    for batch in ds.prefetch(tf.data.AUTOTUNE):
        for value in batch.values():
            value.numpy()
    return time.perf_counter() - start


def _write_indices(split: InMemorySplit, strings: list[str], path: str) -> None:
    """The split's records with the string features as the int64 indices the lookups gave."""
    columns = {name: column.numpy() for name, column in split.columns.items()}
    with tf.io.TFRecordWriter(path) as writer:
        for row in range(split.num_records):
            feature = {}
            for name, column in columns.items():
                value = np.atleast_1d(column[row])
                feature[name] = (tf.train.Feature(float_list=tf.train.FloatList(value=value))
                                 if value.dtype == np.float32 and name not in strings else
                                 tf.train.Feature(int64_list=tf.train.Int64List(value=value.astype(np.int64))))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True)
    p.add_argument("--users", type=int, default=12_000)
    p.add_argument("--items", type=int, default=3_000)
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    folder = os.path.join(args.work, "prepared")
    if not os.path.exists(os.path.join(folder, schema.SCHEMA_FILE)):
        synthetic.make_prepared(folder, n_users=args.users, n_items=args.items, min_history=40, max_history=120)
    spec = schema.Schema.load(folder)
    features = input_fn.feature_spec(spec, ROLES)
    strings = [name for name, f in features.items() if f.dtype == tf.string]
    as_indices = {name: (tf.io.FixedLenFeature(f.shape, tf.int64, default_value=0 if not f.shape else [0] * f.shape[0])
                         if name in strings else f) for name, f in features.items()}
    files = input_fn.split_files(folder, "train")
    indices_file = os.path.join(args.work, f"indices-{args.records}.tfrecord")
    if not os.path.exists(indices_file):
        _write_indices(InMemorySplit.load(folder, "train", ROLES, max_records=args.records), strings, indices_file)
    _parse_seconds(files, features, args.records)  # warm the page cache
    times: dict[str, list[float]] = {"strings": [], "indices": [], "load": [], "parse": []}
    for r in range(args.rounds):
        s = _parse_seconds(files, features, args.records)
        i = _parse_seconds([indices_file], as_indices, args.records)
        start = time.perf_counter()
        split = InMemorySplit.load(folder, "train", ROLES)
        load = time.perf_counter() - start
        whole = _parse_seconds(files, features, None)
        for key, value in zip(times, (s, i, load, whole)):
            times[key].append(value)
        print(f"round {r}: {args.records:,} records: strings {s:.2f} s, int64 indices {i:.2f} s ({i / s:.2f}x); "
              f"whole split ({split.num_records:,} records): InMemorySplit.load {load:.2f} s, parse alone "
              f"{whole:.2f} s (lookups and concatenation {load - whole:+.2f} s)", flush=True)
    m = {key: statistics.median(values) for key, values in times.items()}
    print(f"median of {args.rounds} rounds: strings {m['strings']:.2f} s, int64 indices {m['indices']:.2f} s "
          f"({m['indices'] / m['strings']:.2f}x); InMemorySplit.load {m['load']:.2f} s, parse alone {m['parse']:.2f} s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
