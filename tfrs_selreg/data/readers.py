"""Readers of raw interaction data: one per source format, parsing only.

``tfrs-selreg prepare`` (``beam_pipelines.prepare``) turns a folder of raw files into a prepared
folder. It first calls :meth:`DatasetReader.check` on the driver, so that a missing or empty file is a
clear error before any pipeline starts; then a Beam worker runs :meth:`DatasetReader.read_interactions`
and :meth:`DatasetReader.read_items` inside a ``FlatMap`` over the single element ``data_dir``. Readers
are therefore plain Python generators, and they open files through Beam's ``FileSystems`` so that
``gs://`` folders work on Dataflow.

A reader turns every data line (or JSON record, or TFDS record) into exactly one of:

- a :class:`RawInteraction` (or an :class:`~tfrs_selreg.data.prepared.Item`), or
- a :class:`Rejected`, with the file, the 1-based line and a short reason, when the line has the
  wrong number of columns, a number that does not parse, an empty required field, or bytes that do
  not decode. Malformed rows are never raised and never silently dropped: the pipeline writes them
  to ``dead_letter/`` and counts them by reason. Blank lines hold no row and are skipped.

Readers do not filter by rating, dedupe, or check that an interaction's item is in the catalog: the
pipeline does that, so that it can count what it removed.

Formats (``data_dir`` holds the files named here):

===================  =========================================================================
``ml-latest-small``  ``ratings.csv`` (userId,movieId,rating,timestamp), ``movies.csv``
                     (movieId,title,genres), optional ``tags.csv`` (userId,movieId,tag,timestamp)
``ml-1m``            ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) and ``movies.dat``
                     (``MovieID::Title::Genres``, latin-1)
``ml-100k``          ``u.data`` (tab-separated user, item, rating, timestamp), ``u.item``
                     (``|``-separated, latin-1), optional ``u.genre``
``amazon-json``      one ``*.inter.json`` (``{user: [item, ...]}``, chronological) and one
                     ``*.item.json`` (``{item: {title, description, brand, categories}}``)
``csv``              ``interactions.csv`` (user_id, item_id, optional timestamp, rating) and
                     ``items.csv`` (item_id, title, optional description, categories, brand, tags)
``tfds``             a TensorFlow Datasets ``movielens/*-ratings`` dataset already on disk
===================  =========================================================================
"""

from __future__ import annotations

import abc
import collections
import csv
import dataclasses
import html
import inspect
import json
import math
import os
import re
from collections.abc import Iterator
from typing import Any, ClassVar

from apache_beam.io.filesystems import FileSystems

from tfrs_selreg.data.prepared import Item

# Reasons a raw row is rejected; they are the keys of the rejected-row counts in stats.json.
REJECT_WRONG_COLUMN_COUNT = "wrong_column_count"
REJECT_UNPARSABLE_NUMBER = "unparsable_number"
REJECT_MISSING_FIELD = "missing_field"
REJECT_BAD_ENCODING = "bad_encoding"
REJECT_BAD_JSON = "bad_json"
REJECT_WRONG_TYPE = "wrong_type"
REJECT_OUT_OF_RANGE = "number_out_of_range"
REJECT_DUPLICATE_KEY = "duplicate_key"

# What a TFRecord feature can hold: timestamps are int64, ratings float32.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT32_MAX = 3.4028234663852886e38

MAX_RAW_CHARS = 500
MAX_TAGS = 10

# Genre labels that say "no genre" rather than naming one (ml-latest, ml-100k, TFDS).
_NO_GENRE = frozenset({"(no genres listed)", "unknown", "Unknown"})

# The genres of ml-100k's u.genre in flag order, used when u.genre is absent.
ML_100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)

# How much of a file check() reads to validate its header and to see that it holds a row.
_HEAD_BYTES = 1 << 16


@dataclasses.dataclass(frozen=True, slots=True)
class RawInteraction:
    """One interaction as it appears in the source, before any filtering.

    Attributes:
        user_id: the source's user id, as text.
        item_id: the source's item id, as text.
        timestamp: unix seconds, or a position in the file or list when the reader's
            ``has_timestamps`` is False (the order within a user is still chronological).
        rating: the explicit rating, or None when the source has no ratings.
        source: the file path (or TFDS name) the row came from.
        line: 1-based line number in that file (record index for TFDS and JSON).
    """

    user_id: str
    item_id: str
    timestamp: int
    rating: float | None
    source: str
    line: int


@dataclasses.dataclass(frozen=True, slots=True)
class Rejected:
    """A malformed raw row: where it was, why it was rejected, and its text (at most 500 chars)."""

    source: str
    line: int
    reason: str
    raw: str


def _rejected(source: str, line: int, reason: str, raw: str | bytes) -> Rejected:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    return Rejected(source, line, reason, raw[:MAX_RAW_CHARS])


class DatasetReader(abc.ABC):
    """Parses one source format into interactions and catalog items.

    Attributes:
        name: the format's key in :data:`READERS`.
        has_timestamps: whether ``RawInteraction.timestamp`` is unix seconds (True) or a position.
        has_ratings: whether ``RawInteraction.rating`` is set.
    """

    name: str
    has_timestamps: bool
    has_ratings: bool

    @abc.abstractmethod
    def check(self, data_dir: str) -> None:
        """Raises FileNotFoundError or ValueError, naming the file and what to pass, when this reader
        cannot read ``data_dir`` (a file is missing, empty, or not in this format)."""

    @abc.abstractmethod
    def read_interactions(self, data_dir: str) -> Iterator[RawInteraction | Rejected]:
        """Yields one RawInteraction or Rejected per data row, in file order."""

    @abc.abstractmethod
    def read_items(self, data_dir: str) -> Iterator[Item | Rejected]:
        """Yields one Item (popularity 0, not long-tail) or Rejected per catalog row, in file order."""


# ---------------------------------------------------------------------------------------------
# Files and lines.


def _path(data_dir: str, name: str) -> str:
    return FileSystems.join(data_dir, name)


def _read_bytes(path: str, size: int = -1) -> bytes:
    f = FileSystems.open(path)
    try:
        return f.read(size)
    finally:
        f.close()


def _require_file(path: str, reader: str, hint: str) -> bytes:
    """Returns the first bytes of ``path``; raises when it is missing or blank."""
    if not FileSystems.exists(path):
        raise FileNotFoundError(f"{path} not found: the {reader!r} format reads it. {hint}")
    head = _read_bytes(path, _HEAD_BYTES)
    if not head.strip():
        raise ValueError(f"{path} is empty: the {reader!r} format needs rows in it. {hint}")
    return head


def _lines(path: str, encoding: str) -> Iterator[tuple[int, str] | Rejected]:
    """Yields ``(line number, text)`` for every non-blank line, or a Rejected for an undecodable one.

    The file is read and decoded in one go; only when that fails is each line decoded on its own.
    Lines are split on ``\\n`` only: latin-1 text may hold U+0085, a line break to ``str.splitlines``.
    """
    data = _read_bytes(path)
    try:
        lines = data.decode(encoding).split("\n")
    except UnicodeDecodeError:
        yield from _lines_one_by_one(path, data, encoding)
        return
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if line and not line.isspace():
            yield number, line


def _lines_one_by_one(path: str, data: bytes, encoding: str) -> Iterator[tuple[int, str] | Rejected]:
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            yield number, raw.decode(encoding)
        except UnicodeDecodeError:
            yield _rejected(path, number, REJECT_BAD_ENCODING, raw)


def _csv_fields(line: str) -> list[str]:
    """Splits one CSV line; with the csv module only when it has quotes (titles with commas)."""
    if '"' not in line:
        return line.split(",")
    return next(csv.reader([line]))


def _csv_header(head: bytes, path: str, hint: str) -> list[str]:
    """The stripped, lower-cased column names of a CSV file's first line (``head``: its first bytes).

    Raises ValueError when the header is not utf-8 or no row follows it.
    """
    lines = [line for line in head.split(b"\n") if line.strip()]
    if not lines:
        raise ValueError(f"{path} is empty. {hint}")
    try:
        first = lines[0].rstrip(b"\r").decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: the header line is not utf-8 ({e}). {hint}") from None
    if len(lines) < 2 and len(head) < _HEAD_BYTES:
        raise ValueError(f"{path} has a header but no rows. {hint}")
    return [c.strip().lower() for c in _csv_fields(first)]


def _to_int(text: str) -> int:
    """Parses an integer, also when written as a float (``964982703.0``, ``1.6e9``)."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not math.isfinite(value):
            raise
        return int(value)


def _interaction(
    source: str,
    line: int,
    raw: str,
    user_id: str,
    item_id: str,
    rating: str | None,
    timestamp: str | None,
) -> RawInteraction | Rejected:
    """One interaction from its text fields; ``rating`` None: no ratings; ``timestamp`` None: use ``line``.

    Runs once per rating (a million times for ML-1M), so the common case is tried first and the
    reason of a failure is worked out only when it fails.
    """
    user_id = user_id.strip()
    item_id = item_id.strip()
    try:
        value = None if rating is None else float(rating)
        seconds = line if timestamp is None else int(timestamp)
    except ValueError:
        return _parse_failure(source, line, raw, user_id, item_id, rating, timestamp)
    if not user_id or not item_id:
        return _rejected(source, line, REJECT_MISSING_FIELD, raw)
    if value is not None and not math.isfinite(value):
        return _rejected(source, line, REJECT_UNPARSABLE_NUMBER, raw)
    return _in_range(RawInteraction(user_id, item_id, seconds, value, source, line), raw)


def _in_range(row: RawInteraction, raw: str) -> RawInteraction | Rejected:
    """``row``, or its rejection when its timestamp does not fit int64 or its rating float32."""
    if not _INT64_MIN <= row.timestamp <= _INT64_MAX or (row.rating is not None and abs(row.rating) > _FLOAT32_MAX):
        return _rejected(row.source, row.line, REJECT_OUT_OF_RANGE, raw)
    return row


def _parse_failure(source: str, line: int, raw: str, user_id: str, item_id: str, rating: str | None,
                   timestamp: str | None) -> RawInteraction | Rejected:
    """The slow path of :func:`_interaction`: an empty field, a timestamp written as a float, or a bad
    number."""
    if not user_id or not item_id or any(f is not None and not f.strip() for f in (rating, timestamp)):
        return _rejected(source, line, REJECT_MISSING_FIELD, raw)
    try:
        value = None if rating is None else float(rating)
        seconds = line if timestamp is None else _to_int(timestamp)
    except ValueError:
        return _rejected(source, line, REJECT_UNPARSABLE_NUMBER, raw)
    if value is not None and not math.isfinite(value):
        return _rejected(source, line, REJECT_UNPARSABLE_NUMBER, raw)
    return _in_range(RawInteraction(user_id, item_id, seconds, value, source, line), raw)


def _genres(names: list[str]) -> tuple[str, ...]:
    return tuple(g for g in (n.strip() for n in names) if g and g not in _NO_GENRE)


# ---------------------------------------------------------------------------------------------
# MovieLens.


class MovieLensLatestSmallReader(DatasetReader):
    """MovieLens "latest-small" (the CSV layout shared by ml-latest and ml-25m).

    ``Item.tags`` are the movie's tags from ``tags.csv``: most frequent first (ties alphabetically),
    deduplicated case-insensitively (each keeps its most frequent spelling), at most 10.
    """

    name = "ml-latest-small"
    has_timestamps = True
    has_ratings = True
    _HEADERS = (
        ("ratings.csv", ["userid", "movieid", "rating", "timestamp"]),
        ("movies.csv", ["movieid", "title", "genres"]),
        ("tags.csv", ["userid", "movieid", "tag", "timestamp"]),
    )
    _HINT = ("Pass the folder that holds ratings.csv and movies.csv: the unzipped ml-latest-small.zip, "
             "or the copy bundled in tfrs_selreg/data/bundled/ml-latest-small.")

    def check(self, data_dir: str) -> None:
        for name, expected in self._HEADERS:
            path = _path(data_dir, name)
            if name == "tags.csv" and not FileSystems.exists(path):
                continue
            header = _csv_header(_require_file(path, self.name, self._HINT), path, self._HINT)
            if header != expected:
                raise ValueError(
                    f"{path} has columns {header}, expected {expected}: it is not in the {self.name!r} "
                    "format. For other CSV files use the 'csv' format (interactions.csv, items.csv).")

    @staticmethod
    def _rows(path: str, columns: int) -> Iterator[tuple[int, str, list[str]] | Rejected]:
        """``(line number, text, fields)`` of each line after the header, or a Rejected."""
        lines = _lines(path, "utf-8-sig")
        next(lines, None)  # The header; check() validated it.
        for entry in lines:
            if isinstance(entry, Rejected):
                yield entry
                continue
            number, line = entry
            try:
                fields = _csv_fields(line)
            except csv.Error:
                fields = []
            if len(fields) != columns:
                yield _rejected(path, number, REJECT_WRONG_COLUMN_COUNT, line)
                continue
            yield number, line, fields

    def read_interactions(self, data_dir: str) -> Iterator[RawInteraction | Rejected]:
        path = _path(data_dir, "ratings.csv")
        for entry in self._rows(path, 4):
            if isinstance(entry, Rejected):
                yield entry
                continue
            number, line, (user_id, item_id, rating, timestamp) = entry
            yield _interaction(path, number, line, user_id, item_id, rating, timestamp)

    def _tags(self, data_dir: str) -> Iterator[dict[str, tuple[str, ...]] | Rejected]:
        """Yields the Rejected rows of tags.csv, then one dict ``movie id -> ranked tags``."""
        path = _path(data_dir, "tags.csv")
        # movie id -> lower-cased tag -> spelling -> count
        counts: dict[str, dict[str, collections.Counter]] = collections.defaultdict(dict)
        if FileSystems.exists(path):
            for entry in self._rows(path, 4):
                if isinstance(entry, Rejected):
                    yield entry
                    continue
                number, line, (_, item_id, tag, _) = entry
                item_id, tag = item_id.strip(), tag.strip()
                if not item_id or not tag:
                    yield _rejected(path, number, REJECT_MISSING_FIELD, line)
                    continue
                counts[item_id].setdefault(tag.lower(), collections.Counter())[tag] += 1
        yield {item_id: _rank_tags(tags) for item_id, tags in counts.items()}

    def read_items(self, data_dir: str) -> Iterator[Item | Rejected]:
        tags: dict[str, tuple[str, ...]] = {}
        for entry in self._tags(data_dir):
            if isinstance(entry, Rejected):
                yield entry
            else:
                tags = entry
        path = _path(data_dir, "movies.csv")
        for entry in self._rows(path, 3):
            if isinstance(entry, Rejected):
                yield entry
                continue
            number, line, (item_id, title, genres) = entry
            item_id = item_id.strip()
            if not item_id:
                yield _rejected(path, number, REJECT_MISSING_FIELD, line)
                continue
            yield Item(item_id, title=title.strip(), categories=_genres(genres.split("|")),
                       tags=tags.get(item_id, ()))


def _rank_tags(spellings: dict[str, collections.Counter]) -> tuple[str, ...]:
    """Most frequent first (ties alphabetically), one entry per case-insensitive tag, at most 10."""
    ranked = sorted(spellings.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    return tuple(counter.most_common(1)[0][0] for _, counter in ranked[:MAX_TAGS])


class _HeaderlessReader(DatasetReader):
    """MovieLens's older layouts: a ratings file and an items file without header, fixed separators."""

    has_timestamps = True
    has_ratings = True
    _RATINGS: str
    _ITEMS: str
    _SEPARATOR: str
    _HINT: str

    def check(self, data_dir: str) -> None:
        for name in (self._RATINGS, self._ITEMS):
            _require_file(_path(data_dir, name), self.name, self._HINT)

    def read_interactions(self, data_dir: str) -> Iterator[RawInteraction | Rejected]:
        path = _path(data_dir, self._RATINGS)
        separator = self._SEPARATOR
        for entry in _lines(path, "utf-8"):
            if isinstance(entry, Rejected):
                yield entry
                continue
            number, line = entry
            fields = line.split(separator)
            if len(fields) != 4:
                yield _rejected(path, number, REJECT_WRONG_COLUMN_COUNT, line)
                continue
            user_id, item_id, rating, timestamp = fields
            yield _interaction(path, number, line, user_id, item_id, rating, timestamp)


class MovieLens1MReader(_HeaderlessReader):
    """MovieLens 1M: ``ratings.dat`` and ``movies.dat`` (latin-1), ``::``-separated."""

    name = "ml-1m"
    _RATINGS = "ratings.dat"
    _ITEMS = "movies.dat"
    _SEPARATOR = "::"
    _HINT = "Pass the folder that holds ratings.dat and movies.dat (the unzipped ml-1m.zip)."

    def read_items(self, data_dir: str) -> Iterator[Item | Rejected]:
        path = _path(data_dir, self._ITEMS)
        for entry in _lines(path, "latin-1"):
            if isinstance(entry, Rejected):
                yield entry
                continue
            number, line = entry
            fields = line.split(self._SEPARATOR)
            if len(fields) != 3:
                yield _rejected(path, number, REJECT_WRONG_COLUMN_COUNT, line)
                continue
            item_id, title, genres = fields
            item_id = item_id.strip()
            if not item_id:
                yield _rejected(path, number, REJECT_MISSING_FIELD, line)
                continue
            yield Item(item_id, title=title.strip(), categories=_genres(genres.split("|")))


class MovieLens100KReader(_HeaderlessReader):
    """MovieLens 100K: ``u.data`` (tab-separated) and ``u.item`` (``|``-separated, latin-1).

    ``u.item`` ends in one 0/1 flag per genre; the genre names come from ``u.genre`` (``name|index``
    lines) when present and are :data:`ML_100K_GENRES` otherwise. Genre ``unknown`` is no genre.
    """

    name = "ml-100k"
    _RATINGS = "u.data"
    _ITEMS = "u.item"
    _SEPARATOR = "\t"
    _HINT = "Pass the folder that holds u.data and u.item (the unzipped ml-100k.zip)."

    def check(self, data_dir: str) -> None:
        super().check(data_dir)
        self._genre_names(data_dir)

    @staticmethod
    def _genre_names(data_dir: str) -> tuple[str, ...]:
        """Genre names in flag order; raises ValueError for a malformed u.genre."""
        path = _path(data_dir, "u.genre")
        if not FileSystems.exists(path):
            return ML_100K_GENRES
        by_index = {}
        for number, line in _lines(path, "latin-1"):  # latin-1 decodes any byte: no Rejected here.
            fields = line.split("|")
            if len(fields) != 2 or not fields[1].strip().isdigit():
                raise ValueError(f"{path}:{number}: expected 'name|index', got {line!r}. Fix the line, "
                                 "or delete u.genre to use the standard 19 genres.")
            by_index[int(fields[1])] = fields[0].strip()
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError(f"{path}: genre indices {sorted(by_index)} are not 0..{len(by_index) - 1}. "
                             "Fix the file, or delete it to use the standard 19 genres.")
        return tuple(by_index[i] for i in range(len(by_index)))

    def read_items(self, data_dir: str) -> Iterator[Item | Rejected]:
        genres = self._genre_names(data_dir)
        path = _path(data_dir, self._ITEMS)
        for entry in _lines(path, "latin-1"):
            if isinstance(entry, Rejected):
                yield entry
                continue
            number, line = entry
            fields = line.split("|")
            if len(fields) != 5 + len(genres):
                yield _rejected(path, number, REJECT_WRONG_COLUMN_COUNT, line)
                continue
            item_id = fields[0].strip()
            if not item_id:
                yield _rejected(path, number, REJECT_MISSING_FIELD, line)
                continue
            flags = [f.strip() for f in fields[5:]]
            if any(f not in ("0", "1") for f in flags):
                yield _rejected(path, number, REJECT_UNPARSABLE_NUMBER, line)
                continue
            categories = _genres([g for g, f in zip(genres, flags) if f == "1"])
            yield Item(item_id, title=fields[1].strip(), categories=categories)


# ---------------------------------------------------------------------------------------------
# Amazon reviews, in the JSON layout of the LLM-recommendation preprocessing repositories.


def _clean_text(value: Any) -> str:
    """Plain text of a string or (nested) list of strings: HTML entities and tags removed,
    whitespace runs collapsed to one space."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(t for t in (_clean_text(v) for v in value) if t)
    text = re.sub(r"<[^<>]*>", " ", html.unescape(str(value)))
    return " ".join(text.split())


def _categories(value: Any) -> tuple[str, ...]:
    """Category names from a comma-joined string or a (nested) list, duplicates removed, in order."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        names = [n for v in value for n in _categories(v)]
    else:
        names = [_clean_text(n) for n in str(value).split(",")]
    return tuple(dict.fromkeys(n for n in names if n))


def _is_utf8(text: str) -> bool:
    """False when ``text`` holds lone surrogates, i.e. bytes that were not utf-8 in the file."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _BadJson(ValueError):
    """A JSON file that does not parse into one object; ``line`` is where parsing failed."""

    def __init__(self, path: str, line: int, detail: str, hint: str):
        super().__init__(f"{path}:{line}: {detail}. {hint}")
        self.line = line
        self.detail = detail


class AmazonJsonReader(DatasetReader):
    """Amazon reviews as ``{user: [item, ...]}`` plus ``{item: {title, description, brand, categories}}``.

    The inter file holds no timestamps and no ratings: ``timestamp`` is the 0-based position in the
    user's chronological list and ``line`` the 1-based position of the user's record. ``description``
    and ``brand`` become plain text and ``categories`` a tuple, from strings or lists.
    """

    name = "amazon-json"
    has_timestamps = False
    has_ratings = False
    _HINT = "Pass the folder that holds exactly one *.inter.json and one *.item.json file."

    def _file(self, data_dir: str, suffix: str) -> str:
        pattern = _path(data_dir, "*" + suffix)
        paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
        if len(paths) != 1:
            found = ", ".join(paths) or "none"
            raise FileNotFoundError(f"{pattern}: expected exactly one file, found {found}. {self._HINT}")
        return paths[0]

    def check(self, data_dir: str) -> None:
        for suffix in (".inter.json", ".item.json"):
            path = self._file(data_dir, suffix)
            _require_file(path, self.name, self._HINT)
            self._load(path)

    def _load(self, path: str) -> list[tuple[str, Any]]:
        """The ``(key, value)`` pairs of the file's top-level object, in file order and with repeated keys;
        raises :class:`_BadJson` saying where parsing failed.

        Bytes that are not utf-8 become lone surrogates, so that only the records that hold them are
        rejected (``bad_encoding``), not the whole file.
        """
        text = _read_bytes(path).decode("utf-8-sig", errors="surrogateescape")
        objects: list[list] = []

        def keep_pairs(pairs: list) -> dict:
            objects.append(pairs)
            return dict(pairs)

        try:
            data = json.loads(text, object_pairs_hook=keep_pairs)
        except json.JSONDecodeError as e:
            line = text.split("\n")[e.lineno - 1].encode("utf-8", "replace").decode("utf-8")
            raise _BadJson(path, e.lineno, f"{e.msg} at column {e.colno}: {line!r}", self._HINT) from None
        if not isinstance(data, dict):
            raise _BadJson(path, 1, f"the top level is a {type(data).__name__}, not an object {{id: ...}}",
                           self._HINT)
        return objects[-1]  # the outermost object is completed last: its pairs, repeated keys included

    def _records(self, path: str) -> Iterator[tuple[int, str, Any, str] | Rejected]:
        """``(record number, key, value, raw text)`` per record, or one Rejected for a bad file."""
        try:
            data = self._load(path)
        except _BadJson as e:
            yield _rejected(path, e.line, REJECT_BAD_JSON, e.detail)
            return
        last = {key: number for number, (key, _) in enumerate(data, start=1)}
        for number, (key, value) in enumerate(data, start=1):
            raw = json.dumps({key: value}, ensure_ascii=False, default=str)
            if last[key] != number:  # json keeps a repeated key's last value; the earlier ones are not lost silently
                yield _rejected(path, number, REJECT_DUPLICATE_KEY, raw.encode("utf-8", "replace"))
                continue
            if not _is_utf8(raw):
                yield _rejected(path, number, REJECT_BAD_ENCODING, raw.encode("utf-8", "replace"))
                continue
            yield number, key.strip(), value, raw

    def read_interactions(self, data_dir: str) -> Iterator[RawInteraction | Rejected]:
        path = self._file(data_dir, ".inter.json")
        for entry in self._records(path):
            if isinstance(entry, Rejected):
                yield entry
                continue
            number, user_id, items, raw = entry
            if not isinstance(items, list):
                yield _rejected(path, number, REJECT_WRONG_TYPE, raw)
                continue
            if not user_id:
                yield _rejected(path, number, REJECT_MISSING_FIELD, raw)
                continue
            for position, item_id in enumerate(items):
                # A bad entry is rejected alone; the others keep their positions, so the order holds.
                if isinstance(item_id, bool) or not isinstance(item_id, (int, str)):
                    yield _rejected(path, number, REJECT_WRONG_TYPE, raw)
                elif not str(item_id).strip():
                    yield _rejected(path, number, REJECT_MISSING_FIELD, raw)
                else:
                    yield RawInteraction(user_id, str(item_id).strip(), position, None, path, number)

    def read_items(self, data_dir: str) -> Iterator[Item | Rejected]:
        path = self._file(data_dir, ".item.json")
        for entry in self._records(path):
            if isinstance(entry, Rejected):
                yield entry
                continue
            number, item_id, fields, raw = entry
            if not isinstance(fields, dict):
                yield _rejected(path, number, REJECT_WRONG_TYPE, raw)
                continue
            if not item_id:
                yield _rejected(path, number, REJECT_MISSING_FIELD, raw)
                continue
            yield Item(
                item_id,
                title=_clean_text(fields.get("title")),
                categories=_categories(fields.get("categories")),
                description=_clean_text(fields.get("description")),
                brand=_clean_text(fields.get("brand")),
            )


# ---------------------------------------------------------------------------------------------
# Users' own CSV files.


class CsvReader(DatasetReader):
    """A user's own data: ``interactions.csv`` and ``items.csv``, utf-8, each with a header.

    ``interactions.csv`` needs columns ``user_id`` and ``item_id`` and may have ``timestamp`` (unix
    seconds) and ``rating``; ``items.csv`` needs ``item_id`` and ``title`` and may have
    ``description``, ``brand``, and ``categories`` and ``tags`` (both ``|``-separated). Columns come in
    any order; others are ignored. Without a timestamp column, ``timestamp`` is the 1-based line
    number: the file order within a user is taken as the chronological order.

    ``has_timestamps`` and ``has_ratings`` depend on the header, so they are known after :meth:`check`.
    """

    name = "csv"
    INTERACTIONS = "interactions.csv"
    ITEMS = "items.csv"
    _REQUIRED: ClassVar[dict[str, tuple[str, ...]]] = {
        INTERACTIONS: ("user_id", "item_id"),
        ITEMS: ("item_id", "title"),
    }
    _HINT = ("Pass the folder that holds interactions.csv (columns user_id,item_id[,timestamp][,rating]) "
             "and items.csv (columns item_id,title[,description][,categories]).")

    def __init__(self):
        self._interaction_columns: list[str] | None = None

    def _checked_columns(self) -> list[str]:
        if self._interaction_columns is None:
            raise RuntimeError("the csv format's columns are known only after check(data_dir) read the "
                               "header of interactions.csv")
        return self._interaction_columns

    @property
    def has_timestamps(self) -> bool:  # type: ignore[override]
        return "timestamp" in self._checked_columns()

    @property
    def has_ratings(self) -> bool:  # type: ignore[override]
        return "rating" in self._checked_columns()

    def check(self, data_dir: str) -> None:
        for name, required in self._REQUIRED.items():
            path = _path(data_dir, name)
            columns = _csv_header(_require_file(path, self.name, self._HINT), path, self._HINT)
            self._validate(path, columns, required)
            if name == self.INTERACTIONS:
                self._interaction_columns = columns

    def _validate(self, path: str, columns: list[str], required: tuple[str, ...]) -> None:
        missing = [c for c in required if c not in columns]
        if missing:
            raise ValueError(f"{path} has columns {columns} but lacks {missing}. {self._HINT}")
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise ValueError(f"{path}: columns {duplicated} appear more than once; keep one of each.")

    def _rows(self, path: str, required: tuple[str, ...]
              ) -> Iterator[tuple[int, str, dict[str, str]] | Rejected]:
        """``(line number, text, {column: value})`` for each line after the header, or a Rejected."""
        columns = _csv_header(_read_bytes(path, _HEAD_BYTES), path, self._HINT)
        self._validate(path, columns, required)
        lines = _lines(path, "utf-8-sig")
        next(lines, None)  # The header.
        for entry in lines:
            if isinstance(entry, Rejected):
                yield entry
                continue
            number, line = entry
            try:
                fields = _csv_fields(line)
            except csv.Error:
                fields = []
            if len(fields) != len(columns):
                yield _rejected(path, number, REJECT_WRONG_COLUMN_COUNT, line)
                continue
            yield number, line, dict(zip(columns, fields))

    def read_interactions(self, data_dir: str) -> Iterator[RawInteraction | Rejected]:
        path = _path(data_dir, self.INTERACTIONS)
        for entry in self._rows(path, self._REQUIRED[self.INTERACTIONS]):
            if isinstance(entry, Rejected):
                yield entry
                continue
            number, line, row = entry
            yield _interaction(path, number, line, row["user_id"], row["item_id"],
                               row.get("rating"), row.get("timestamp"))

    def read_items(self, data_dir: str) -> Iterator[Item | Rejected]:
        path = _path(data_dir, self.ITEMS)
        for entry in self._rows(path, self._REQUIRED[self.ITEMS]):
            if isinstance(entry, Rejected):
                yield entry
                continue
            number, line, row = entry
            item_id = row["item_id"].strip()
            if not item_id:
                yield _rejected(path, number, REJECT_MISSING_FIELD, line)
                continue
            yield Item(
                item_id,
                title=row["title"].strip(),
                categories=_split_list(row.get("categories", "")),
                description=row.get("description", "").strip(),
                brand=row.get("brand", "").strip(),
                tags=_split_list(row.get("tags", "")),
            )


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p for p in (s.strip() for s in text.split("|")) if p))


# ---------------------------------------------------------------------------------------------
# TensorFlow Datasets.


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
        dataset_dir = _path(root, self.tfds_name)
        infos = FileSystems.match([_path(dataset_dir, "*/dataset_info.json")])[0].metadata_list
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
                yield _rejected(self.tfds_name, number, reason, raw)

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
                    yield _rejected(self.tfds_name, number, REJECT_BAD_ENCODING, raw)
                    continue
                if not item:
                    yield _rejected(self.tfds_name, number, REJECT_MISSING_FIELD, raw)
                    continue
                categories = _genres([names[g] for g in genres.tolist() if g >= 0])
                yield Item(item, title=text, categories=categories)


# ---------------------------------------------------------------------------------------------
# Registry.

READERS: dict[str, type[DatasetReader]] = {
    cls.name: cls
    for cls in (MovieLensLatestSmallReader, MovieLens1MReader, MovieLens100KReader, AmazonJsonReader,
                CsvReader, TfdsReader)
}


def get_reader(name: str, **options: Any) -> DatasetReader:
    """The reader of format ``name`` built with ``options`` (only ``tfds`` takes any)."""
    if name not in READERS:
        raise ValueError(f"unknown data format {name!r}; valid formats: {', '.join(READERS)}.")
    cls = READERS[name]
    try:
        inspect.signature(cls).bind(**options)
    except TypeError:
        accepted = list(inspect.signature(cls).parameters)
        raise ValueError(f"format {name!r} takes options {accepted}, got {sorted(options)}.") from None
    return cls(**options)


def bundled_data_dir() -> str:
    """Absolute path of the bundled MovieLens latest-small copy (``tfrs_selreg/data/bundled/``)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundled", "ml-latest-small")
