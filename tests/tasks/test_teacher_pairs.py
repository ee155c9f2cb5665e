"""TeacherPairs against prepare --labels: the same pairs for a user's k-th record, padding and unknown users."""

import numpy as np
import pytest
import tensorflow as tf

from tests.beam.test_prepare import _feature, _labels, _records, _run, _write_csv
from tfrs_selreg.data import pair_sampling, schema
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.tasks import TeacherPairs

PAIR_FEATURES = (schema.TEACHER_ITEM_I, schema.TEACHER_ITEM_J, schema.TEACHER_PREF, schema.TEACHER_CONFIDENCE,
                 schema.TEACHER_MASK, schema.PROBE_ITEM_I, schema.PROBE_ITEM_J, schema.PROBE_PREF,
                 schema.PROBE_CONFIDENCE, schema.PROBE_TRUTH, schema.PROBE_MASK, schema.HISTORY_LENGTH)


def _rows():
    """u1 (train i1-i4, val i5, test i6): 6 teacher rows and 3 probes, more than P = 2 and Q = 1; u2 one
    pair; rows prepare rejects: leakage, unknown item, unknown user, out of range, malformed."""
    items = ["i7", "i8", "i9", "i10", "i1", "i3"]
    rows = [{"user_id": "u1", "item_i": a, "item_j": b, "pref": p, "teacher": "t"}
            for a, b, p in zip(items, items[1:] + items[:1], (0.9, 0.2, 0.7, 0.4, 0.6, 0.95))]
    rows += [{"user_id": "u1", "item_i": a, "item_j": "i9", "pref": p, "kind": "probe", "truth": t}
             for a, p, t in (("i2", 0.8, 1), ("i4", 0.3, 1), ("i3", 0.6, 1))]
    rows += [{"user_id": "u2", "item_i": "i8", "item_j": "i9", "pref": 0.6, "confidence": 0.9},
             {"user_id": "u1", "item_i": "i5", "item_j": "i9", "pref": 0.9},
             {"user_id": "u1", "item_i": "i99", "item_j": "i9", "pref": 0.5},
             {"user_id": "nobody", "item_i": "i1", "item_j": "i9", "pref": 0.5},
             {"user_id": "u2", "item_i": "i3", "item_j": "i9", "pref": 1.5}]
    return rows


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    root = tmp_path_factory.mktemp("joined")
    labels = _labels(root / "labels.jsonl", _rows())
    with open(labels, "a") as f:
        f.write("{not json\n")
    out = root / "out"
    stats = _run(_write_csv(root / "raw"), out, "--labels", labels, "--max-error-fraction", "0.5", "--seed", "3")
    return labels, str(out), stats


def test_the_pairs_of_record_k_are_prepares(joined):
    labels, out, stats = joined
    pairs = TeacherPairs.from_folders(labels, out)
    assert (pairs.teacher_pairs, pairs.probe_pairs, pairs.seed) == (2, 1, 3)  # from prepare_config.json
    assert pairs.join_counts == {
        "joined_probe": stats.labels.joined_probe_rows, "joined_teacher": stats.labels.joined_teacher_rows,
        **{f"rejected_{reason}": n for reason, n in stats.labels.rejected.items()}}
    users = {u.user_id: u for u in PreparedData(out).users()}
    sampled = set()
    for record in _records(out, "train"):
        user, item = _feature(record, schema.USER_ID)[0], _feature(record, schema.ITEM_ID)[0]
        got = pairs(tf.constant([user]), salt=users[user].train_items.index(item))
        for name in PAIR_FEATURES:
            values = got[name].numpy().reshape(-1).tolist()
            values = [v.decode() if isinstance(v, bytes) else v for v in values]
            assert values == pytest.approx(_feature(record, name)), (user, item, name)
        if user == "u1":
            sampled.add(tuple(got[schema.TEACHER_ITEM_I].numpy()[0]))
    assert len(sampled) > 1  # u1's records carry different samples of its six rows


def test_unknown_users_get_no_pairs_and_the_step_advances(joined):
    labels, out, _ = joined
    pairs = TeacherPairs.from_folders(labels, out)
    got = pairs(tf.constant(["nobody", "u1", "u4"]))
    assert got[schema.TEACHER_MASK].numpy().tolist() == [[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    assert got[schema.TEACHER_ITEM_I].numpy()[0].tolist() == [b"", b""]
    assert got[schema.HISTORY_LENGTH].numpy().tolist() == [0, 4, 1]
    first = pairs(tf.constant(["u1"]), training=True)
    second = pairs(tf.constant(["u1"]), training=True)
    assert int(pairs.step.numpy()) == 2
    for salt, result in ((0, first), (1, second)):
        np.testing.assert_array_equal(result[schema.TEACHER_ITEM_I], pairs(tf.constant(["u1"]), salt=salt)[
            schema.TEACHER_ITEM_I])


def test_the_memory_is_the_stated_bytes_per_user_and_pair():
    """100k users x 20 pairs here; benchmarks/bench_own_model.py builds 1M."""
    users, per_user = 100_000, 20
    offsets = np.arange(users + 1, dtype=np.int64) * per_user
    rows = users * per_user
    columns = {"item_i": np.zeros(rows, np.int32), "item_j": np.ones(rows, np.int32),
               "pref": np.full(rows, 0.9, np.float32), "confidence": np.full(rows, 0.8, np.float32)}
    no_probes = {**{k: v[:0] for k, v in columns.items()}, "truth": np.zeros(0, np.float32)}
    probes = (np.zeros(users + 1, np.int64), no_probes)
    pairs = TeacherPairs(["a", "b"], [f"u{k}" for k in range(users)], np.ones(users, np.int64), (offsets, columns),
                         probes, teacher_pairs=8, probe_pairs=4)
    assert pairs.memory_bytes() == 64 * users + 56 + 16 * (rows + 1) + 20  # the padding rows and user
    got = pairs(tf.constant(["u0", "u99999"]), salt=5)
    assert got[schema.TEACHER_MASK].numpy().sum() == 16
    assert pair_sampling.user_key("u0") != pair_sampling.user_key("u99999")


def test_item_indices_name_the_same_items(joined):
    labels, out, _ = joined
    by_id = TeacherPairs.from_folders(labels, out)
    by_index = TeacherPairs.from_folders(labels, out, item_index=True)
    vocabulary = np.array([""] + PreparedData(out).item_vocabulary(), object)
    users = tf.constant(["u1", "nobody", "u2"])
    ids, indices = by_id(users, salt=2), by_index(users, salt=2)
    for name in (schema.TEACHER_ITEM_I, schema.TEACHER_ITEM_J, schema.PROBE_ITEM_I, schema.PROBE_ITEM_J):
        assert indices[name].dtype == tf.int64
        assert vocabulary[indices[name].numpy()].tolist() == ids[name].numpy().astype(str).tolist()
