"""What every reader shares: the row types, the reader interface, the rejection reasons and the helpers that
read files and lines through Beam's ``FileSystems`` (so ``gs://`` folders work)."""

from __future__ import annotations

import abc
import csv
import dataclasses
import math
from collections.abc import Iterator

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
HEAD_BYTES = 1 << 16


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


def reject(source: str, line: int, reason: str, raw: str | bytes) -> Rejected:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    return Rejected(source, line, reason, raw[:MAX_RAW_CHARS])


@dataclasses.dataclass(frozen=True)
class LineFile:
    """A file of one row per line (read whole, or in byte ranges by :mod:`.lines`).

    Attributes:
      path: the file (any Beam file system).
      encoding: its text encoding.
      header_line: the number of its header line, skipped (0: none).
      columns: the header's column names, for formats whose columns are named there.
    """

    path: str
    encoding: str
    header_line: int = 0
    columns: tuple[str, ...] = ()


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

    def __init_subclass__(cls, **kwargs):
        """A reader reads its interactions one way: :meth:`interaction_lines` with
        :meth:`parse_interaction_line` (read in byte ranges), or its own :meth:`read_interactions`."""
        super().__init_subclass__(**kwargs)
        lines = cls.interaction_lines is not DatasetReader.interaction_lines
        parse = cls.parse_interaction_line is not DatasetReader.parse_interaction_line
        whole = cls.read_interactions is not DatasetReader.read_interactions
        if lines != parse or lines == whole:
            raise TypeError(f"{cls.__name__}: override interaction_lines and parse_interaction_line (a file of "
                            "one row per line), or read_interactions (any other format), not both")

    @abc.abstractmethod
    def check(self, data_dir: str) -> None:
        """Raises FileNotFoundError or ValueError, naming the file and what to pass, when this reader
        cannot read ``data_dir`` (a file is missing, empty, or not in this format)."""

    def interaction_lines(self, data_dir: str) -> LineFile | None:
        """The interactions file when it holds one row per line, so that workers can read it in byte ranges
        (:mod:`.lines`) and parse each line with :meth:`parse_interaction_line`; ``None`` for a format that
        is not (one JSON object, TFDS), whose :meth:`read_interactions` reads it whole."""
        return None

    def parse_interaction_line(self, file: LineFile, number: int, line: str) -> Iterator[RawInteraction | Rejected]:
        """The rows of line ``number`` (non-blank, after the header) of :meth:`interaction_lines`'s file.

        Overridden together with :meth:`interaction_lines` (checked when the class is defined); the base
        has no line format, so this is reached only through :meth:`interaction_lines` returning a file.
        """
        raise TypeError(f"{type(self).__name__} gives an interactions file but no parse_interaction_line")

    def read_interactions(self, data_dir: str) -> Iterator[RawInteraction | Rejected]:
        """Yields one RawInteraction or Rejected per data row, in file order."""
        file = self.interaction_lines(data_dir)  # not None: checked when the class is defined
        for entry in text_lines(file.path, file.encoding):
            if isinstance(entry, Rejected):
                yield entry
            elif entry[0] > file.header_line:
                yield from self.parse_interaction_line(file, *entry)

    @abc.abstractmethod
    def read_items(self, data_dir: str) -> Iterator[Item | Rejected]:
        """Yields one Item (popularity 0, not long-tail) or Rejected per catalog row, in file order."""


# ---------------------------------------------------------------------------------------------
# Files and lines.


def join_path(data_dir: str, name: str) -> str:
    return FileSystems.join(data_dir, name)


def read_bytes(path: str, size: int = -1) -> bytes:
    f = FileSystems.open(path)
    try:
        return f.read(size)
    finally:
        f.close()


def require_file(path: str, reader: str, hint: str) -> bytes:
    """Returns the first bytes of ``path``; raises when it is missing or blank."""
    if not FileSystems.exists(path):
        raise FileNotFoundError(f"{path} not found: the {reader!r} format reads it. {hint}")
    head = read_bytes(path, HEAD_BYTES)
    if not head.strip():
        raise ValueError(f"{path} is empty: the {reader!r} format needs rows in it. {hint}")
    return head


def text_lines(path: str, encoding: str) -> Iterator[tuple[int, str] | Rejected]:
    """Yields ``(line number, text)`` for every non-blank line, or a Rejected for an undecodable one.

    The file is read and decoded in one go; only when that fails is each line decoded on its own.
    Lines are split on ``\\n`` only: latin-1 text may hold U+0085, a line break to ``str.splitlines``.
    """
    data = read_bytes(path)
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
            yield reject(path, number, REJECT_BAD_ENCODING, raw)


def csv_fields(line: str) -> list[str]:
    """Splits one CSV line; with the csv module only when it has quotes (titles with commas)."""
    if '"' not in line:
        return line.split(",")
    return next(csv.reader([line]))


def csv_rows(path: str, columns: int) -> Iterator[tuple[int, str, list[str]] | Rejected]:
    """``(line number, text, fields)`` of each utf-8 CSV line after the header, or a Rejected for a line
    that does not decode or does not hold ``columns`` fields."""
    lines = text_lines(path, "utf-8-sig")
    next(lines, None)  # The header.
    for entry in lines:
        if isinstance(entry, Rejected):
            yield entry
            continue
        number, line = entry
        try:
            fields = csv_fields(line)
        except csv.Error:
            fields = []
        if len(fields) != columns:
            yield reject(path, number, REJECT_WRONG_COLUMN_COUNT, line)
            continue
        yield number, line, fields


def csv_line(file: LineFile, number: int, line: str, columns: int) -> list[str] | Rejected:
    """The fields of one CSV line, or its rejection when it does not hold ``columns`` fields."""
    try:
        fields = csv_fields(line)
    except csv.Error:
        fields = []
    return fields if len(fields) == columns else reject(file.path, number, REJECT_WRONG_COLUMN_COUNT, line)


def header_line(head: bytes) -> int:
    """The number of the first non-blank line in a file's first bytes ``head`` (0: none there)."""
    for number, raw in enumerate(head.split(b"\n"), start=1):
        if raw.strip():
            return number
    return 0


def csv_header(head: bytes, path: str, hint: str) -> list[str]:
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
    if len(lines) < 2 and len(head) < HEAD_BYTES:
        raise ValueError(f"{path} has a header but no rows. {hint}")
    return [c.strip().lower() for c in csv_fields(first)]


def _to_int(text: str) -> int:
    """Parses an integer, also when written as a float (``964982703.0``, ``1.6e9``)."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not math.isfinite(value):
            raise
        return int(value)


def parse_interaction(
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
        return reject(source, line, REJECT_MISSING_FIELD, raw)
    if value is not None and not math.isfinite(value):
        return reject(source, line, REJECT_UNPARSABLE_NUMBER, raw)
    return in_range(RawInteraction(user_id, item_id, seconds, value, source, line), raw)


def in_range(row: RawInteraction, raw: str) -> RawInteraction | Rejected:
    """``row``, or its rejection when its timestamp does not fit int64 or its rating float32."""
    if not _INT64_MIN <= row.timestamp <= _INT64_MAX or (row.rating is not None and abs(row.rating) > _FLOAT32_MAX):
        return reject(row.source, row.line, REJECT_OUT_OF_RANGE, raw)
    return row


def _parse_failure(source: str, line: int, raw: str, user_id: str, item_id: str, rating: str | None,
                   timestamp: str | None) -> RawInteraction | Rejected:
    """The slow path of :func:`parse_interaction`: an empty field, a timestamp written as a float, or a bad
    number."""
    if not user_id or not item_id or any(f is not None and not f.strip() for f in (rating, timestamp)):
        return reject(source, line, REJECT_MISSING_FIELD, raw)
    try:
        value = None if rating is None else float(rating)
        seconds = line if timestamp is None else _to_int(timestamp)
    except ValueError:
        return reject(source, line, REJECT_UNPARSABLE_NUMBER, raw)
    if value is not None and not math.isfinite(value):
        return reject(source, line, REJECT_UNPARSABLE_NUMBER, raw)
    return in_range(RawInteraction(user_id, item_id, seconds, value, source, line), raw)


def clean_genres(names: list[str]) -> tuple[str, ...]:
    return tuple(g for g in (n.strip() for n in names) if g and g not in _NO_GENRE)
