"""The prepare job end to end with Beam's DirectRunner: records, side files, labels join, bad input."""

import dataclasses
import glob
import json
import os
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf

from beam_pipelines import prepare
from tests.conftest import shared_dataset
from tfrs_selreg.data import prepared, schema
from tfrs_selreg.data.prepare_config import PREPARE_CONFIG_FILE, PrepareConfig
from tfrs_selreg.data.prepared import PreparedData

ITEMS = "item_id,title,categories\n" + "".join(f"i{k},Item {k},G{k % 3}|Common\n" for k in range(1, 11))

# user -> chronological items. u1: 6 positives; u2: 3; u3: 2; u4: 1.
SEQUENCES = {
    "u1": ["i1", "i2", "i3", "i4", "i5", "i6"],
    "u2": ["i1", "i2", "i7"],
    "u3": ["i1", "i8"],
    "u4": ["i2"],
}


def _write_csv(directory, extra_lines=(), items=ITEMS):
    os.makedirs(directory, exist_ok=True)
    lines = ["user_id,item_id,timestamp,rating"]
    for user, seq in SEQUENCES.items():
        lines += [f"{user},{item},{1000 + 10 * k},4" for k, item in enumerate(seq)]
    lines += list(extra_lines)
    with open(os.path.join(directory, "interactions.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(directory, "items.csv"), "w") as f:
        f.write(items)
    return str(directory)


def _run(data_dir, out, *extra):
    return prepare.run(["--dataset", "csv", "--data-dir", data_dir, "--output", str(out),
                        "--runner", "DirectRunner", "--history-length", "3",
                        "--teacher-pairs", "2", "--probe-pairs", "1", *extra])


def _records(out, split):
    files = sorted(glob.glob(os.path.join(out, f"{split}-*.tfrecord")))
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files)]


def _feature(example, name):
    f = example.features.feature[name]
    kind = f.WhichOneof("kind")
    values = list(getattr(f, kind).value)
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def test_the_resolved_config_ignores_flag_order_written_defaults_and_beam_flags():
    from beam_pipelines.prepare.launcher import resolve_config

    base = ["--dataset", "csv", "--data-dir", "raw", "--output", "out", "--seed", "3"]
    same = ["--seed", "3", "--output", "elsewhere", "--num-shards", "2", "--data-dir", "raw", "--dataset", "csv",
            "--runner", "DirectRunner", "--direct_num_workers", "2"]
    assert resolve_config(base) == resolve_config(same)
    assert resolve_config(base)["seed"] == 3 and resolve_config(base + ["--seed", "4"])["seed"] == 4
    assert resolve_config(base + ["--labels", "l"])["labels"] == "l"


def test_split_statistics_and_segments(tmp_path):
    out = tmp_path / "out"
    stats = _run(_write_csv(tmp_path / "raw"), out)
    # Hand-computed: train u1 [i1..i4], u2 [i1], u3 [i1], u4 [i2]; val u1 i5, u2 i2; test u1 i6,
    # u2 i7, u3 i8.
    assert stats.interactions == {"train": 7, "val": 2, "test": 3}
    assert stats.users == 4 and stats.items == 10
    assert stats.cold_start_users == 3  # u2, u3, u4 have <= 3 training items
    # popularity: i1 3, i2 2, i3 1, i4 1, others 0 -> bottom 20% of 10 items = 2 items: i10, i5.
    assert stats.long_tail_items == 2
    assert stats.thresholds.long_tail_max_popularity == 0
    assert stats.records == {"train": 7, "val": 2, "test": 3}
    assert PreparedData(str(out)).stats() == stats
    config = PreparedData(str(out)).prepare_config()
    assert config == PrepareConfig(dataset="csv", data_dir=str(tmp_path / "raw"), history_length=3, teacher_pairs=2,
                                   probe_pairs=1)

    train = _records(out, "train")
    by_key = {(_feature(e, "user_id")[0], _feature(e, "item_id")[0]): e for e in train}
    e = by_key[("u1", "i4")]
    assert _feature(e, "history") == ["i1", "i2", "i3"]
    assert _feature(e, "history_length") == [4] and _feature(e, "cold_start") == [0]
    assert _feature(e, "item_popularity") == [1]
    assert _feature(by_key[("u1", "i1")], "history") == ["", "", ""]
    assert _feature(by_key[("u2", "i1")], "cold_start") == [1]
    test = {_feature(e, "user_id")[0]: e for e in _records(out, "test")}
    assert _feature(test["u1"], "item_id") == ["i6"]
    assert _feature(test["u1"], "history") == ["i2", "i3", "i4"]  # training items only
    assert _feature(test["u1"], "long_tail") == [0]  # i6 has popularity 0 but i5, i10 come first
    assert "teacher_pref" not in test["u1"].features.feature

    data = prepared.PreparedData(str(out))
    assert data.item_vocabulary()[:2] == ["i1", "i2"]
    assert [u.user_id for u in data.users()] == ["u1", "u2", "u3", "u4"]
    assert data.users()[0].val_items == ("i5",)
    assert {it.item_id for it in data.items() if it.long_tail} == {"i10", "i5"}
    assert data.items()[0].categories == ("G1", "Common")
    assert schema.Schema.load(str(out)).history_length == 3
    assert os.path.exists(out / "dataset_card.md")


def _labels(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return str(path)


def test_a_labels_folder_brings_its_item_embeddings_along(tmp_path):
    from tests.data.test_item_embeddings import _write
    from tfrs_selreg.data import item_embeddings
    from tfrs_selreg.data.prepared import PreparedData

    raw = _write_csv(tmp_path / "raw")
    ids = [f"i{k}" for k in range(1, 13)]
    vectors = np.arange(len(ids) * 3, dtype=np.float32).reshape(-1, 3)
    labels = tmp_path / "labels"
    labels.mkdir()
    _labels(labels / "labels-00000-of-00001.jsonl",
            [{"user_id": "u1", "item_i": "i7", "item_j": "i8", "pref": 0.9, "teacher": "t"}])
    _write(labels, ids, vectors)
    out = tmp_path / "out"
    _run(raw, out, "--labels", str(labels))
    vocabulary = PreparedData(str(out)).item_vocabulary()
    np.testing.assert_array_equal(item_embeddings.load(str(out), vocabulary),
                                  vectors[[ids.index(i) for i in vocabulary]])
    # Labels without embeddings (another teacher) leave no stale copy behind.
    shutil.rmtree(labels / item_embeddings.DIR)
    _run(raw, out, "--labels", str(labels))
    assert not item_embeddings.exists(str(out))


def test_label_join_and_leakage_guard(tmp_path):
    out = tmp_path / "out"
    rows = [
        {"user_id": "u1", "item_i": "i7", "item_j": "i8", "pref": 0.9, "kind": "teacher", "teacher": "t"},
        {"user_id": "u1", "item_i": "i9", "item_j": "i10", "pref": 0.2, "teacher": "t"},
        {"user_id": "u1", "item_i": "i3", "item_j": "i9", "pref": 0.7, "kind": "probe", "truth": 1},
        {"user_id": "u1", "item_i": "i5", "item_j": "i9", "pref": 0.9},  # i5 is u1's val item
        {"user_id": "u1", "item_i": "i9", "item_j": "i6", "pref": 0.1},  # i6 is u1's test item
        {"user_id": "u1", "item_i": "i99", "item_j": "i9", "pref": 0.5},  # unknown item
        {"user_id": "nobody", "item_i": "i1", "item_j": "i9", "pref": 0.5},  # unknown user
        {"user_id": "u2", "item_i": "i3", "item_j": "i9", "pref": 1.5},  # pref out of range
        {"user_id": "u2", "item_i": "i3", "item_j": "i9", "pref": float("nan")},
        {"user_id": "u2", "item_i": "i8", "item_j": "i9", "pref": 0.6, "confidence": 0.9},
    ]
    labels = _labels(tmp_path / "labels.jsonl", rows)
    with open(labels, "a") as f:
        f.write("{not json\n")
    stats = _run(_write_csv(tmp_path / "raw"), out, "--labels", labels, "--max-error-fraction", "0.2")
    assert stats.labels.joined_teacher_rows == 3
    assert stats.labels.joined_probe_rows == 1
    assert stats.labels.rejected == {
        "leakage_val_or_test_item": 2, "unknown_item": 1, "unknown_user": 1,
        "pref_out_of_range": 2, "malformed": 1}
    dead = [json.loads(line) for p in glob.glob(str(out / "dead_letter" / "*.jsonl"))
            for line in open(p)]
    assert sum(1 for d in dead if d["input"] == "labels") == 7
    assert any(d["line"] == 11 and d["reason"] == "malformed" for d in dead)

    by_key = {(_feature(e, "user_id")[0], _feature(e, "item_id")[0]): e for e in _records(out, "train")}
    e = by_key[("u1", "i2")]
    assert sorted(_feature(e, "teacher_item_i")) == ["i7", "i9"]
    assert _feature(e, "teacher_mask") == [1.0, 1.0]
    assert _feature(e, "probe_item_i") == ["i3"] and _feature(e, "probe_truth") == [1.0]
    u2 = by_key[("u2", "i1")]
    assert _feature(u2, "teacher_item_i") == ["i8", ""]
    assert _feature(u2, "teacher_confidence") == pytest.approx([0.9, 0.0])
    assert _feature(u2, "probe_mask") == [0.0]
    # No label names a validation or test item of its user.
    for (user, _), e in by_key.items():
        held = {"u1": {"i5", "i6"}, "u2": {"i2", "i7"}, "u3": {"i8"}, "u4": set()}[user]
        assert not held & set(_feature(e, "teacher_item_i") + _feature(e, "teacher_item_j")
                              + _feature(e, "probe_item_i") + _feature(e, "probe_item_j"))


def test_bad_rows_are_dead_lettered_and_counted(tmp_path):
    out = tmp_path / "out"
    bad = ["u1,i1", "u5,i2,notanumber,4", "u5,i77,1500,4", "u1,i2,1200,4"]  # the last one: duplicate
    stats = _run(_write_csv(tmp_path / "raw", bad), out, "--max-error-fraction", "0.5")
    assert stats.rows_read["interactions"] == 16
    assert stats.rows_rejected["interactions"] == {
        "wrong_column_count": 1, "unparsable_number": 1, "unknown_item": 1}
    assert stats.rows_filtered["duplicate_interactions"] == 1
    dead = [json.loads(line) for p in glob.glob(str(out / "dead_letter" / "*.jsonl")) for line in open(p)]
    assert sorted((d["line"], d["reason"]) for d in dead) == [
        (14, "wrong_column_count"), (15, "unparsable_number"), (16, "unknown_item")]


def test_too_many_bad_rows_fail_with_first_lines(tmp_path):
    bad = ["u1,i1", "u1,i2,x,1", "u9,i3,,", "u2,i99,5,5"]
    with pytest.raises(prepare.PrepareError, match=r"interactions\.csv:14"):
        _run(_write_csv(tmp_path / "raw", bad), tmp_path / "out")


def test_missing_and_empty_input_fail_before_the_pipeline(tmp_path):
    with pytest.raises(FileNotFoundError):
        _run(str(tmp_path / "nowhere"), tmp_path / "out")
    raw = _write_csv(tmp_path / "raw")
    open(os.path.join(raw, "interactions.csv"), "w").close()
    with pytest.raises((ValueError, FileNotFoundError)):
        _run(raw, tmp_path / "out")


def test_min_rating_and_cold_start_simulation(tmp_path):
    out = tmp_path / "out"
    stats = _run(_write_csv(tmp_path / "raw", ["u4,i3,2000,1"]), out, "--min-rating", "3")
    assert stats.rows_filtered["below_min_rating"] == 1
    assert stats.interactions["train"] == 7
    assert stats.simulated_cold_start_users == 0
    # Every user simulated: each keeps its first 1 to 3 training items (seeded per user), the rest are
    # dropped; validation and test items stay.
    users = {u.user_id: u for u in prepared.PreparedData(str(out)).users()}
    stats = _run(_write_csv(tmp_path / "raw"), tmp_path / "cold", "--cold-start-fraction", "1", "--seed", "5")
    cold = {u.user_id: u for u in prepared.PreparedData(str(tmp_path / "cold")).users()}
    assert stats.simulated_cold_start_users == 4 and stats.cold_start_users == 4
    kept = {u: len(cold[u].train_items) for u in cold}
    assert all(1 <= kept[u] <= min(3, len(users[u].train_items)) for u in cold)
    assert all(cold[u].train_items == users[u].train_items[:kept[u]] for u in cold)
    assert all((cold[u].val_items, cold[u].test_items) == (users[u].val_items, users[u].test_items) for u in cold)
    assert stats.rows_filtered["dropped_by_cold_start_simulation"] == 7 - sum(kept.values()) > 0
    assert stats.interactions["train"] == sum(kept.values())


def test_rows_lost_between_reading_and_writing_fail_the_job(tmp_path):
    from beam_pipelines.prepare.launcher import check_conservation
    stats = _run(_write_csv(tmp_path / "raw", ["u4,i3,2000,1", "u4,i2,2001,4"]), tmp_path / "out",
                 "--min-rating", "3")
    check_conservation(stats)  # read 14 = filtered 2 (below min rating, duplicate) + written 12
    train = stats.interactions["train"] - 3
    lost_user = dataclasses.replace(stats, interactions={**stats.interactions, "train": train},
                                    records={**stats.records, "train": train})
    with pytest.raises(prepare.PrepareError, match="3 interaction rows were lost between reading and writing"):
        check_conservation(lost_user)
    with pytest.raises(prepare.PrepareError, match="records"):
        check_conservation(dataclasses.replace(stats, records={**stats.records, "val": 0}))


def test_num_shards_auto_gives_one_shard_per_examples_per_shard_accepted_rows(tmp_path):
    # 12 accepted rows (one more is below --min-rating): 3 shards of at most 5, every user written once.
    out = tmp_path / "out"
    stats = _run(_write_csv(tmp_path / "raw", ["u4,i3,2000,1"]), out, "--min-rating", "3",
                 "--num-shards", "auto", "--examples-per-shard", "5")
    assert stats.num_shards == 3
    for split in schema.SPLITS:
        assert len(glob.glob(os.path.join(out, f"{split}-*-of-00003.tfrecord"))) == 3
    users = [u.user_id for u in PreparedData(str(out)).iter_users()]
    assert sorted(users) == sorted(SEQUENCES) and len(glob.glob(prepared.users_pattern(str(out)))) == 3


def test_shards_without_users_are_written_empty(tmp_path):
    # 4 users in 12 shards: most shards get no user, and each of those is still a file of every set.
    out = tmp_path / "out"
    stats = _run(_write_csv(tmp_path / "raw"), out, "--num-shards", "12")
    assert stats.num_shards == 12
    for name in [f"{split}-{{:05d}}-of-00012.tfrecord" for split in schema.SPLITS] + ["users-{:05d}-of-00012.jsonl"]:
        sizes = [os.path.getsize(out / name.format(s)) for s in range(12)]
        assert sizes.count(0) >= 8 and any(sizes), name
    assert sorted(u.user_id for u in PreparedData(str(out)).iter_users()) == sorted(SEQUENCES)


def _all_bytes(out):
    blobs = {}
    for path in sorted(glob.glob(os.path.join(out, "**", "*"), recursive=True)):
        name = os.path.relpath(path, out)
        # stats.json, the card and prepare_config.json name the input paths and the job's time.
        if os.path.isfile(path) and name not in (prepared.STATS_FILE, prepared.DATASET_CARD, PREPARE_CONFIG_FILE) \
                and not name.startswith(prepared.DEAD_LETTER_DIR):
            blobs[name] = open(path, "rb").read()
    return blobs


def test_bundled_movielens_end_to_end(bundled_prepared):
    out = pathlib.Path(bundled_prepared)
    stats = PreparedData(bundled_prepared).stats()
    assert stats.rows_read["interactions"] == 100836
    assert stats.rows_rejected == {}
    assert stats.users == 610 and stats.items == 9742
    total = sum(stats.interactions.values()) + stats.rows_filtered["dropped_by_cold_start_simulation"]
    assert total == 100836
    assert stats.interactions["test"] == 610 and stats.interactions["val"] == 610
    assert stats.cold_start_users == stats.simulated_cold_start_users > 80
    assert stats.long_tail_items == round(0.2 * 9742)
    files = sorted(glob.glob(str(out / "train-*.tfrecord")))
    n = int(tf.data.TFRecordDataset(files).reduce(0, lambda count, _: count + 1))  # a graph loop: not eager
    assert n == stats.interactions["train"]


def test_temporal_split_cuts_globally(tmp_path):
    out = tmp_path / "out"
    stats = _run(_write_csv(tmp_path / "raw"), out, "--split", "temporal",
                 "--temporal-val-fraction", "0.25", "--temporal-test-fraction", "0.25")
    # 12 interactions at t = 1000 (4x), 1010 (3x), 1020 (2x), 1030, 1040, 1050. Train should hold half
    # of them: the first cut where at least 6 come before is 1020 (7 before); validation up to 75%:
    # at least 9 before -> 1030. So t < 1020 train, 1020 <= t < 1030 validation, the rest test.
    assert stats.interactions == {"train": 7, "val": 2, "test": 3}
    val = [(_feature(e, "user_id")[0], _feature(e, "item_id")[0]) for e in _records(out, "val")]
    assert sorted(val) == [("u1", "i3"), ("u2", "i7")]
    test = [(_feature(e, "user_id")[0], _feature(e, "item_id")[0]) for e in _records(out, "test")]
    assert sorted(test) == [("u1", "i4"), ("u1", "i5"), ("u1", "i6")]


def test_tfds_dataset_through_the_pipeline(tmp_path):
    from tests.data import tfds_fixture

    flags = ["0"] * 19
    source = tfds_fixture.write_ml_100k(
        str(tmp_path / "raw"),
        ratings=[f"{u}\t{i}\t4\t{880000000 + 10 * u + i}" for u in (1, 2) for i in (10, 11, 12)],
        items=[f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|" + "|".join(flags) for i in (10, 11, 12)],
        users=["1|24|M|technician|85711", "2|53|F|other|94043"])
    tfds_dir = str(tmp_path / "tfds")
    tfds_fixture.build_100k_ratings(source, tfds_dir)
    stats = prepare.run(["--dataset", "tfds", "--tfds-name", "movielens/100k-ratings", "--tfds-data-dir",
                         tfds_dir, "--output", str(tmp_path / "out"), "--runner", "DirectRunner"])
    assert stats.rows_read["interactions"] == 6 and stats.rows_rejected == {}
    assert stats.interactions == {"train": 2, "val": 2, "test": 2}
    assert {_feature(e, "item_id")[0] for e in _records(tmp_path / "out", "test")} == {"12"}


def test_shared_amazon_counts_match_raw_files(tmp_path):
    data = shared_dataset("amazon-scientific-2018")
    inter = json.load(open(data / "Scientific.inter.json"))
    items = json.load(open(data / "Scientific.item.json"))
    stats = prepare.run(["--dataset", "amazon-json", "--data-dir", str(data), "--output",
                         str(tmp_path / "sci"), "--runner", "DirectRunner"])
    n = sum(len(v) for v in inter.values())
    assert stats.rows_read["interactions"] == n
    assert sum(stats.interactions.values()) + stats.rows_filtered["duplicate_interactions"] == n
    assert stats.users == len(inter) and stats.items == len(items)
    assert stats.interactions["test"] == len(inter)
    # 5-core leave-one-out: users with exactly 5 interactions keep 3 training items -> cold start.
    assert stats.cold_start_users == sum(1 for v in inter.values() if len(set(v)) <= 5)


def _snapshot(folder):
    """``{relative path: bytes}`` of every file below ``folder``."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def test_a_failed_prepare_leaves_the_previous_output_untouched(tmp_path):
    raw, out = _write_csv(tmp_path / "raw"), tmp_path / "out"
    _run(raw, out)
    good = _snapshot(out)
    bad = _write_csv(tmp_path / "bad", ["u1,i1", "u1,i2,x,1", "u9,i3,,", "u2,i99,5,5"])
    with pytest.raises(prepare.PrepareError, match=r"interactions\.csv:14") as error:
        _run(bad, out)
    assert _snapshot(out) == good
    # The rejected rows the message points to are kept beside it, not in the good folder.
    assert f"{out}{prepare.STAGING_SUFFIX}" in str(error.value)
    assert glob.glob(str(tmp_path / f"out{prepare.STAGING_SUFFIX}" / "dead_letter" / "*.jsonl"))
    _run(raw, out)  # the next good run cleans the staging folder up
    assert not os.path.exists(f"{out}{prepare.STAGING_SUFFIX}")
    again = _snapshot(out)
    assert set(again) == set(good) and all(again[k] == good[k] for k in good if k != prepared.STATS_FILE)


def test_labels_that_all_fail_to_join_fail_the_job(tmp_path):
    raw, out = _write_csv(tmp_path / "raw"), tmp_path / "out"
    _run(raw, out)
    good = _snapshot(out)
    labels = _labels(tmp_path / "labels.jsonl", [
        {"user_id": "nobody", "item_i": "i1", "item_j": "i9", "pref": 0.8},
        {"user_id": "u1", "item_i": "i5", "item_j": "i9", "pref": 0.9}])  # a validation item: leakage
    with pytest.raises(prepare.PrepareError, match=r"none of its 2 rows could be joined.*unknown_user"):
        _run(raw, out, "--labels", labels)
    assert _snapshot(out) == good


def test_prepare_replaces_only_its_own_files_and_refuses_an_output_holding_its_input(tmp_path):
    raw, out = _write_csv(tmp_path / "raw"), tmp_path / "out"
    labels_dir = tmp_path / "labels"
    labels_dir.mkdir()
    labels = _labels(labels_dir / "part-0.jsonl", [
        {"user_id": "u1", "item_i": "i7", "item_j": "i8", "pref": 0.9}])
    _run(raw, out)
    (out / "notes.tfrecord").write_bytes(b"mine")  # not a split shard: prepare never wrote it
    (out / "README.txt").write_text("mine")
    stale = out / "train-00007-of-00009.tfrecord"  # a shard of an earlier job with other --num-shards
    stale.write_bytes(b"old")
    _run(raw, out, "--labels", labels)
    assert (out / "notes.tfrecord").read_bytes() == b"mine" and (out / "README.txt").read_text() == "mine"
    assert not stale.exists() and _records(out, "train")
    for output in (labels_dir, labels_dir / "sub", tmp_path):
        with pytest.raises(prepare.PrepareError, match="overlap: the job would overwrite its own input"):
            _run(raw, output, "--labels", str(labels_dir))
    assert (labels_dir / "part-0.jsonl").exists()


def test_gzipped_labels_a_bom_and_blank_lines_join_like_plain_ones(tmp_path):
    import gzip

    raw = _write_csv(tmp_path / "raw")
    rows = [{"user_id": "u1", "item_i": "i7", "item_j": "i8", "pref": 0.9},
            {"user_id": "u2", "item_i": "i8", "item_j": "i9", "pref": 0.2}]
    text = "\ufeff" + json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n"
    with gzip.open(tmp_path / "labels.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(text)
    stats = _run(raw, tmp_path / "out", "--labels", str(tmp_path / "labels.jsonl.gz"))
    assert stats.labels.joined_teacher_rows == 2 and stats.labels.rejected == {}


@pytest.mark.parametrize("compression", [".gz"])  # plain .tfrecord differs only in the reader's compression flag
def test_tfrecord_labels_join_like_the_same_rows_as_json_lines(tmp_path, compression):
    """The documented ``*.tfrecord[.gz]`` label input (``LabelRow.to_example_bytes``) gives the same folder."""
    from tfrs_selreg.data import labels as labels_lib

    raw = _write_csv(tmp_path / "raw")
    rows = [{"user_id": "u1", "item_i": "i7", "item_j": "i8", "pref": 0.9, "confidence": 0.5, "teacher": "t"},
            {"user_id": "u2", "item_i": "i8", "item_j": "i9", "pref": 0.2, "teacher": "t"},
            {"user_id": "u1", "item_i": "i1", "item_j": "i9", "pref": 0.7, "kind": "probe", "truth": 1,
             "teacher": "t"}]
    jsonl = _labels(tmp_path / "labels.jsonl", rows)
    (tmp_path / "tfr").mkdir()
    options = tf.io.TFRecordOptions(compression_type="GZIP" if compression else "")
    with tf.io.TFRecordWriter(str(tmp_path / "tfr" / f"labels.tfrecord{compression}"), options) as writer:
        for row in rows:
            writer.write(labels_lib.from_dict(row).to_example_bytes())
    a = _run(raw, tmp_path / "a", "--labels", jsonl)
    b = _run(raw, tmp_path / "b", "--labels", str(tmp_path / "tfr"))
    assert (a.labels.joined_teacher_rows, a.labels.joined_probe_rows) == (2, 1)
    assert (b.labels.joined_teacher_rows, b.labels.joined_probe_rows) == (2, 1)
    assert _all_bytes(tmp_path / "a") == _all_bytes(tmp_path / "b")


@pytest.mark.parametrize("name", ["labels.jsonl.gz", "labels.tfrecord", "labels.tfrecord.gz"])
def test_a_corrupt_label_file_is_an_error_that_names_it(tmp_path, name):
    import gzip

    raw = _write_csv(tmp_path / "raw")
    good = b"".join(json.dumps({"user_id": "u1", "item_i": "i7", "item_j": "i8", "pref": 0.9}).encode() + b"\n"
                    for _ in range(200))
    if name.endswith(".jsonl.gz"):
        body = gzip.compress(good)[:-30]  # truncated stream
    else:
        body = b"\x07" * 40  # no TFRecord framing
        if name.endswith(".gz"):
            body = gzip.compress(body)
    (tmp_path / name).write_bytes(body)
    with pytest.raises(ValueError, match=rf"{name}: unreadable"):
        _run(raw, tmp_path / "out", "--labels", str(tmp_path / name))


def test_a_rejected_catalog_row_is_named_before_its_unknown_item_interactions(tmp_path):
    raw = _write_csv(tmp_path / "raw")
    items = ITEMS.encode("utf-8").replace(b"i2,Item 2,", b"i2,Caf\xe9 2,")  # latin-1, not utf-8
    (tmp_path / "raw" / "items.csv").write_bytes(items)
    with pytest.raises(prepare.PrepareError, match=r"(?s)1 of 10 items rows .*items\.csv:3: bad_encoding"):
        _run(raw, tmp_path / "out")
    # Within the items' allowance, the interactions it orphans exceed theirs: the cause is named first.
    with pytest.raises(prepare.PrepareError) as error:
        _run(raw, tmp_path / "out", "--max-error-fraction", "0.15")
    message = str(error.value)
    assert "1 catalog rows were rejected themselves, so their interactions are unknown_item" in message
    assert message.index("items.csv:3: bad_encoding") < message.index("First bad rows")


def test_one_large_file_read_by_two_workers_gives_the_bytes_of_one_reading_it_whole(tmp_path):
    """Same inputs and seed, byte-identical outputs: byte ranges of one file go to both worker processes,
    and line numbers (here the timestamps: no timestamp column), the joined labels and the cold-start
    simulation are those of reading the file whole on one worker."""
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    rows = [f"u{rng.integers(300)},i{rng.integers(200)},{rng.integers(1, 6)}" for _ in range(8000)]
    (raw / "interactions.csv").write_text("user_id,item_id,rating\n" + "\n".join(rows) + "\nu1,not-an-item,3\n")
    (raw / "items.csv").write_text("item_id,title\n" + "".join(f"i{k},Item {k}\n" for k in range(200)))
    labels = _labels(tmp_path / "labels.jsonl", [
        {"user_id": f"u{u}", "item_i": f"i{a}", "item_j": f"i{b}", "pref": 0.6, "teacher": "t"}
        for u in range(40) for a, b in ((1, 2), (3, 4), (5, 6))])
    same = ["--labels", labels, "--cold-start-fraction", "0.5", "--seed", "3", "--num-shards", "1"]
    whole = _run(str(raw), tmp_path / "whole", "--read-range-bytes", str(1 << 30), *same)
    spread = _run(str(raw), tmp_path / "spread", "--read-range-bytes", "4096", *same,
                  "--direct_num_workers", "2", "--direct_running_mode", "multi_processing")
    assert len(whole.rows_read_by_worker) == 1 and len(spread.rows_read_by_worker) == 2
    assert sum(spread.rows_read_by_worker.values()) == spread.rows_read["interactions"] == 8001
    assert spread.rows_rejected == whole.rows_rejected and spread.rows_rejected["interactions"] == {"unknown_item": 1}
    assert spread.labels.joined_teacher_rows > 0 and spread.simulated_cold_start_users > 0
    a, b = _all_bytes(tmp_path / "whole"), _all_bytes(tmp_path / "spread")
    assert a.keys() == b.keys() and any(k.startswith("train-") for k in a) and a == b
    for stats in (whole, spread):
        assert dataclasses.replace(stats, seconds=0, rows_read_by_worker={}) == dataclasses.replace(
            whole, seconds=0, rows_read_by_worker={})
    [dead] = [json.loads(line) for f in glob.glob(str(tmp_path / "spread" / "dead_letter" / "*.jsonl"))
              for line in open(f) if '"interactions"' in line]
    assert dead["line"] == 8002 and dead["source"].endswith("interactions.csv")
