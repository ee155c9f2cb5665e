"""Per-user split, cold-start simulation, long-tail segments and records, against hand-computed values."""

import tensorflow as tf

from tfrs_selreg.data import example_codec as codec
from tfrs_selreg.data import examples as ex
from tfrs_selreg.data import pair_sampling, schema, splitting
from tfrs_selreg.data.labels import LabelPair


def _seq(*items, start=100):
    return [(item, start + k, 4.0, k + 1) for k, item in enumerate(items)]


def test_leave_last_out_split_and_dedupe():
    rows = _seq("a", "b", "c", "d", "e")
    rows.append(("b", 500, 3.0, 99))  # a repeat of b, later: dropped, the first b is kept
    s = splitting.split_user("u", reversed(rows), mode=splitting.SPLIT_LEAVE_LAST_OUT, seed=0)
    assert [x[0] for x in s.train] == ["a", "b", "c"]
    assert [x[0] for x in s.val] == ["d"]
    assert [x[0] for x in s.test] == ["e"]
    assert s.duplicates == 1


def test_leave_last_out_short_users():
    two = splitting.split_user("u", _seq("a", "b"), mode=splitting.SPLIT_LEAVE_LAST_OUT, seed=0)
    assert ([x[0] for x in two.train], two.val, [x[0] for x in two.test]) == (["a"], (), ["b"])
    one = splitting.split_user("u", _seq("a"), mode=splitting.SPLIT_LEAVE_LAST_OUT, seed=0)
    assert ([x[0] for x in one.train], one.val, one.test) == (["a"], (), ())


def test_ties_in_time_keep_file_order():
    rows = [("x", 5, None, 3), ("y", 5, None, 1), ("z", 5, None, 2)]
    s = splitting.split_user("u", rows, mode=splitting.SPLIT_LEAVE_LAST_OUT, seed=0)
    assert [x[0] for x in s.train + s.val + s.test] == ["y", "z", "x"]


def test_temporal_split_uses_global_cuts():
    s = splitting.split_user("u", _seq("a", "b", "c", "d", "e"), mode=splitting.SPLIT_TEMPORAL, seed=0,
                      val_cut=102, test_cut=104)
    assert [x[0] for x in s.train] == ["a", "b"]
    assert [x[0] for x in s.val] == ["c", "d"]
    assert [x[0] for x in s.test] == ["e"]


def test_cold_start_simulation_keeps_one_to_three_items():
    users = [f"user{k}" for k in range(400)]
    splits = [splitting.split_user(u, _seq(*[f"i{j}" for j in range(25)]), mode=splitting.SPLIT_LEAVE_LAST_OUT,
                            seed=7, cold_start_fraction=0.25) for u in users]
    simulated = [s for s in splits if s.simulated_cold_start]
    assert 70 <= len(simulated) <= 130  # about a quarter
    assert {len(s.train) for s in simulated} == {1, 2, 3}
    # The kept items are the first ones; validation and test are untouched.
    for s in simulated:
        assert [x[0] for x in s.train] == [f"i{j}" for j in range(len(s.train))]
        assert s.dropped_by_simulation == 23 - len(s.train)
        assert [x[0] for x in s.test] == ["i24"]
    assert all(len(s.train) == 23 for s in splits if not s.simulated_cold_start)
    again = [splitting.split_user(u, _seq(*[f"i{j}" for j in range(25)]), mode=splitting.SPLIT_LEAVE_LAST_OUT,
                           seed=7, cold_start_fraction=0.25) for u in users]
    assert again == splits


def test_long_tail_ties_broken_by_item_id():
    pop = {"a": 5, "b": 1, "c": 1, "d": 0, "e": 3, "f": 1, "g": 9, "h": 2, "i": 4, "j": 7}
    tail, threshold = splitting.long_tail_items(pop, 0.2)
    assert tail == {"d", "b"}  # 0 first, then the smallest id among the ties at 1
    assert threshold == 1
    assert splitting.long_tail_items(pop, 0.0) == (set(), -1)
    assert splitting.catalog_order(pop)[:3] == ["g", "j", "a"]


def test_padded_history_keeps_newest_last():
    assert ex.padded_history(["a", "b", "c"], 5) == ["", "", "a", "b", "c"]
    assert ex.padded_history(["a", "b", "c"], 2) == ["b", "c"]
    assert ex.padded_history([], 2) == ["", ""]


def test_sample_pairs_deterministic_and_bounded():
    rows = [(f"i{k}", f"j{k}", 0.9, 0.8) for k in range(20)]
    a = pair_sampling.sample(rows, 5, seed=0, user_id="u", salt=3, kind=pair_sampling.TEACHER)
    assert len(a) == 5 and a == pair_sampling.sample(rows, 5, seed=0, user_id="u", salt=3, kind=pair_sampling.TEACHER)
    assert len(set(a)) == 5  # distinct rows
    assert a != pair_sampling.sample(rows, 5, seed=0, user_id="u", salt=4, kind=pair_sampling.TEACHER)
    assert a != pair_sampling.sample(rows, 5, seed=0, user_id="u", salt=3, kind=pair_sampling.PROBE)
    assert pair_sampling.sample(rows[:3], 5, seed=0, user_id="u", salt=3, kind=pair_sampling.TEACHER) == rows[:3]


def test_sampled_rows_are_uniform_over_salts():
    counts = [0] * 10
    for salt in range(2000):
        for r in pair_sampling.sample(list(range(10)), 3, seed=1, user_id="u9", salt=salt, kind=pair_sampling.TEACHER):
            counts[r] += 1
    assert all(abs(c - 600) < 90 for c in counts), counts  # 600 = 2000 * 3 / 10; sd about 22


def test_the_tensorflow_mix_equals_the_python_mix():
    xs = [0, 1, 2**31 - 1, pair_sampling.user_key("someone")]
    vs = [0, 7, 2**31 - 1, 30]
    got = pair_sampling.tf_mix(tf.constant(xs, tf.int64)[:, None], tf.constant(vs, tf.int64)[None, :]).numpy()
    assert got.tolist() == [[pair_sampling._mix(x, v) for v in vs] for x in xs]


def test_the_tensorflow_slots_equal_the_python_slots():
    counts = [0, 1, 4, 5, 6, 9, 10, 37, 1000]  # <= size, size + 1 and up
    users = [f"u{b}" for b in range(len(counts))]
    prefixes = [pair_sampling.user_prefix(11, pair_sampling.user_key(u), pair_sampling.TEACHER) for u in users]
    salts = [b * 2**33 + 3 for b in range(len(counts))]
    got = pair_sampling.tf_slot_rows(tf.constant(prefixes, tf.int64), tf.constant(salts, tf.int64),
                                     tf.constant(counts, tf.int64), 5).numpy()
    for b, n in enumerate(counts):
        rows = pair_sampling.sample(list(range(n)), 5, seed=11, user_id=users[b], salt=salts[b],
                                    kind=pair_sampling.TEACHER)
        assert list(got[b][:len(rows)]) == rows, n
        if n <= 5:
            assert list(got[b]) == list(range(5))


def test_make_example_parses_with_schema():
    s = schema.build_schema(history_length=3, teacher_pairs=2, probe_pairs=1)
    record = ex.make_example(
        user_id="u1", item_id="i9", history=["", "i1", "i2"], timestamp=42, rating=4.5,
        history_length=2, cold_start=True, item_popularity=7, long_tail=False,
        teacher_pairs=[LabelPair("i3", "i4", 0.8, 0.6)], probe_pairs=[LabelPair("i1", "i5", 0.3, 0.4, 1)],
        num_teacher_pairs=2, num_probe_pairs=1)
    spec = {}
    for f in s.features:
        dtype = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}[f.dtype]
        spec[f.name] = tf.io.FixedLenFeature(f.shape, dtype)
    parsed = tf.io.parse_single_example(record, spec)
    assert parsed["history"].numpy().tolist() == [b"", b"i1", b"i2"]
    assert parsed["teacher_item_i"].numpy().tolist() == [b"i3", b""]
    assert parsed["teacher_mask"].numpy().tolist() == [1.0, 0.0]
    assert parsed["probe_truth"].numpy().tolist() == [1.0]
    assert int(parsed["cold_start"]) == 1 and int(parsed["item_popularity"]) == 7
    # Validation/test records carry no training-only feature.
    plain = ex.make_example(
        user_id="u1", item_id="i9", history=["", "i1", "i2"], timestamp=42, rating=None,
        history_length=2, cold_start=True, item_popularity=7, long_tail=False)
    keys = set(tf.train.Example.FromString(plain).features.feature)
    assert keys == {f.name for f in s.by_role(schema.ROLE_SERVING, schema.ROLE_EXAMPLE)}


def test_make_example_cached_entries_equal_the_generic_encoder():
    """The cached map entries and fixed key order give ``encode_example``'s bytes, with and without pairs."""
    for pairs in ({}, {"teacher_pairs": [LabelPair("i3", "i4", 0.8, 0.6)],
                       "probe_pairs": [LabelPair("i1", "i5", 0.3, 0.4, 1)],
                       "num_teacher_pairs": 2, "num_probe_pairs": 2}):
        for rating in (4.5, None, 4.5):  # the second 4.5 comes from the entry cache
            record = ex.make_example(
                user_id="ü1", item_id="i9", history=["", "i1", "i2"], timestamp=2**40, rating=rating,
                history_length=300, cold_start=False, item_popularity=7, long_tail=True, **pairs)
            parsed = tf.train.Example.FromString(record)
            features = parsed.features.feature
            assert record == codec.encode_example({k: features[k].SerializeToString() for k in features})
            assert parsed.features.feature["rating"].float_list.value == [rating or 0.0]
            assert parsed.features.feature["user_id"].bytes_list.value == ["ü1".encode()]


def test_user_examples_histories_equal_each_record_s_padded_history():
    items = [f"i{k}" for k in range(7)]
    for length in (0, 1, 3, 10):
        histories = ex.UserExamples.histories(items, length)
        assert histories == [ex.history_entry(ex.padded_history(items[:k], length)) for k in range(len(items) + 1)]


def test_unit_hasher_equals_unit_hash():
    f = splitting.unit_hasher(3, "order", "ü1")
    assert [f(k) for k in (0, 1, 17, "val")] == [splitting.unit_hash(3, "order", "ü1", k) for k in (0, 1, 17, "val")]
