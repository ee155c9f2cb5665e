"""Item-id rows started from the teacher's text embeddings: PCA, norm matching and the two controls."""

import numpy as np
import pytest

from tests.synthetic import make_prepared
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.models import ModelConfig, build_model, item_init
from tfrs_selreg.runs.config import TrainConfig


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

