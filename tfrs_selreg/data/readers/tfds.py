"""The ``tfds`` reader: a TensorFlow Datasets ``movielens/*-ratings`` dataset already on disk."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

from apache_beam.io.filesystems import FileSystems

from tfrs_selreg.data.prepared import Item
from tfrs_selreg.data.readers.base import (
    REJECT_BAD_ENCODING,
    REJECT_MISSING_FIELD,
    REJECT_UNPARSABLE_NUMBER,
    DatasetReader,
    RawInteraction,
    Rejected,
    clean_genres,
    join_path,
    reject,
)


class TfdsReader(DatasetReader):
    """A TensorFlow Datasets MovieLens ratings dataset that is already on disk; it never downloads.

    It opens ``<tfds_data_dir>/<tfds_name>/<newest version>/`` with ``tfds.builder_from_directory``
    (``tfds.load`` would try to download, and hang offline). ``tfds_data_dir`` defaults to the
    ``data_dir`` handed to the methods. Items are the distinct movies of the ratings records; genre
    labels become names as the dataset's ``movie_genres`` feature defines them. ``line`` is the
    1-based record index in the ``train`` split.
    """

    name = "tfds"
    has_timestamps = True
    has_ratings = True
    NAMES = ("movielens/100k-ratings", "movielens/1m-ratings", "movielens/latest-small-ratings")
    FEATURES = ("user_id", "movie_id", "user_rating", "timestamp", "movie_title", "movie_genres")
    _BATCH = 4096

    def __init__(self, tfds_name: str = "movielens/100k-ratings", tfds_data_dir: str | None = None):
        if tfds_name not in self.NAMES:
            raise ValueError(f"tfds_name {tfds_name!r} is not supported; use one of {list(self.NAMES)}.")
        self.tfds_name = tfds_name
        self.tfds_data_dir = tfds_data_dir

    def _version_dir(self, data_dir: str) -> str:
        """The newest version folder that holds a prepared dataset; raises FileNotFoundError if none."""
        root = self.tfds_data_dir or data_dir
        if not root:
            raise ValueError("the tfds format needs tfds_data_dir: the folder TensorFlow Datasets prepared "
                             f"{self.tfds_name} under (often ~/tensorflow_datasets).")
        dataset_dir = join_path(root, self.tfds_name)
        infos = FileSystems.match([join_path(dataset_dir, "*/dataset_info.json")])[0].metadata_list
        if not infos:
            raise FileNotFoundError(
                f"{dataset_dir} holds no prepared version (no */dataset_info.json). This reader never "
                f"downloads: prepare it once where there is network, with tfds.load({self.tfds_name!r}, "
                f"data_dir={root!r}), or pass the tfds_data_dir that holds it.")

        def version(path: str) -> tuple[int, ...]:
            name = os.path.basename(os.path.dirname(path))
            return tuple(int(p) if p.isdigit() else -1 for p in name.split("."))

        return os.path.dirname(max((m.path for m in infos), key=version))

    def _builder(self, data_dir: str):
        import tensorflow_datasets as tfds  # Heavy; only this format needs it.
        return tfds.builder_from_directory(self._version_dir(data_dir))

    def check(self, data_dir: str) -> None:
        builder = self._builder(data_dir)
        missing = [f for f in self.FEATURES if f not in builder.info.features]
        if missing:
            raise ValueError(f"{builder.data_dir} lacks features {missing}: it is not a MovieLens ratings "
                             f"dataset. Use one of {list(self.NAMES)}.")
        if "train" not in builder.info.splits or not builder.info.splits["train"].num_examples:
            raise ValueError(f"{builder.data_dir} has no records in a 'train' split.")

    def _batches(self, builder, features: tuple[str, ...]) -> Iterator[dict[str, Any]]:
        """NumPy batches of ``features`` from the train split; ``movie_genres`` is padded with -1."""
        import tensorflow as tf
        import tensorflow_datasets as tfds
        ds = builder.as_dataset(split="train", shuffle_files=False)
        ds = ds.map(lambda x: {f: x[f] for f in features})
        if "movie_genres" in features:
            padding = {f: tf.constant(-1, tf.int64) if f == "movie_genres" else tf.constant(b"")
                       for f in features}
            ds = ds.padded_batch(self._BATCH, padding_values=padding)
        else:
            ds = ds.batch(self._BATCH)
        return iter(tfds.as_numpy(ds))

    def read_interactions(self, data_dir: str) -> Iterator[RawInteraction | Rejected]:
        builder = self._builder(data_dir)
        number = 0
        for batch in self._batches(builder, ("user_id", "movie_id", "user_rating", "timestamp")):
            for user_id, item_id, rating, timestamp in zip(
                    batch["user_id"], batch["movie_id"], batch["user_rating"].tolist(),
                    batch["timestamp"].tolist()):
                number += 1
                try:
                    user, item = user_id.decode("utf-8").strip(), item_id.decode("utf-8").strip()
                except UnicodeDecodeError:
                    reason = REJECT_BAD_ENCODING
                else:
                    if user and item and math.isfinite(rating):
                        yield RawInteraction(user, item, int(timestamp), rating, self.tfds_name, number)
                        continue
                    reason = REJECT_UNPARSABLE_NUMBER if user and item else REJECT_MISSING_FIELD
                raw = b"%s,%s,%r,%r" % (user_id, item_id, rating, timestamp)
                yield reject(self.tfds_name, number, reason, raw)

    def read_items(self, data_dir: str) -> Iterator[Item | Rejected]:
        builder = self._builder(data_dir)
        names = builder.info.features["movie_genres"].feature.names
        seen = set()
        number = 0
        for batch in self._batches(builder, ("movie_id", "movie_title", "movie_genres")):
            for item_id, title, genres in zip(batch["movie_id"], batch["movie_title"], batch["movie_genres"]):
                number += 1
                if item_id in seen:
                    continue
                seen.add(item_id)
                raw = item_id + b"," + title
                try:
                    item, text = item_id.decode("utf-8").strip(), title.decode("utf-8").strip()
                except UnicodeDecodeError:
                    yield reject(self.tfds_name, number, REJECT_BAD_ENCODING, raw)
                    continue
                if not item:
                    yield reject(self.tfds_name, number, REJECT_MISSING_FIELD, raw)
                    continue
                categories = clean_genres([names[g] for g in genres.tolist() if g >= 0])
                yield Item(item, title=text, categories=categories)
