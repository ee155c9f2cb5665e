"""Item-id rows started from the teacher's text embeddings: PCA, norm matching and the two controls."""

import numpy as np
import pytest

from tests.synthetic import make_prepared
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.models import ModelConfig, build_model, item_init
from tfrs_selreg.training.config import TrainConfig


def test_pca_rows_keep_the_geometry_at_the_target_norm():
    rng = np.random.default_rng(0)
    latent = rng.standard_normal([50, 2])
    vectors = latent @ rng.standard_normal([2, 6]) + 3.0  # rank 2 around an offset
    rows = item_init.pca_rows(vectors, 4, target_norm=0.25)
    assert rows.shape == (50, 4)
    assert np.linalg.norm(rows, axis=1).mean() == pytest.approx(0.25, rel=1e-5)
    np.testing.assert_allclose(rows[:, 2:], 0.0, atol=1e-6)  # rank 2: the other directions are empty

    def distances(x):
        return np.linalg.norm(x[:, None] - x[None], axis=-1)
    d_rows, d_vectors = distances(rows.astype(np.float64)), distances(vectors)
    scale = d_rows.sum() / d_vectors.sum()
    np.testing.assert_allclose(d_rows, scale * d_vectors, atol=1e-5)  # an isometry up to scale
    assert item_init.pca_rows(vectors, 8, 1.0).shape == (50, 8)  # more dims than texts: zero columns


def test_controls_keep_the_norms_and_drop_the_assignment():
    vectors = np.random.default_rng(1).standard_normal([30, 5])
    rows = item_init.initial_rows("teacher", vectors, 3, 0.5, seed=0)
    shuffled = item_init.initial_rows("teacher_shuffled", vectors, 3, 0.5, seed=0)
    matched = item_init.initial_rows("random_matched", vectors, 3, 0.5, seed=0)
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, rows)) and not np.allclose(shuffled, rows)
    np.testing.assert_allclose(np.linalg.norm(matched, axis=1), np.linalg.norm(rows, axis=1), rtol=1e-5)
    cosine = np.sum(matched * rows, axis=1) / np.linalg.norm(rows, axis=1) ** 2
    assert np.abs(cosine).mean() < 0.8


def test_apply_sets_every_item_row_but_the_oov_slot(tmp_path):
    from tests.data.test_item_embeddings import _write

    prepared = make_prepared(str(tmp_path / "p"), n_users=12, n_items=40, seed=2)
    data = PreparedData(prepared)
    vectors = np.random.default_rng(3).standard_normal([40, 8]).astype(np.float32)
    _write(prepared, data.item_vocabulary(), vectors)
    model = build_model(ModelConfig(embedding_dim=4), data)
    before = model.item_features.id_embedding.embeddings.numpy()
    item_init.apply(model, data, "teacher", seed=0)
    after = model.item_features.id_embedding.embeddings.numpy()
    np.testing.assert_array_equal(after[0], before[0])
    expected = item_init.pca_rows(vectors, 4, float(np.linalg.norm(before[1:], axis=1).mean()))
    np.testing.assert_allclose(after[1:], expected, atol=1e-6)
    item_init.apply(model, data, "random", seed=0)  # a no-op
    np.testing.assert_array_equal(model.item_features.id_embedding.embeddings.numpy(), after)


def test_item_init_is_a_checked_config_field():
    assert TrainConfig().model.item_init == "random"
    with pytest.raises(ValueError, match="item_init: 'text' is not one of"):
        ModelConfig(item_init="text")


def test_text_adapter_appends_a_popularity_gated_projection_of_the_frozen_vector(tmp_path):
    import tensorflow as tf

    from tests.data.test_item_embeddings import _write

    prepared = make_prepared(str(tmp_path / "p"), n_users=12, n_items=40, seed=2)
    data = PreparedData(prepared)
    vectors = np.random.default_rng(3).standard_normal([40, 8]).astype(np.float32)
    _write(prepared, data.item_vocabulary(), vectors)
    model = build_model(ModelConfig(embedding_dim=4, item_text_adapter="teacher"), data)
    features = model.item_features
    assert features.output_dim == 16
    index = tf.constant([1, 5, 5, 0])
    out = features(index).numpy()
    adapter, gate = features.text_adapter, features.text_gate
    popularity = np.log1p(model.catalog.popularity[[1, 5, 5, 0]]).astype(np.float32)[:, None]
    text = np.concatenate([np.zeros([1, 8], np.float32), vectors])[[1, 5, 5, 0]]
    expected = gate(tf.constant(popularity)).numpy() * adapter(tf.constant(text)).numpy()
    np.testing.assert_allclose(out[:, 12:], expected, rtol=1e-5, atol=1e-6)
    trainable = {v.ref() for v in model.trainable_variables}
    assert {adapter.kernel.ref(), adapter.bias.ref(), gate.kernel.ref(), gate.bias.ref()} <= trainable
    assert all(v.shape.rank == 0 for v in model.non_trainable_variables)  # metric counters; the vectors are a constant
    shuffled = build_model(ModelConfig(embedding_dim=4, item_text_adapter="teacher_shuffled"), data).catalog
    assert sorted(map(tuple, shuffled.text_vectors)) == sorted(map(tuple, vectors))
    assert not np.array_equal(shuffled.text_vectors, vectors)


def test_frozen_text_columns_keep_their_starting_values_through_training(tmp_path):
    from tests.data.test_item_embeddings import _write
    from tfrs_selreg.data import input_fn
    from tfrs_selreg.training.optimizer import make_optimizer

    prepared = make_prepared(str(tmp_path / "p"), n_users=12, n_items=40, seed=2)
    data = PreparedData(prepared)
    _write(prepared, data.item_vocabulary(), np.random.default_rng(3).standard_normal([40, 8]).astype(np.float32))
    model = build_model(ModelConfig(embedding_dim=4, item_init="teacher", item_text_frozen_dims=3), data)
    item_init.apply(model, data, "teacher", seed=0)
    model.compile(optimizer=make_optimizer(0.05))
    before = model.item_features.id_embedding.embeddings.numpy()
    for batch in input_fn.make_dataset(prepared, "train", batch_size=16, shuffle=True, seed=0).take(3):
        model.train_step(batch)
    after = model.item_features.id_embedding.embeddings.numpy()
    np.testing.assert_array_equal(after[:, :3], before[:, :3])
    assert not np.allclose(after[:, 3], before[:, 3])
    with pytest.raises(ValueError, match="needs item_init teacher"):
        ModelConfig(item_text_frozen_dims=2)
