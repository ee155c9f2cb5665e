"""The training split in memory: the same examples as the TFRecords, ids as indices, seeded passes."""

import numpy as np
import pytest
import tensorflow as tf

from tests.data.test_input_fn import _all
from tests.synthetic import make_prepared
from tfrs_selreg.data import input_fn, schema
from tfrs_selreg.data.in_memory import InMemorySplit, estimate_bytes
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.models import BACKBONES, ModelConfig, build_model
from tfrs_selreg.regularizer import RegularizerConfig

ROLES = (schema.ROLE_SERVING, schema.ROLE_EXAMPLE, schema.ROLE_TRAINING_ONLY)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(str(tmp_path_factory.mktemp("prepared")), n_users=20, n_items=40, seed=4)


@pytest.fixture(scope="module")
def split(prepared):
    return InMemorySplit.load(prepared, "train", ROLES)


def _keys(columns):
    """One sortable key per example: user, item and history (indices), so passes compare as multisets."""
    return sorted(zip(columns[schema.USER_ID].tolist(), columns[schema.ITEM_ID].tolist(),
                      map(tuple, columns[schema.HISTORY].tolist())))


def test_columns_are_the_records_with_ids_as_vocabulary_indices(prepared, split):
    data = PreparedData(prepared)
    users = {u: k + 1 for k, u in enumerate(data.user_vocabulary())}
    items = {i: k + 1 for k, i in enumerate(data.item_vocabulary())}
    streamed = _all(input_fn.make_dataset(prepared, "train", batch_size=64, shuffle=False, seed=None))
    # The records mapped by hand; rows are compared after sorting both sides by (user, item).
    def mapped(name, values):
        table = users if name == schema.USER_ID else items
        return np.vectorize(lambda b: table.get(b.decode(), 0))(values) if values.dtype == object else values
    expected = {name: mapped(name, v) for name, v in streamed.items()}
    assert split.num_records == len(streamed[schema.USER_ID])
    got = {k: v.numpy() for k, v in split.columns.items()}
    assert got[schema.TEACHER_ITEM_I].dtype == np.int32 and got[schema.TEACHER_PREF].dtype == np.float32
    order_got = np.lexsort([got[schema.ITEM_ID], got[schema.USER_ID]])
    order_expected = np.lexsort([expected[schema.ITEM_ID], expected[schema.USER_ID]])
    for name in expected:
        np.testing.assert_array_equal(got[name][order_got], expected[name][order_expected], err_msg=name)
    assert split.nbytes <= estimate_bytes(schema.Schema.load(prepared), ROLES, split.num_records)


def test_every_pass_is_a_seeded_permutation_of_all_examples(prepared, split):
    def one_pass(seed, batch_size=7):
        return _all(input_fn.make_dataset(prepared, "train", batch_size=batch_size, shuffle=True, seed=seed,
                                          in_memory=split))
    a, b, c = one_pass(0), one_pass(0), one_pass(1)
    assert _keys(a) == _keys({k: v.numpy() for k, v in split.columns.items()})
    np.testing.assert_array_equal(a[schema.ITEM_ID], b[schema.ITEM_ID])
    assert not np.array_equal(a[schema.ITEM_ID], c[schema.ITEM_ID])
    # Repeated passes are reshuffled, and each pass of full batches drops at most batch_size - 1 examples.
    repeated = input_fn.make_dataset(prepared, "train", batch_size=8, shuffle=True, seed=0, repeat=True,
                                     drop_remainder=True, in_memory=split)
    per_pass = split.num_records // 8
    batches = [x[schema.ITEM_ID].numpy() for x in repeated.take(2 * per_pass)]
    assert not np.array_equal(np.concatenate(batches[:per_pass]), np.concatenate(batches[per_pass:]))
    assert len(set(np.concatenate(batches[:per_pass]).tolist())) > 1


def test_a_batch_larger_than_the_split_is_a_clear_error(prepared, split):
    with pytest.raises(ValueError, match="batch_size .* larger than"):
        input_fn.make_dataset(prepared, "train", batch_size=split.num_records + 1, shuffle=True, seed=0,
                              repeat=True, drop_remainder=True, in_memory=split)


def test_in_memory_features_must_cover_the_roles(prepared, split):
    serving_only = InMemorySplit.load(prepared, "train", (schema.ROLE_SERVING,))
    with pytest.raises(ValueError, match="with these roles at least"):
        input_fn.make_dataset(prepared, "train", batch_size=4, shuffle=False, seed=None, in_memory=serving_only)
    # A split holding more roles gives the batches of the roles asked for only (a `none` run reads no teacher).
    batch = next(iter(input_fn.make_dataset(prepared, "train", batch_size=4, shuffle=False, seed=None,
                                            include_training_only=False, in_memory=split)))
    expected = input_fn.feature_spec(schema.Schema.load(prepared), (schema.ROLE_SERVING, schema.ROLE_EXAMPLE))
    assert set(batch) == set(expected) and schema.TEACHER_PREF in split.columns
    np.testing.assert_array_equal(batch[schema.ITEM_ID], split.columns[schema.ITEM_ID][:4])


@pytest.mark.parametrize("backbone", BACKBONES)
def test_the_objective_is_the_same_on_ids_and_on_indices(prepared, split, backbone):
    data = PreparedData(prepared)
    tf.keras.utils.set_random_seed(0)
    model = build_model(ModelConfig(backbone=backbone, embedding_dim=8), data, RegularizerConfig(gate="reliability"))
    strings = next(iter(input_fn.make_dataset(prepared, "train", batch_size=32, shuffle=False, seed=None)))
    users = {u: k + 1 for k, u in enumerate(data.user_vocabulary())}
    items = {i: k + 1 for k, i in enumerate(data.item_vocabulary())}
    indices = {name: tf.constant(np.vectorize(lambda b, t=(users if name == schema.USER_ID else items): t[b.decode()]
                                              if b else 0)(v.numpy()).astype(np.int32))
               if v.dtype == tf.string else v for name, v in strings.items()}
    for kind in (strings, indices):
        tf.random.set_seed(5)  # the same negatives (DCN) and probe subset
        terms = model.loss_terms(kind, training=False)
        if kind is strings:
            expected = {k: v.numpy() for k, v in terms.items()}
    for key, value in terms.items():
        np.testing.assert_allclose(value.numpy(), expected[key], rtol=1e-6, atol=1e-6, err_msg=key)
