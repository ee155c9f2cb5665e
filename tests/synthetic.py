"""Small synthetic prepared folders with a known ground truth, for fast tests and benchmarks.

:func:`make_prepared` writes a folder in the layout of ``tfrs_selreg.data.prepared`` (TFRecords in the
schema of ``tfrs_selreg.data.schema``, built with ``tfrs_selreg.data.examples.make_example``) from a
generative model whose truth is known, so that tests can check learning and gate behaviour:

- items belong to one of ``n_clusters`` clusters; an item's title words and category name its cluster
  (so content features carry signal) and item weights follow a Zipf law (so popularity is skewed);
- each user likes one cluster: interactions are drawn with probability proportional to the item's
  weight, times ``affinity_boost`` inside the user's cluster;
- a ``cold_start_fraction`` of users keeps 1 to ``cold_start_max_history`` training items;
- split leave-last-out (the last item is test, the one before validation);
- teacher pairs oppose an item of the user's cluster to one outside it; probe pairs oppose a training
  item of the user (the known positive) to an item the user never interacted with, drawn like the
  candidates of teacher pairs (a popular pool mixed with uniform draws).

Teachers (``teacher=``): ``oracle`` orders every pair by the truth (``pref`` 0.9 towards the truth),
``random`` gives ``pref ~ U(0, 1)``, ``cold_oracle`` is the oracle on cold-start users and random
elsewhere. Pairs never contain the user's validation or test items.

Run ``python -m tests.synthetic OUT`` (from the repository root) to write a folder for
``benchmarks/bench_train.py``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from tfrs_selreg.data import examples, prepared, schema, splitting
from tfrs_selreg.data.labels import LabelPair
from tfrs_selreg.data.prepare_stats import LabelJoin, PrepareStats, Thresholds

TEACHERS = ("oracle", "random", "cold_oracle")
CLUSTER_NAMES = ("Action", "Comedy", "Drama", "Horror", "Science", "Travel", "Music", "Sport")


def make_prepared(
    directory: str,
    *,
    n_users: int = 60,
    n_items: int = 120,
    seed: int = 0,
    teacher: str = "oracle",
    n_clusters: int = 4,
    cold_start_fraction: float = 0.25,
    cold_start_max_history: int = 3,
    long_tail_fraction: float = 0.2,
    min_history: int = 6,
    max_history: int = 20,
    affinity_boost: float = 8.0,
    history_length: int = 10,
    teacher_pairs: int = 8,
    probe_pairs: int = 4,
    train_shards: int = 2,
) -> str:
    """Writes a synthetic prepared folder to ``directory`` and returns it.

    Every list in the users file and every record is a deterministic function of the arguments.
    """
    if teacher not in TEACHERS:
        raise ValueError(f"teacher must be one of {TEACHERS}, got {teacher!r}")
    if n_clusters > len(CLUSTER_NAMES):
        raise ValueError(f"n_clusters must be <= {len(CLUSTER_NAMES)}")
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(directory, "vocab"), exist_ok=True)

    raw_items = [f"item{i:04d}" for i in range(n_items)]
    item_cluster = rng.integers(0, n_clusters, size=n_items)
    item_weight = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.8
    user_ids = [f"user{u:04d}" for u in range(n_users)]
    user_cluster = rng.integers(0, n_clusters, size=n_users)

    sequences = {}
    for u, user_id in enumerate(user_ids):
        cold = rng.random() < cold_start_fraction
        n_train = int(rng.integers(1, cold_start_max_history + 1) if cold
                      else rng.integers(min_history, max_history + 1))
        p = item_weight * np.where(item_cluster == user_cluster[u], affinity_boost, 1.0)
        chosen = rng.choice(n_items, size=n_train + 2, replace=False, p=p / p.sum())
        sequences[user_id] = [raw_items[i] for i in chosen]

    popularity = {item: 0 for item in raw_items}
    for seq in sequences.values():
        for item in seq[:-2]:
            popularity[item] += 1
    tail_items, tail_max_popularity = splitting.long_tail_items(popularity, long_tail_fraction)
    catalog = splitting.catalog_order(popularity)
    cluster_of = dict(zip(raw_items, item_cluster))

    users = []
    for u, user_id in enumerate(user_ids):
        seq = sequences[user_id]
        train = seq[:-2]
        users.append({
            "user_id": user_id, "train_items": train, "val_items": [seq[-2]], "test_items": [seq[-1]],
            "history_length": len(train), "cold_start": len(train) <= cold_start_max_history,
            "cluster": int(user_cluster[u]),
        })

    spec = schema.build_schema(history_length, teacher_pairs, probe_pairs)
    spec.save(directory)
    _write_lines(os.path.join(directory, prepared.USERS_VOCAB), sorted(user_ids))
    _write_lines(os.path.join(directory, prepared.ITEMS_VOCAB), catalog)
    words = [[f"{CLUSTER_NAMES[c].lower()}{k}" for k in range(6)] for c in range(n_clusters)]
    with open(os.path.join(directory, prepared.ITEMS_FILE), "w", encoding="utf-8") as f:
        for item in catalog:
            c = int(cluster_of[item])
            title = " ".join(rng.choice(words[c], size=2, replace=False)) + f" {item}"
            f.write(prepared.Item(item, title=title.title(), categories=(CLUSTER_NAMES[c],),
                                  popularity=popularity[item], long_tail=item in tail_items).to_json() + "\n")
    with open(os.path.join(directory, prepared.users_shard_name(0, 1)), "w", encoding="utf-8") as f:
        f.writelines(prepared.User(row["user_id"], tuple(row["train_items"]), tuple(row["val_items"]),
                                   tuple(row["test_items"]), row["history_length"], row["cold_start"]).to_json()
                     + "\n" for row in users)

    # Index arrays (raw order; the popular pool in catalog order) keep large catalogs fast.
    raw_index = {item: i for i, item in enumerate(raw_items)}
    popular_pool = np.array([raw_index[i] for i in catalog[: max(2, n_items // 5)]])
    records = {split: [] for split in schema.SPLITS}
    joined = {"teacher": 0, "probe": 0}  # pair slots written (prepare counts joined label rows)
    for row in users:
        user_id, train = row["user_id"], row["train_items"]
        oracle = teacher == "oracle" or (teacher == "cold_oracle" and row["cold_start"])
        allowed = np.ones(n_items, bool)
        allowed[[raw_index[i] for i in row["val_items"] + row["test_items"]]] = False
        liked = item_cluster == row["cluster"]
        unseen = allowed.copy()
        unseen[[raw_index[i] for i in train]] = False
        pools = _Pools(raw_items, good=np.flatnonzero(allowed & liked), other=np.flatnonzero(allowed & ~liked),
                       unseen=np.flatnonzero(unseen), unseen_popular=popular_pool[unseen[popular_pool]])
        for position, item in enumerate(train):
            n_pairs = teacher_pairs if position % 3 else teacher_pairs // 2
            pairs = _teacher_pairs(rng, pools, n_pairs, oracle)
            probes = _probe_pairs(rng, train, pools, probe_pairs, oracle)
            joined["teacher"] += len(pairs)
            joined["probe"] += len(probes)
            records["train"].append((user_id, examples.make_example(
                user_id=user_id, item_id=item, history=examples.padded_history(train[:position], history_length),
                timestamp=1_000_000 + 1000 * position, rating=None, history_length=len(train),
                cold_start=row["cold_start"], item_popularity=popularity[item], long_tail=item in tail_items,
                teacher_pairs=pairs, probe_pairs=probes, num_teacher_pairs=teacher_pairs,
                num_probe_pairs=probe_pairs)))
        for split, key in (("val", "val_items"), ("test", "test_items")):
            for offset, item in enumerate(row[key]):
                records[split].append((user_id, examples.make_example(
                    user_id=user_id, item_id=item, history=examples.padded_history(train, history_length),
                    timestamp=1_000_000 + 1000 * (len(train) + offset + (split == "test")), rating=None,
                    history_length=len(train), cold_start=row["cold_start"],
                    item_popularity=popularity[item], long_tail=item in tail_items)))

    import tensorflow as tf
    for split, rows in records.items():
        shards = train_shards if split == "train" else 1
        writers = [tf.io.TFRecordWriter(os.path.join(directory, f"{split}-{s:05d}-of-{shards:05d}.tfrecord"))
                   for s in range(shards)]
        for user_id, record in rows:
            writers[splitting.shard_of(user_id, shards)].write(record)
        for w in writers:
            w.close()

    stats = PrepareStats(
        dataset="synthetic", users=n_users, items=n_items, seed=seed,
        records={split: len(rows) for split, rows in records.items()},
        interactions={split: len(rows) for split, rows in records.items()},
        thresholds=Thresholds(cold_start_max_history=cold_start_max_history, long_tail_fraction=long_tail_fraction,
                              long_tail_max_popularity=tail_max_popularity),
        labels=LabelJoin(joined_teacher_rows=joined["teacher"], joined_probe_rows=joined["probe"]))
    with open(os.path.join(directory, prepared.STATS_FILE), "w", encoding="utf-8") as f:
        f.write(stats.to_text())
    with open(os.path.join(directory, prepared.DATASET_CARD), "w", encoding="utf-8") as f:
        f.write(f"# Synthetic prepared data\n\nWritten by tests/synthetic.py (seed {seed}, teacher {teacher}).\n")
    return directory


class _Pools:
    """One user's candidate items, as indices into ``raw_items`` in raw order (``unseen_popular``: catalog order)."""

    def __init__(self, raw_items, **pools):
        self.raw_items = raw_items
        self.__dict__.update(pools)

    def draw(self, rng, name):
        pool = getattr(self, name)
        return self.raw_items[pool[rng.integers(len(pool))]]


def _teacher_pairs(rng, pools, n, oracle):
    """``n`` rows ``(item_i, item_j, pref, confidence)``, each opposing an item the user likes to another one."""
    rows = []
    for _ in range(n if len(pools.good) and len(pools.other) else 0):
        good, bad = pools.draw(rng, "good"), pools.draw(rng, "other")
        good_first = rng.random() < 0.5
        pref = (0.9 if good_first else 0.1) if oracle else float(rng.random())
        rows.append(LabelPair(good, bad, pref, abs(2 * pref - 1)) if good_first
                    else LabelPair(bad, good, pref, abs(2 * pref - 1)))
    return rows


def _probe_pairs(rng, train, pools, n, oracle):
    """``n`` rows ``(item_i, item_j, pref, confidence, truth)``: a training item against an unseen one."""
    rows = []
    for _ in range(n):
        positive = train[rng.integers(len(train))]
        name = "unseen_popular" if len(pools.unseen_popular) and rng.random() < 0.5 else "unseen"
        negative = pools.draw(rng, name)
        truth = int(rng.random() < 0.5)
        pref = (0.9 if truth else 0.1) if oracle else float(rng.random())
        pair = (positive, negative) if truth else (negative, positive)
        rows.append(LabelPair(*pair, pref, abs(2 * pref - 1), truth))
    return rows


def _write_lines(path: str, lines) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(f"{line}\n" for line in lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic prepared folder.")
    parser.add_argument("output")
    parser.add_argument("--n-users", type=int, default=2000)
    parser.add_argument("--n-items", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher", choices=TEACHERS, default="oracle")
    args = parser.parse_args(argv)
    make_prepared(args.output, n_users=args.n_users, n_items=args.n_items, seed=args.seed, teacher=args.teacher)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
