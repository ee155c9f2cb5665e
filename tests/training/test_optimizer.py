"""The training optimizer: fused Adam on densified gradients takes tf-keras Adam's sparse steps."""

import numpy as np
import tensorflow as tf

from tfrs_selreg.training.optimizer import make_optimizer


def test_fused_dense_adam_equals_tf_keras_adam_on_sparse_gradients():
    init = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    fused, reference = tf.Variable(init), tf.Variable(init)
    fused_opt, reference_opt = make_optimizer(0.01), tf.keras.optimizers.Adam(0.01)
    rng = np.random.default_rng(1)
    for step in range(4):
        rows = tf.constant(rng.choice(6, size=3), tf.int64)  # repeated rows and untouched rows
        values = tf.constant(rng.normal(size=(3, 3)).astype(np.float32))
        sparse = tf.IndexedSlices(values, rows, tf.constant([6, 3], tf.int64))
        reference_opt.apply_gradients([(sparse, reference)])
        fused_opt.apply_gradients([(tf.convert_to_tensor(sparse), fused)])
        np.testing.assert_allclose(fused.numpy(), reference.numpy(), rtol=1e-5, atol=1e-6, err_msg=f"step {step}")
    # Adam's closed form for one row: the first step moves every touched weight by about the learning rate.
    assert not np.allclose(fused.numpy(), init)


def test_adagrad_embedding_steps_scale_with_the_gradient_and_leave_other_rows_alone(tmp_path):
    """The optimizer split of ``train_step``: Adagrad's closed form on the touched rows of every table,
    untouched rows unchanged, dense layers on Adam."""
    from tests.synthetic import make_prepared
    from tfrs_selreg.data import input_fn
    from tfrs_selreg.data.prepared import PreparedData
    from tfrs_selreg.models import ModelConfig, build_model
    from tfrs_selreg.training.optimizer import ADAGRAD_INITIAL_ACCUMULATOR, make_embedding_optimizer

    prepared = make_prepared(str(tmp_path / "p"), n_users=20, n_items=40, seed=1)
    model = build_model(ModelConfig(embedding_dim=4), PreparedData(prepared))
    model.compile(optimizer=make_optimizer(1e-3))
    model.embedding_optimizer = make_embedding_optimizer("adagrad", 0.1)
    batch = next(iter(input_fn.make_dataset(prepared, "train", batch_size=16, shuffle=False, seed=0)))
    tables = model.embedding_tables()
    features = model.item_features
    assert len(tables) == 4 and all(any(t is own for t in tables) for own in (
        features.id_embedding.embeddings, features.token_embedding.embeddings,
        features.category_embedding.embeddings, model.query_features.user_embedding.embeddings))
    dense = [v for v in model.trainable_variables if all(v is not t for t in tables)]
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, training=True)
    gradients = tape.gradient(loss, tables + dense)
    before = [v.numpy() for v in tables + dense]
    model.train_step(batch)
    for table, g, w0 in zip(tables, gradients, before):
        g = tf.convert_to_tensor(g).numpy()
        touched = np.any(g != 0, axis=1)
        expected = w0 - 0.1 * g / np.sqrt(ADAGRAD_INITIAL_ACCUMULATOR + g ** 2)
        np.testing.assert_allclose(table.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=table.name)
        np.testing.assert_array_equal(table.numpy()[~touched], w0[~touched])
    for variable, g, w0 in zip(dense, gradients[len(tables):], before[len(tables):]):
        if g is not None:  # Adam's first step: lr g / (|g| + eps / sqrt(1 - beta_2)), about lr whatever |g|
            g = tf.convert_to_tensor(g).numpy()
            expected = w0 - 1e-3 * g / (np.abs(g) + 1e-7 / np.sqrt(1 - 0.999))
            np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-4, atol=1e-7, err_msg=variable.name)
