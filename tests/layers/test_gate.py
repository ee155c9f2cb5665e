"""SelectiveGate: initial value, shapes, logits and Keras serialization round trips."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfrs_selreg.layers import SelectiveGate


def _features(*shape, seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(size=shape), tf.float32)


@pytest.mark.parametrize("initial_gate", [0.5, 0.2])
def test_gate_starts_at_initial_gate_for_every_input(initial_gate):
    gate = SelectiveGate(initial_gate=initial_gate)
    values = gate(_features(4, 6, 7))
    assert values.shape == (4, 6)
    np.testing.assert_allclose(values.numpy(), initial_gate, rtol=1e-6)
    logits = gate(_features(4, 6, 7), return_logits=True)
    np.testing.assert_allclose(logits.numpy(), math.log(initial_gate / (1 - initial_gate)), rtol=1e-5)


def test_linear_gate_is_sigmoid_of_affine_map():
    gate = SelectiveGate()
    x = _features(5, 3)
    gate(x)
    w, b = np.array([[1.0], [-2.0], [0.5]], np.float32), np.array([0.3], np.float32)
    gate.set_weights([w, b])
    expected = 1.0 / (1.0 + np.exp(-(x.numpy() @ w[:, 0] + b[0])))
    np.testing.assert_allclose(gate(x).numpy(), expected, rtol=1e-5)
    assert len(gate.trainable_variables) == 2


def test_hidden_gate_shapes_and_range():
    gate = SelectiveGate(hidden_units=8)
    values = gate(_features(2, 3, 4, 5))
    assert values.shape == (2, 3, 4)
    assert len(gate.trainable_variables) == 4
    assert ((values.numpy() > 0) & (values.numpy() < 1)).all()


def _with_random_weights(gate, x):
    gate(x)
    rng = np.random.default_rng(1)
    gate.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in gate.get_weights()])
    return gate(x).numpy()


@pytest.mark.parametrize("hidden_units", [0, 4])
def test_config_round_trip(hidden_units):
    gate = SelectiveGate(hidden_units=hidden_units, initial_gate=0.3, name="g")
    x = _features(6, 5)
    expected = _with_random_weights(gate, x)
    restored = SelectiveGate.from_config(gate.get_config())
    assert restored.get_config() == gate.get_config()
    restored(x)
    restored.set_weights(gate.get_weights())
    np.testing.assert_allclose(restored(x).numpy(), expected, rtol=1e-6)


def test_keras_serialize_round_trip_uses_registered_name():
    gate = SelectiveGate(hidden_units=3, initial_gate=0.7)
    serialized = tf.keras.utils.serialize_keras_object(gate)
    assert "tfrs_selreg>SelectiveGate" in str(serialized)
    restored = tf.keras.utils.deserialize_keras_object(serialized)
    assert isinstance(restored, SelectiveGate)
    assert (restored.hidden_units, restored.initial_gate) == (3, 0.7)


def test_clone_model_reproduces_outputs():
    inputs = tf.keras.Input(shape=(4, 7))
    model = tf.keras.Model(inputs, SelectiveGate(hidden_units=2)(inputs))
    x = _features(3, 4, 7)
    expected = _with_random_weights(model, x)
    clone = tf.keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    assert isinstance(clone.layers[-1], SelectiveGate)
    np.testing.assert_allclose(clone(x).numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
        ({"hidden_units": -1}, "hidden_units"),
        ({"initial_gate": 0.0}, "initial_gate"),
        ({"initial_gate": 1.0}, "initial_gate"),
])
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SelectiveGate(**kwargs)
