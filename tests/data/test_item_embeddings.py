"""The teacher's item text embeddings artifact: written as TFRecords, read back aligned with a vocabulary."""


import numpy as np
import pytest

from tfrs_selreg.data import item_embeddings


def _write(directory, ids, vectors, shards=2):
    item_embeddings.write(str(directory), ids, vectors, teacher="t", model="m", shards=shards)
    return str(directory)


def test_load_aligns_rows_with_the_vocabulary(tmp_path):
    ids = ["a", "b", "c", "d"]
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    directory = _write(tmp_path, ids, vectors)
    assert item_embeddings.exists(directory) and item_embeddings.info(directory)["dim"] == 3
    out = item_embeddings.load(directory, ["c", "a", "d"])  # "b" is not in this folder's vocabulary
    np.testing.assert_array_equal(out, vectors[[2, 0, 3]])


def test_missing_repeated_or_malformed_items_are_errors(tmp_path):
    vectors = np.ones([2, 3], np.float32)
    with pytest.raises(item_embeddings.ItemEmbeddingsError, match=r"1 of 3 vocabulary items .*\['z'\]"):
        item_embeddings.load(_write(tmp_path / "missing", ["a", "b"], vectors), ["a", "b", "z"])
    with pytest.raises(item_embeddings.ItemEmbeddingsError, match="'a' appears twice"):
        item_embeddings.load(_write(tmp_path / "twice", ["a", "a"], vectors), ["a"])
    directory = _write(tmp_path / "short", ["a", "b"], vectors)
    item_embeddings.write_info(directory, teacher="t", model="m", dim=4, items=2)
    with pytest.raises(item_embeddings.ItemEmbeddingsError, match="expected item_id and a 4-float embedding"):
        item_embeddings.load(directory, ["a", "b"])
    with pytest.raises(item_embeddings.ItemEmbeddingsError, match="no teacher item embeddings.*--teacher embedding"):
        item_embeddings.load(str(tmp_path / "none"), ["a"])
