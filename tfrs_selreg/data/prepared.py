"""The layout of a prepared folder and a small reader for its side files.

``tfrs-selreg prepare`` (``beam_pipelines.prepare``) writes::

    OUT/
      train-SSSSS-of-NNNNN.tfrecord   tf.train.Example, features in schema.json
      val-SSSSS-of-NNNNN.tfrecord
      test-SSSSS-of-NNNNN.tfrecord
      schema.json                     tfrs_selreg.data.schema.Schema
      vocab/users.txt                 one user id per line, sorted
      vocab/items.txt                 one item id per line: catalog order (popularity desc, then id)
      items.jsonl                     the item catalog, same order as vocab/items.txt:
                                      {item_id, title, categories, description, brand, tags,
                                       popularity, long_tail}
      users-SSSSS-of-NNNNN.jsonl      per user: {user_id, train_items (chronological), val_items,
                                       test_items, history_length, cold_start}; shard s holds the users
                                       whose records are in the TFRecord shards s, sorted by user id
      stats.json                      tfrs_selreg.data.prepare_stats.PrepareStats: counts, thresholds,
                                      rejected rows by reason
      prepare_config.json             tfrs_selreg.data.prepare_config.PrepareConfig: what it was made from
      dataset_card.md
      dead_letter/*.jsonl             rejected rows with file, line and reason
      item_embeddings/                with --labels from a teacher that embeds item texts: its item
                                      embeddings (tfrs_selreg.data.item_embeddings)

Teachers, the evaluator and the exporter read the side files through :class:`PreparedData`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from typing import Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from tfrs_selreg.data.prepare_config import PREPARE_CONFIG_FILE, PrepareConfig
from tfrs_selreg.data.prepare_stats import PrepareStats
from tfrs_selreg.data.schema import SCHEMA_FILE
from tfrs_selreg.typed_config import ConfigError

USERS_VOCAB = os.path.join("vocab", "users.txt")
ITEMS_VOCAB = os.path.join("vocab", "items.txt")
ITEMS_FILE = "items.jsonl"
USERS_PREFIX = "users"
STATS_FILE = "stats.json"
DATASET_CARD = "dataset_card.md"
DEAD_LETTER_DIR = "dead_letter"


def users_shard_name(shard: int, num_shards: int) -> str:
    """The name of one users file, like the TFRecord shards' (``users-00000-of-00002.jsonl``)."""
    return f"{USERS_PREFIX}-{shard:05d}-of-{num_shards:05d}.jsonl"


def users_pattern(directory: str) -> str:
    return os.path.join(directory, f"{USERS_PREFIX}-[0-9]*-of-[0-9]*.jsonl")


def split_pattern(directory: str, split: str) -> str:
    """Glob of one split's TFRecord shards."""
    return os.path.join(directory, f"{split}-*.tfrecord")


@dataclasses.dataclass(frozen=True)
class Item:
    """One catalog entry. ``categories`` holds genres (MovieLens) or categories (Amazon)."""

    item_id: str
    title: str = ""
    categories: tuple[str, ...] = ()
    description: str = ""
    brand: str = ""
    tags: tuple[str, ...] = ()
    popularity: int = 0
    long_tail: bool = False

    def text(self, max_chars: int = 400) -> str:
        """Item text for teachers and content features: title, categories, brand, tags, description."""
        parts = [self.title]
        if self.categories:
            parts.append("(" + ", ".join(self.categories) + ")")
        if self.brand:
            parts.append(f"by {self.brand}")
        if self.tags:
            parts.append("tags: " + ", ".join(self.tags[:8]))
        if self.description:
            parts.append("- " + self.description)
        return " ".join(p for p in parts if p)[:max_chars]

    def to_json(self) -> str:
        """Its ``items.jsonl`` line (read back by :meth:`PreparedData.items`)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, ensure_ascii=False)


@dataclasses.dataclass(frozen=True)
class User:
    user_id: str
    train_items: tuple[str, ...]
    val_items: tuple[str, ...]
    test_items: tuple[str, ...]
    history_length: int
    cold_start: bool

    def to_json(self) -> str:
        """Its line of a users file (read back by :meth:`PreparedData.users`)."""
        # vars(), not dataclasses.asdict: asdict deep-copies every item id, a tenth of prepare's time.
        return json.dumps(vars(self), sort_keys=True)


_RAW = CompressionTypes.UNCOMPRESSED


def _text(path: str) -> io.TextIOWrapper:
    """``path`` opened for reading text through Beam's file systems (local or ``gs://``)."""
    return io.TextIOWrapper(FileSystems.open(path, compression_type=_RAW), encoding="utf-8")


class PreparedFolderError(ValueError):
    """A side file of the prepared folder is damaged; the message names the file and line."""


def read_jsonl(path: str):
    """The JSON objects of a side file, one per line; a damaged line is a :class:`PreparedFolderError`
    naming the file and line."""
    with _text(path) as f:
        for number, line in enumerate(f, start=1):
            try:
                row = json.loads(line)
            except ValueError as e:
                raise PreparedFolderError(f"{path}:{number}: not a JSON row ({e}); the file is truncated or "
                                          "damaged: run `tfrs-selreg prepare` again.") from None
            if not isinstance(row, dict):
                raise PreparedFolderError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}.")
            yield row


def read_users_file(path: str):
    """The users of one users file, one at a time (a Beam worker reads a file this way)."""
    for number, d in enumerate(read_jsonl(path), start=1):
        try:
            for k in ("train_items", "val_items", "test_items"):
                d[k] = tuple(d[k])
            user = User(**d)
        except (KeyError, TypeError) as e:
            raise PreparedFolderError(f"{path}:{number}: not a user row ({type(e).__name__}: {e}); "
                                      "run `tfrs-selreg prepare` again.") from None
        yield user


class PreparedData:
    """Read access to a prepared folder's side files (not the TFRecords)."""

    def __init__(self, directory: str):
        self.directory = directory
        for name in (ITEMS_FILE, STATS_FILE):
            if not FileSystems.exists(os.path.join(directory, name)):
                raise FileNotFoundError(
                    f"{os.path.join(directory, name)} not found: {directory!r} is not a folder written "
                    "by `tfrs-selreg prepare` (or that run failed).")
        self.users_files = sorted(m.path for m in FileSystems.match([users_pattern(directory)])[0].metadata_list)
        if not self.users_files:
            legacy = os.path.join(directory, "users.jsonl")
            raise PreparedFolderError(
                    f"{directory} holds no users-SSSSS-of-NNNNN.jsonl"
                    + (f" ({legacy} is the layout of an older version)" if FileSystems.exists(legacy) else "")
                    + ": run `tfrs-selreg prepare` again.")

    def _jsonl(self, name: str):
        return read_jsonl(os.path.join(self.directory, name))

    def items(self) -> list[Item]:
        out = []
        for d in self._jsonl(ITEMS_FILE):
            d["categories"] = tuple(d.get("categories", ()))
            d["tags"] = tuple(d.get("tags", ()))
            out.append(Item(**d))
        return out

    def iter_users(self):
        """Every user, one at a time, file after file (each file sorted by user id): one user's memory."""
        for path in self.users_files:
            yield from read_users_file(path)

    def users(self) -> list[User]:
        """Every user, sorted by user id."""
        return sorted(self.iter_users(), key=lambda u: u.user_id)

    def fingerprint(self) -> str:
        """SHA-256 over the files that fix what an index means: both vocabularies and ``schema.json``.

        A run trained on this folder can be evaluated or exported only with a folder of the same
        fingerprint: another preparation (other vocabulary order) would scramble the item mapping.
        """
        digest = hashlib.sha256()
        for name in (ITEMS_VOCAB, USERS_VOCAB, SCHEMA_FILE):
            digest.update(name.encode("utf-8") + b"\0")
            with FileSystems.open(os.path.join(self.directory, name), compression_type=_RAW) as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    def stats(self) -> PrepareStats:
        """``stats.json``; a file of another layout is a :class:`PreparedFolderError` naming it."""
        path = os.path.join(self.directory, STATS_FILE)
        with _text(path) as f:
            text = f.read()
        try:
            return PrepareStats.from_text(text, where=path)
        except ConfigError as e:
            raise PreparedFolderError(f"{e} Prepare the folder again with this version.") from None

    def prepare_config(self) -> Optional[PrepareConfig]:
        """``prepare_config.json``: what the folder was made from (``None`` for folders prepared before it
        was written)."""
        path = os.path.join(self.directory, PREPARE_CONFIG_FILE)
        if not FileSystems.exists(path):
            return None
        with _text(path) as f:
            text = f.read()
        try:
            return PrepareConfig.from_text(text, where=path)
        except (ConfigError, ValueError) as e:
            raise PreparedFolderError(f"{path}: {e}") from None

    def item_vocabulary(self) -> list[str]:
        with _text(os.path.join(self.directory, ITEMS_VOCAB)) as f:
            return [line.rstrip("\n") for line in f]

    def user_vocabulary(self) -> list[str]:
        with _text(os.path.join(self.directory, USERS_VOCAB)) as f:
            return [line.rstrip("\n") for line in f]
