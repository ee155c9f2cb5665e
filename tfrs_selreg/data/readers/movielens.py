"""Readers of the MovieLens formats: ``ml-latest-small``, ``ml-1m`` and ``ml-100k``."""

from __future__ import annotations

import collections
from collections.abc import Iterator

from apache_beam.io.filesystems import FileSystems

from tfrs_selreg.data.prepared import Item
from tfrs_selreg.data.readers.base import (
    HEAD_BYTES,
    MAX_TAGS,
    ML_100K_GENRES,
    REJECT_MISSING_FIELD,
    REJECT_UNPARSABLE_NUMBER,
    REJECT_WRONG_COLUMN_COUNT,
    DatasetReader,
    LineFile,
    RawInteraction,
    Rejected,
    clean_genres,
    csv_header,
    csv_line,
    csv_rows,
    header_line,
    join_path,
    parse_interaction,
    read_bytes,
    reject,
    require_file,
    text_lines,
)


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
            path = join_path(data_dir, name)
            if name == "tags.csv" and not FileSystems.exists(path):
                continue
            header = csv_header(require_file(path, self.name, self._HINT), path, self._HINT)
            if header != expected:
                raise ValueError(
                    f"{path} has columns {header}, expected {expected}: it is not in the {self.name!r} "
                    "format. For other CSV files use the 'csv' format (interactions.csv, items.csv).")

    def interaction_lines(self, data_dir: str) -> LineFile:
        path = join_path(data_dir, "ratings.csv")
        return LineFile(path, "utf-8-sig", header_line=header_line(read_bytes(path, HEAD_BYTES)))

    def parse_interaction_line(self, file: LineFile, number: int, line: str) -> Iterator[RawInteraction | Rejected]:
        fields = csv_line(file, number, line, 4)
        if isinstance(fields, Rejected):
            yield fields
        else:
            yield parse_interaction(file.path, number, line, *fields)

    def _tags(self, data_dir: str) -> Iterator[dict[str, tuple[str, ...]] | Rejected]:
        """Yields the Rejected rows of tags.csv, then one dict ``movie id -> ranked tags``."""
        path = join_path(data_dir, "tags.csv")
        # movie id -> lower-cased tag -> spelling -> count
        counts: dict[str, dict[str, collections.Counter]] = collections.defaultdict(dict)
        if FileSystems.exists(path):
            for entry in csv_rows(path, 4):
                if isinstance(entry, Rejected):
                    yield entry
                    continue
                number, line, (_, item_id, tag, _) = entry
                item_id, tag = item_id.strip(), tag.strip()
                if not item_id or not tag:
                    yield reject(path, number, REJECT_MISSING_FIELD, line)
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
        path = join_path(data_dir, "movies.csv")
        for entry in csv_rows(path, 3):
            if isinstance(entry, Rejected):
                yield entry
                continue
            number, line, (item_id, title, genres) = entry
            item_id = item_id.strip()
            if not item_id:
                yield reject(path, number, REJECT_MISSING_FIELD, line)
                continue
            yield Item(item_id, title=title.strip(), categories=clean_genres(genres.split("|")),
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
            require_file(join_path(data_dir, name), self.name, self._HINT)

    def interaction_lines(self, data_dir: str) -> LineFile:
        return LineFile(join_path(data_dir, self._RATINGS), "utf-8")

    def parse_interaction_line(self, file: LineFile, number: int, line: str) -> Iterator[RawInteraction | Rejected]:
        fields = line.split(self._SEPARATOR)
        if len(fields) != 4:
            yield reject(file.path, number, REJECT_WRONG_COLUMN_COUNT, line)
        else:
            yield parse_interaction(file.path, number, line, *fields)


class MovieLens1MReader(_HeaderlessReader):
    """MovieLens 1M: ``ratings.dat`` and ``movies.dat`` (latin-1), ``::``-separated."""

    name = "ml-1m"
    _RATINGS = "ratings.dat"
    _ITEMS = "movies.dat"
    _SEPARATOR = "::"
    _HINT = "Pass the folder that holds ratings.dat and movies.dat (the unzipped ml-1m.zip)."

    def read_items(self, data_dir: str) -> Iterator[Item | Rejected]:
        path = join_path(data_dir, self._ITEMS)
        for number, line in text_lines(path, "latin-1"):  # latin-1 decodes any byte: no Rejected here.
            fields = line.split(self._SEPARATOR)
            if len(fields) != 3:
                yield reject(path, number, REJECT_WRONG_COLUMN_COUNT, line)
                continue
            item_id, title, genres = fields
            item_id = item_id.strip()
            if not item_id:
                yield reject(path, number, REJECT_MISSING_FIELD, line)
                continue
            yield Item(item_id, title=title.strip(), categories=clean_genres(genres.split("|")))


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
        path = join_path(data_dir, "u.genre")
        if not FileSystems.exists(path):
            return ML_100K_GENRES
        by_index = {}
        for number, line in text_lines(path, "latin-1"):  # latin-1 decodes any byte: no Rejected here.
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
        path = join_path(data_dir, self._ITEMS)
        for number, line in text_lines(path, "latin-1"):  # latin-1 decodes any byte: no Rejected here.
            fields = line.split("|")
            if len(fields) != 5 + len(genres):
                yield reject(path, number, REJECT_WRONG_COLUMN_COUNT, line)
                continue
            item_id = fields[0].strip()
            if not item_id:
                yield reject(path, number, REJECT_MISSING_FIELD, line)
                continue
            flags = [f.strip() for f in fields[5:]]
            if any(f not in ("0", "1") for f in flags):
                yield reject(path, number, REJECT_UNPARSABLE_NUMBER, line)
                continue
            categories = clean_genres([g for g, f in zip(genres, flags) if f == "1"])
            yield Item(item_id, title=fields[1].strip(), categories=categories)
