"""A tiny ``movielens/100k-ratings`` TFDS dataset built offline, for the ``tfds`` reader's tests.

The builder is TFDS's own MovieLens builder (same name, config, version, features and parser), with
the download replaced by a local folder in the ml-100k layout (``u.data``, ``u.item``, ``u.user``)
that the test writes. It is not registered, so it does not clash with the real ``movielens``.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds
from tensorflow_datasets.structured import movielens


class LocalMovielens(movielens.Movielens, skip_registration=True):
    """TFDS's ``movielens`` builder reading raw ml-100k-format files from ``source_dir``."""

    name = "movielens"

    def __init__(self, *, source_dir: str, **kwargs):
        self._source_dir = source_dir
        super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: the raw files are local.
        return [tfds.core.SplitGenerator(name=tfds.Split.TRAIN, gen_kwargs={"dir_path": self._source_dir})]


def write_ml_100k(directory: str, ratings: list[str], items: list[str], users: list[str]) -> str:
    """Writes ``u.data``, ``u.item`` (latin-1) and ``u.user`` lines into ``directory``; returns it."""
    os.makedirs(directory, exist_ok=True)
    for name, lines, encoding in (("u.data", ratings, "utf-8"), ("u.item", items, "latin-1"),
                                  ("u.user", users, "utf-8")):
        with open(os.path.join(directory, name), "w", encoding=encoding, newline="\n") as f:
            f.write("".join(line + "\n" for line in lines))
    return directory


def build_100k_ratings(source_dir: str, tfds_data_dir: str) -> str:
    """Prepares ``movielens/100k-ratings`` from ``source_dir`` under ``tfds_data_dir``; returns its folder."""
    builder = LocalMovielens(source_dir=source_dir, config="100k-ratings", data_dir=tfds_data_dir)
    builder.download_and_prepare()
    return builder.data_dir
