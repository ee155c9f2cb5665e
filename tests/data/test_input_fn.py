"""The tf.data input function on a synthetic prepared folder: round trip, roles, errors."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests.synthetic import make_prepared
from tfrs_selreg.data import input_fn, schema
from tfrs_selreg.data.prepared import PreparedData


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(str(tmp_path_factory.mktemp("prepared")), n_users=20, n_items=40, seed=3)


def _all(ds):
    out = {}
    for batch in ds:
        for k, v in batch.items():
            out.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def test_round_trip_matches_side_files(prepared):
    data = PreparedData(prepared)
    users = {u.user_id: u for u in data.users()}
    spec = schema.Schema.load(prepared)
    train = _all(input_fn.make_dataset(prepared, "train", batch_size=7, shuffle=False, seed=None))
    assert len(train[schema.USER_ID]) == sum(len(u.train_items) for u in users.values())
    for user_id, item, history in zip(train[schema.USER_ID], train[schema.ITEM_ID], train[schema.HISTORY]):
        user = users[user_id.decode()]
        position = user.train_items.index(item.decode())
        expected = list(user.train_items[:position])[-spec.history_length:]
        real = [h.decode() for h in history if h]
        assert real == expected and history.shape == (spec.history_length,)
    test = _all(input_fn.make_dataset(prepared, "test", batch_size=8, shuffle=False, seed=None))
    assert sorted(i.decode() for i in test[schema.ITEM_ID]) == sorted(i for u in users.values() for i in u.test_items)
    for f in spec.features:
        assert (f.name in test) == (f.role != schema.ROLE_TRAINING_ONLY)
        assert f.name in train
        assert train[f.name].shape[1:] == f.shape


def test_training_only_features_shapes_and_masks(prepared):
    spec = schema.Schema.load(prepared)
    batch = next(iter(input_fn.make_dataset(prepared, "train", batch_size=16, shuffle=True, seed=0)))
    assert batch[schema.TEACHER_ITEM_I].shape == (16, spec.teacher_pairs)
    assert batch[schema.PROBE_TRUTH].shape == (16, spec.probe_pairs)
    padded = batch[schema.TEACHER_MASK].numpy() == 0
    assert (batch[schema.TEACHER_ITEM_I].numpy()[padded] == b"").all()


def test_shuffle_is_seeded_and_covers_every_record(prepared):
    make = lambda seed: _all(input_fn.make_dataset(prepared, "train", batch_size=5, shuffle=True, seed=seed,
                                                   include_training_only=False))
    a, b, c = make(1), make(1), make(2)
    np.testing.assert_array_equal(a[schema.ITEM_ID], b[schema.ITEM_ID])
    assert not np.array_equal(a[schema.ITEM_ID], c[schema.ITEM_ID])
    assert sorted(a[schema.ITEM_ID]) == sorted(c[schema.ITEM_ID])


def test_repeat_and_drop_remainder(prepared):
    ds = input_fn.make_dataset(prepared, "val", batch_size=6, shuffle=False, seed=None, repeat=True,
                               drop_remainder=True)
    sizes = [b[schema.USER_ID].shape[0] for b in ds.take(10)]
    assert sizes == [6] * 10


def test_feature_spec_serving_parses_only_user_and_history(prepared):
    spec = input_fn.feature_spec(schema.Schema.load(prepared), [schema.ROLE_SERVING])
    assert sorted(spec) == [schema.HISTORY, schema.USER_ID]
    request = tf.train.Example(features=tf.train.Features(feature={
        schema.USER_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"user0001"]))}))
    parsed = tf.io.parse_example([request.SerializeToString()], spec)
    assert parsed[schema.HISTORY].numpy().tolist() == [[b""] * schema.Schema.load(prepared).history_length]


def test_missing_split_is_a_clear_error(prepared, tmp_path):
    for name in ("schema.json",):
        with open(os.path.join(prepared, name)) as src, open(tmp_path / name, "w") as dst:
            dst.write(src.read())
    with pytest.raises(FileNotFoundError, match="has no 'train' split"):
        input_fn.make_dataset(str(tmp_path), "train", batch_size=4, shuffle=False, seed=None)
    with pytest.raises(ValueError, match="split must be one of"):
        input_fn.make_dataset(prepared, "dev", batch_size=4, shuffle=False, seed=None)


def test_training_only_features_only_for_train(prepared):
    with pytest.raises(ValueError, match="only the train split"):
        input_fn.make_dataset(prepared, "val", batch_size=4, shuffle=False, seed=None, include_training_only=True)


def test_synthetic_stats_agree_with_side_files(prepared):
    data = PreparedData(prepared)
    stats = data.stats()
    users = data.users()
    threshold = stats.thresholds.cold_start_max_history
    assert all(u.cold_start == (u.history_length <= threshold) for u in users)
    assert any(u.cold_start for u in users) and not all(u.cold_start for u in users)
    items = data.items()
    tail = [i for i in items if i.long_tail]
    assert tail and all(i.popularity <= stats.thresholds.long_tail_max_popularity for i in tail)
    assert [i.item_id for i in items] == data.item_vocabulary()
    assert stats.records["train"] == sum(len(u.train_items) for u in users)
