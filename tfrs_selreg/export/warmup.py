"""SavedModel warm-up requests for TF Serving.

TF Serving replays ``<version>/assets.extra/tf_serving_warmup_requests`` (a TFRecord file of
``tensorflow_serving.apis.prediction_log_pb2.PredictionLog``) when it loads a version, before the
version takes traffic, so the first real requests do not pay for graph optimization and memory
allocation. Every signature gets one ``PredictLog`` per batch size (1 and a few larger ones), with
known user ids and history items of the training data and, in the last row, an unknown user with an
empty history (the OOV path). TF Serving replays at most 1,000 records.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from tfrs_selreg.data import schema
from tfrs_selreg.export import signatures as sig

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
BATCH_SIZES = (1, 8, 64)
# Candidates per row in score_items warm-up requests.
CANDIDATES = 20
UNKNOWN_USER = "unknown-user"


def warmup_path(saved_model_dir: str) -> str:
    return os.path.join(saved_model_dir, WARMUP_DIR, WARMUP_FILE)


def request_inputs(signature: str, user_ids: Sequence[str], item_ids: Sequence[str], history_length: int,
                   batch_size: int) -> dict[str, np.ndarray]:
    """Inputs of one request to ``signature`` for ``batch_size`` rows.

    Row ``r`` is user ``user_ids[r]`` (cycled) with a history of ``r % (L + 1)`` known items, left-padded with
    ``""`` to ``L``; with more than one row, the last is an unknown user with an empty history.
    """
    users = [user_ids[r % len(user_ids)] for r in range(batch_size)]
    histories = []
    for r in range(batch_size):
        n = r % (history_length + 1)
        items = [item_ids[(r + j) % len(item_ids)] for j in range(n)]
        histories.append([""] * (history_length - n) + items)
    if batch_size > 1:
        users[-1], histories[-1] = UNKNOWN_USER, [""] * history_length
    if signature == sig.SERVING_TF_EXAMPLE:
        examples = [tf.train.Example(features=tf.train.Features(feature={
            schema.USER_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[u.encode()])),
            schema.HISTORY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[h.encode() for h in history])),
        })).SerializeToString() for u, history in zip(users, histories)]
        return {sig.EXAMPLES: np.array(examples, dtype=object)}
    inputs = {schema.USER_ID: np.array(users, dtype=object), schema.HISTORY: np.array(histories, dtype=object)}
    if signature == sig.SCORE_ITEMS:
        inputs[sig.ITEM_IDS] = np.array([[item_ids[(r * CANDIDATES + j) % len(item_ids)] for j in range(CANDIDATES)]
                                         for r in range(batch_size)], dtype=object)
    return inputs


def prediction_log(model_name: str, signature: str,
                   inputs: Mapping[str, np.ndarray]) -> prediction_log_pb2.PredictionLog:
    """A ``PredictionLog`` whose ``PredictLog.request`` calls ``signature`` with ``inputs``."""
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def write_warmup(saved_model_dir: str, model_name: str, user_ids: Sequence[str], item_ids: Sequence[str],
                 history_length: int, batch_sizes: Sequence[int] = BATCH_SIZES) -> str:
    """Writes one warm-up record per signature and batch size; returns the file's path."""
    path = warmup_path(saved_model_dir)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for signature in sig.SIGNATURES:
            for batch_size in batch_sizes:
                inputs = request_inputs(signature, user_ids, item_ids, history_length, batch_size)
                writer.write(prediction_log(model_name, signature, inputs).SerializeToString())
    return path
