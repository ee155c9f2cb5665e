"""The selective gate: how far the teacher can be trusted for one pair (or one user-item).

S-LLMR multiplies each teacher pair's loss by a gate value in (0, 1) computed from features of the
user and the items (cold-start flag, long-tail counts, popularity, model uncertainty, teacher
confidence). The gate itself is a tiny classifier::

    a = sigmoid(w . x + b)                             hidden_units = 0 (the paper's gate)
    a = sigmoid(w . relu(W x + c) + b)                 hidden_units > 0

The output kernel starts at zero and the bias at ``logit(initial_gate)``, so before training every
pair gets exactly ``initial_gate``. Which features it sees and what trains it (the total loss in the
paper, a reliability cross-entropy on probe pairs in this project) is decided by
``tfrs_selreg.regularizer``; this layer only maps ``[..., F]`` features to ``[...]`` gate values.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="tfrs_selreg")
class SelectiveGate(tf.keras.layers.Layer):
    """Maps feature vectors ``[..., F]`` to gate values ``a`` in (0, 1) of shape ``[...]``.

    Args:
      hidden_units: width of one ReLU hidden layer; 0 (default) is the linear gate of the paper.
      initial_gate: the gate value of every input before training, in (0, 1).

    Call args:
      features: float tensor ``[..., F]``.
      return_logits: return ``w . x + b`` instead of its sigmoid (for a stable cross-entropy).
    """

    def __init__(self, hidden_units: int = 0, initial_gate: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if hidden_units < 0:
            raise ValueError(f"SelectiveGate: hidden_units must be >= 0, got {hidden_units}.")
        if not 0.0 < initial_gate < 1.0:
            raise ValueError(f"SelectiveGate: initial_gate must be in (0, 1), got {initial_gate}.")
        self.hidden_units = hidden_units
        self.initial_gate = initial_gate
        self._hidden = (tf.keras.layers.Dense(hidden_units, activation="relu", name="hidden")
                        if hidden_units else None)
        self._output = tf.keras.layers.Dense(
                1,
                kernel_initializer="zeros",
                bias_initializer=tf.keras.initializers.Constant(math.log(initial_gate / (1.0 - initial_gate))),
                name="logit")

    def build(self, input_shape: tf.TensorShape) -> None:
        input_shape = tf.TensorShape(input_shape)
        output_input_shape = input_shape
        if self._hidden is not None:
            self._hidden.build(input_shape)
            output_input_shape = input_shape[:-1].concatenate([self.hidden_units])
        self._output.build(output_input_shape)
        super().build(input_shape)

    def call(self, features: tf.Tensor, return_logits: bool = False) -> tf.Tensor:
        x = features if self._hidden is None else self._hidden(features)
        logits = tf.squeeze(self._output(x), axis=-1)
        return logits if return_logits else tf.sigmoid(logits)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "hidden_units": self.hidden_units, "initial_gate": self.initial_gate}
