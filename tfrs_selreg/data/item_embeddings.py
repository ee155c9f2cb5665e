"""The teacher's item text embeddings: an artifact of a labels folder, read by training without the teacher.

``tfrs-selreg score`` with a teacher that embeds item texts (the ``embedding`` teacher) also writes::

    LABELS/item_embeddings/part-SSSSS-of-NNNNN.tfrecord   tf.train.Example {item_id: bytes, embedding: float[D]}
    LABELS/item_embeddings/info.json                      {"teacher", "model", "dim", "items"}

one record per catalog item (every item of ``vocab/items.txt``), and ``tfrs-selreg prepare --labels LABELS``
copies the folder into the joined prepared folder. :func:`load` returns the matrix aligned with the
prepared folder's vocabulary (row ``k`` is the item on line ``k`` of ``vocab/items.txt``); a missing,
repeated or malformed item is an error that names the file, never a zero row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

import numpy as np

DIR = "item_embeddings"
PREFIX = "part"
SUFFIX = ".tfrecord"
INFO_FILE = "info.json"
ITEM_ID = "item_id"
EMBEDDING = "embedding"


class ItemEmbeddingsError(ValueError):
    """The item embeddings cannot be used; the message names the folder and what to re-run."""


def folder(directory: str) -> str:
    return os.path.join(directory, DIR)


def exists(directory: str) -> bool:
    import tensorflow as tf

    return tf.io.gfile.exists(os.path.join(folder(directory), INFO_FILE))


def to_example_bytes(item_id: str, vector: np.ndarray) -> bytes:
    """One record: ``{item_id: [bytes], embedding: float[D]}`` as a serialized ``tf.train.Example``."""
    from tensorflow.core.example import example_pb2, feature_pb2

    feature = {ITEM_ID: feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[item_id.encode("utf-8")])),
               EMBEDDING: feature_pb2.Feature(float_list=feature_pb2.FloatList(value=np.asarray(vector).tolist()))}
    return example_pb2.Example(features=feature_pb2.Features(feature=feature)).SerializeToString()


def write_info(directory: str, *, teacher: str, model: str, dim: int, items: int) -> None:
    """Writes ``info.json`` through Beam's file systems (the score job writes it; ``gs://`` works)."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(os.path.join(folder(directory), INFO_FILE)) as f:
        f.write((json.dumps({"teacher": teacher, "model": model, "dim": dim, "items": items}, indent=2) + "\n")
                .encode("utf-8"))


def write(directory: str, item_ids: Sequence[str], vectors: np.ndarray, *, teacher: str, model: str,
          shards: int = 1) -> None:
    """Writes ``directory/item_embeddings/`` from in-memory vectors (the score job writes it with Beam)."""
    import tensorflow as tf

    vectors = np.asarray(vectors, np.float32)
    tf.io.gfile.makedirs(folder(directory))
    rows = list(zip(item_ids, vectors))
    for s in range(shards):
        with tf.io.TFRecordWriter(os.path.join(folder(directory), f"{PREFIX}-{s:05d}-of-{shards:05d}{SUFFIX}")) as w:
            for item_id, vector in rows[s::shards]:
                w.write(to_example_bytes(item_id, vector))
    write_info(directory, teacher=teacher, model=model, dim=int(vectors.shape[1]), items=len(rows))


def info(directory: str) -> dict:
    import tensorflow as tf

    path = os.path.join(folder(directory), INFO_FILE)
    if not tf.io.gfile.exists(path):
        raise ItemEmbeddingsError(
            f"{path} does not exist: this folder has no teacher item embeddings. Score with a teacher that "
            "embeds item texts (`tfrs-selreg score --teacher embedding`) and join its labels folder with "
            "`tfrs-selreg prepare --labels LABELS`.")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _records(paths: Iterable[str]):
    import tensorflow as tf

    for path in paths:
        for n, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
            yield path, n, record


def load(directory: str, vocabulary: Sequence[str]) -> np.ndarray:
    """``[len(vocabulary), D]`` float32: row ``k`` is the embedding of ``vocabulary[k]``."""
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    meta = info(directory)
    dim = int(meta["dim"])
    paths = sorted(tf.io.gfile.glob(os.path.join(folder(directory), f"{PREFIX}*{SUFFIX}")))
    index = {item_id: k for k, item_id in enumerate(vocabulary)}
    out = np.zeros([len(vocabulary), dim], np.float32)
    seen = np.zeros([len(vocabulary)], bool)
    for path, n, record in _records(paths):
        example = example_pb2.Example.FromString(record)
        feature = example.features.feature
        item_id = feature[ITEM_ID].bytes_list.value[0].decode("utf-8") if ITEM_ID in feature else None
        vector = list(feature[EMBEDDING].float_list.value) if EMBEDDING in feature else []
        if item_id is None or len(vector) != dim:
            raise ItemEmbeddingsError(f"{path}, record {n}: expected {ITEM_ID} and a {dim}-float {EMBEDDING}, "
                                      f"got item {item_id!r} with {len(vector)} floats; re-run `tfrs-selreg score`")
        k = index.get(item_id)
        if k is None:
            continue  # an item the joined folder dropped (e.g. filtered); it has no row to fill
        if seen[k]:
            raise ItemEmbeddingsError(f"{path}, record {n}: item {item_id!r} appears twice; re-run `tfrs-selreg score`")
        out[k], seen[k] = vector, True
    if not seen.all():
        missing = [vocabulary[k] for k in np.flatnonzero(~seen)[:3]]
        raise ItemEmbeddingsError(
            f"{folder(directory)}: {int((~seen).sum())} of {len(vocabulary)} vocabulary items have no embedding "
            f"(first: {missing}); the labels were scored on another prepared folder: re-run `tfrs-selreg score` "
            "on this one")
    return out
