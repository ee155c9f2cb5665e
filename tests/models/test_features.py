"""Content features as sparse segment means: the same values and gradients as padded gathers."""

import numpy as np
import pytest
import tensorflow as tf

from tests.synthetic import make_prepared
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.models import ItemCatalog
from tfrs_selreg.models.features import ItemFeatures, QueryFeatures

D = 8


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    data = PreparedData(make_prepared(str(tmp_path_factory.mktemp("prepared")), n_users=12, n_items=30, seed=2))
    catalog = ItemCatalog.from_prepared(data, max_title_tokens=6, max_categories=3, text_vocabulary_size=1000)
    # An item without title tokens and one without categories: their means must be 0, as with padding.
    catalog.title_token_ids[3] = 0
    catalog.category_ids[4] = 0
    return catalog


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """The padded reference mean: ``sum_t mask_t v_t / max(1, sum_t mask_t)`` over axis -2."""
    mask = tf.cast(mask, values.dtype)[..., None]
    return tf.reduce_sum(values * mask, axis=-2) / tf.maximum(tf.reduce_sum(mask, axis=-2), 1.0)


def _padded(layer: ItemFeatures, catalog: ItemCatalog, index: tf.Tensor) -> tf.Tensor:
    """The padded-gather reference: every slot gathered, padding masked out of the mean."""
    tokens = tf.gather(tf.constant(catalog.title_token_ids), index)
    categories = tf.gather(tf.constant(catalog.category_ids), index)
    return tf.concat([tf.gather(layer.id_embedding.embeddings, index),
                      masked_mean(tf.gather(layer.token_embedding.embeddings, tokens), tokens > 0),
                      masked_mean(tf.gather(layer.category_embedding.embeddings, categories), categories > 0)], -1)


def _dense(gradients):
    return [tf.convert_to_tensor(g).numpy() for g in gradients]


def test_item_features_match_padded_gathers_in_values_and_gradients(catalog):
    tf.keras.utils.set_random_seed(0)
    layer = ItemFeatures(catalog, D)
    index = tf.constant([[1, 2, 3, 4], [0, 5, 5, catalog.num_items]])
    weights = tf.random.stateless_normal([2, 4, 3 * D], [1, 2])
    with tf.GradientTape(persistent=True) as tape:
        sparse = layer(index)
        padded = _padded(layer, catalog, index)
        loss_sparse, loss_padded = tf.reduce_sum(sparse * weights), tf.reduce_sum(padded * weights)
    np.testing.assert_allclose(sparse.numpy(), padded.numpy(), atol=1e-6)
    assert np.abs(sparse.numpy()[0, 2, D:2 * D]).max() == 0 and np.abs(sparse.numpy()[0, 3, 2 * D:]).max() == 0
    gradients = zip(_dense(tape.gradient(loss_sparse, layer.weights)),
                    _dense(tape.gradient(loss_padded, layer.weights)))
    for a, b in gradients:
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_history_mean_matches_the_masked_mean_and_shares_the_items_pass(catalog):
    tf.keras.utils.set_random_seed(1)
    items = ItemFeatures(catalog, D)
    query = QueryFeatures([f"u{k}" for k in range(5)], items, D)
    # A repeated item, an all-padding row, padding in the middle.
    history = tf.constant([[1, 2, 2, 7], [0, 0, 0, 0], [5, 0, 9, 3]])
    mask = history > 0
    positives = tf.constant([2, 11, 5])
    weights = tf.random.stateless_normal([3, 4 * D], [3, 4])
    with tf.GradientTape(persistent=True) as tape:
        out, positive_features = query(tf.constant(["u1", "nobody", "u3"]), history, mask, items=positives)
        reference = tf.concat([query.user_embedding(query.user_lookup(tf.constant(["u1", "nobody", "u3"]))),
                               masked_mean(_padded(items, catalog, history), mask)], axis=-1)
        loss, loss_reference = tf.reduce_sum(out * weights), tf.reduce_sum(reference * weights)
    np.testing.assert_allclose(out.numpy(), reference.numpy(), atol=1e-6)
    assert np.abs(out.numpy()[1, D:]).max() == 0
    np.testing.assert_allclose(positive_features.numpy(), _padded(items, catalog, positives).numpy(), atol=1e-6)
    np.testing.assert_allclose(query(tf.constant(["u1", "nobody", "u3"]), history, mask).numpy(), out.numpy())
    variables = query.trainable_weights
    for a, b in zip(_dense(tape.gradient(loss, variables)), _dense(tape.gradient(loss_reference, variables))):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_user_ids_and_user_indices_give_the_same_query(catalog):
    items = ItemFeatures(catalog, D)
    query = QueryFeatures(["a", "b"], items, D)
    history, mask = tf.constant([[1, 2]]), tf.constant([[True, True]])
    by_id = query(tf.constant(["b", "zz"]), tf.tile(history, [2, 1]), tf.tile(mask, [2, 1]))
    by_index = query(tf.constant([2, 0]), tf.tile(history, [2, 1]), tf.tile(mask, [2, 1]))
    np.testing.assert_array_equal(by_id.numpy(), by_index.numpy())
