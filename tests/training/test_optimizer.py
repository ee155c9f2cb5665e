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
