"""Both backbones: scoring (per slot and per pair), the two-tower loss by hand, the catalog, rebuild, restore."""

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from tests.synthetic import make_prepared
from tfrs_selreg.data import input_fn, schema
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.models import (
    BACKBONES,
    ItemCatalog,
    ModelConfig,
    TwoTowerConfig,
    build_model,
)
from tfrs_selreg.models.catalog import title_tokens

SMALL = {"embedding_dim": 8}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return PreparedData(make_prepared(str(tmp_path_factory.mktemp("prepared")), n_users=24, n_items=40, seed=5))


@pytest.fixture(scope="module")
def batch(data):
    return next(iter(input_fn.make_dataset(data.directory, "train", batch_size=16, shuffle=True, seed=0)))


def test_catalog_is_aligned_with_the_item_index(data):
    catalog = ItemCatalog.from_prepared(data, max_title_tokens=4, max_categories=2, text_vocabulary_size=1000)
    items = data.items()
    assert catalog.item_ids == tuple(data.item_vocabulary())
    assert catalog.popularity[0] == 0 and list(catalog.popularity[1:]) == [i.popularity for i in items]
    assert list(catalog.long_tail[1:]) == [int(i.long_tail) for i in items]
    assert (catalog.title_token_ids[0] == 0).all() and (catalog.category_ids[0] == 0).all()
    n_tokens = [min(4, len(title_tokens(i.title))) for i in items]
    assert list((catalog.title_token_ids[1:] > 0).sum(axis=1)) == n_tokens
    assert catalog.sampling_probability.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_score_agrees_with_score_all_and_restores(backbone, data, batch, tmp_path):
    model = build_model(ModelConfig(backbone=backbone, **SMALL), data)
    item_ids = tf.concat([batch[schema.TEACHER_ITEM_I], batch[schema.ITEM_ID][:, None]], axis=1)
    scores = model.score(batch, item_ids).numpy()
    all_scores = model.score_all(batch).numpy()
    assert all_scores.shape == (16, len(data.item_vocabulary()) + 1)
    np.testing.assert_allclose(scores, np.take_along_axis(all_scores, model.item_index(item_ids).numpy(), axis=1),
                               rtol=1e-5, atol=1e-5)

    model.save_weights(str(tmp_path / "weights"))
    restored = build_model(ModelConfig(backbone=backbone, **SMALL), data)
    assert not np.allclose(restored.score_all(batch).numpy(), all_scores)
    restored.load_weights(str(tmp_path / "weights")).assert_existing_objects_matched()
    np.testing.assert_allclose(restored.score_all(batch).numpy(), all_scores, rtol=1e-6)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_pair_scorer_agrees_with_score_all(backbone, data, batch):
    model = build_model(ModelConfig(backbone=backbone, **SMALL), data)
    rng = np.random.default_rng(0)
    items = np.array(data.item_vocabulary())
    rows = rng.integers(0, 16, 50)
    item_ids = items[rng.integers(0, len(items), 50)]
    scores = model.pair_scorer(batch)(tf.constant(rows), tf.constant(item_ids)).numpy()
    all_scores = model.score_all(batch).numpy()
    np.testing.assert_allclose(scores, all_scores[rows, model.item_index(item_ids).numpy()], rtol=1e-5, atol=1e-5)
    empty = model.pair_scorer(batch)(tf.zeros([0], tf.int64), tf.zeros([0], tf.string))
    assert empty.shape == (0,)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_unknown_user_is_described_by_its_history(backbone, data):
    model = build_model(ModelConfig(backbone=backbone, **SMALL), data)
    items = data.item_vocabulary()
    length = schema.Schema.load(data.directory).history_length
    histories = tf.constant([[""] * (length - 2) + items[:2], [""] * (length - 2) + items[5:7], [""] * length])
    scores = model.score_all({schema.USER_ID: tf.constant(["nobody", "nobody", "nobody"]),
                              schema.HISTORY: histories}).numpy()
    assert np.isfinite(scores).all()
    assert not np.allclose(scores[0], scores[1])


def test_two_tower_embeddings(data, batch):
    model = build_model(ModelConfig(backbone="two_tower", **SMALL), data)
    assert model.user_embedding(batch).shape == (16, 8)
    assert model.item_embedding(batch[schema.TEACHER_ITEM_I]).shape == (16, batch[schema.TEACHER_ITEM_I].shape[1], 8)
    np.testing.assert_allclose(model.all_item_embeddings().numpy()[model.item_index(batch[schema.ITEM_ID]).numpy()],
                               model.item_embedding(batch[schema.ITEM_ID]).numpy(), rtol=1e-6, atol=1e-7)


def test_two_tower_query_tower_equals_the_projection_of_the_concatenated_features(data, batch):
    """``W_u e_user + mean(W_h f) + b`` is ``Dense([e_user ; mean f])``, in values and in every gradient."""
    tf.keras.utils.set_random_seed(3)
    model = build_model(ModelConfig(backbone="two_tower", **SMALL), data)
    index = model.item_index(batch[schema.ITEM_ID])
    weights = tf.random.stateless_normal([16, 8], [5, 6])
    with tf.GradientTape(persistent=True) as tape:
        state, positives = model._query_tower(batch, items=index)
        query, reference_positives = model.query(batch, items=index)
        reference = model.query_projection(query)
        loss = tf.reduce_sum(state * weights) + tf.reduce_sum(positives)
        loss_reference = tf.reduce_sum(reference * weights) + tf.reduce_sum(reference_positives)
    np.testing.assert_allclose(state.numpy(), reference.numpy(), atol=1e-6)
    np.testing.assert_allclose(model.user_embedding(batch).numpy(), reference.numpy(), atol=1e-6)
    variables = model.trainable_weights
    for v, a, b in zip(variables, tape.gradient(loss, variables), tape.gradient(loss_reference, variables)):
        if a is None or b is None:
            assert a is None and b is None, v.name
            continue
        np.testing.assert_allclose(tf.convert_to_tensor(a).numpy(), tf.convert_to_tensor(b).numpy(), atol=1e-5,
                                   err_msg=v.name)


@pytest.mark.parametrize("logq", [True, False])
def test_two_tower_loss_by_hand(data, logq):
    """In-batch softmax: logits q.c - log Q(c), a repeated positive is no negative, mean over the batch."""
    config = ModelConfig(backbone="two_tower", two_tower=TwoTowerConfig(logq_correction=logq), **SMALL)
    model = build_model(config, data)
    items = data.item_vocabulary()
    length = schema.Schema.load(data.directory).history_length
    features = {
        schema.USER_ID: tf.constant(["user0001", "user0002", "user0003", "user0004"]),
        schema.HISTORY: tf.constant([[""] * length] * 4),
        schema.ITEM_ID: tf.constant([items[0], items[3], items[0], items[10]]),  # rows 0 and 2 share an item
    }
    query = model.user_embedding(features).numpy()
    candidates = model.item_embedding(features[schema.ITEM_ID]).numpy()
    index = model.item_index(features[schema.ITEM_ID]).numpy()
    logits = query @ candidates.T
    if logq:
        logits = logits - np.log(model.catalog.sampling_probability[index])[None, :]
    expected = []
    for b in range(4):
        keep = [k for k in range(4) if k == b or index[k] != index[b]]
        row = logits[b, keep]
        expected.append(np.log(np.exp(row - row.max()).sum()) + row.max() - logits[b, b])
    loss = model.rec_loss(features, model.user_state(features), training=False).numpy()
    assert loss == pytest.approx(np.mean(expected), rel=1e-5)


def test_dcn_loss_is_binary_cross_entropy_on_sampled_negatives(data, batch):
    config = ModelConfig(backbone="dcn", **SMALL)
    model = build_model(dataclasses.replace(config, dcn=dataclasses.replace(config.dcn, num_negatives=3,
                                                                            negative_sampling="popularity")), data)
    loss = model.rec_loss(batch, model.user_state(batch), training=True).numpy()
    # Untrained logits are near 0, so each term is near log 2.
    assert 0.3 < loss < 1.5


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("teacher_gradient", ["user", "long_tail", "all"])
def test_teacher_gradient_scope(backbone, teacher_gradient, data, batch):
    """``teacher_gradient="user"``: the teacher loss reaches item-id rows only through the users' histories.

    With ``"all"`` it also reaches the rows of the teacher pairs' items; with ``"long_tail"`` only those of
    the long-tail ones among them.
    """
    from tfrs_selreg.regularizer import TEACHER_LOSS, RegularizerConfig

    tf.keras.utils.set_random_seed(0)
    model = build_model(ModelConfig(backbone=backbone, **SMALL), data,
                        RegularizerConfig(gate="global", teacher_gradient=teacher_gradient))
    model.loss_terms(batch, training=True)  # builds every variable
    table = model.item_features.id_embedding.embeddings
    with tf.GradientTape() as tape:
        teacher_loss = model.loss_terms(batch, training=True)[TEACHER_LOSS]
    assert float(teacher_loss) > 0
    grad = tf.convert_to_tensor(tape.gradient(teacher_loss, table)).numpy()
    moved = set(np.flatnonzero(np.abs(grad).sum(axis=1) > 0))
    history = set(model.item_index(batch[schema.HISTORY]).numpy().ravel()) - {0}
    assert moved & history
    pair_items = set(model.item_index(tf.concat([tf.reshape(batch[schema.TEACHER_ITEM_I], [-1]),
                                                  tf.reshape(batch[schema.TEACHER_ITEM_J], [-1])], 0)).numpy())
    tail = set(np.flatnonzero(model.catalog.long_tail))
    if teacher_gradient == "user":
        assert moved <= history
    elif teacher_gradient == "long_tail":
        assert moved - history and moved - history <= (pair_items & tail)
    else:
        assert moved - history and (moved - history) - tail


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("threshold, moves_items", [(0.5, True), (0.95, False)])
def test_item_gradient_threshold_on_the_pair_weight(backbone, threshold, moves_items, data, batch):
    """``item_gradient_min_weight``: only pairs with weight >= the threshold train item rows.

    A ``reliability`` gate started at 0.9 weighs pairs about ``2 * 0.9 - 1 = 0.8``: at threshold 0.5 the
    long-tail rows of pair items move, at 0.95 only the histories' rows do (the user side still learns:
    the loss is the same), while without a threshold they move too.
    """
    from tfrs_selreg.regularizer import PAIR_WEIGHT_MEAN, TEACHER_LOSS, RegularizerConfig

    def run(min_weight):
        tf.keras.utils.set_random_seed(0)
        model = build_model(ModelConfig(backbone=backbone, **SMALL), data, RegularizerConfig(
            gate="reliability", teacher_gradient="long_tail", item_gradient_min_weight=min_weight))
        model.loss_terms(batch, training=False)
        model.regularizer.gate.trainable_variables[-1].assign([math.log(0.9 / 0.1)])  # the gate at 0.9
        table = model.item_features.id_embedding.embeddings
        with tf.GradientTape() as tape:
            terms = model.loss_terms(batch, training=False)
        grad = tf.convert_to_tensor(tape.gradient(terms[TEACHER_LOSS], table)).numpy()
        history = set(model.item_index(batch[schema.HISTORY]).numpy().ravel()) - {0}
        moved = set(np.flatnonzero(np.abs(grad).sum(axis=1) > 0)) - history
        return float(terms[TEACHER_LOSS]), float(terms[PAIR_WEIGHT_MEAN]), moved, model

    loss, weight, moved, model = run(threshold)
    unthresholded_loss, _, unthresholded_moved, _ = run(0.0)
    assert 0.5 < weight < 0.95 and loss > 0 and loss == pytest.approx(unthresholded_loss, rel=1e-5)
    assert unthresholded_moved and unthresholded_moved <= set(np.flatnonzero(model.catalog.long_tail))
    assert moved == (unthresholded_moved if moves_items else set())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_all_items_scorer_equals_score_all(backbone, data, batch):
    model = build_model(ModelConfig(backbone=backbone, **SMALL), data)
    np.testing.assert_allclose(model.all_items_scorer()(batch).numpy(), model.score_all(batch).numpy(),
                               rtol=1e-5, atol=1e-6)
