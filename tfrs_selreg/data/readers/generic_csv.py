"""The ``csv`` reader: ``interactions.csv`` and ``items.csv`` with named columns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from tfrs_selreg.data.prepared import Item
from tfrs_selreg.data.readers.base import (
    HEAD_BYTES,
    REJECT_MISSING_FIELD,
    DatasetReader,
    LineFile,
    RawInteraction,
    Rejected,
    csv_header,
    csv_line,
    csv_rows,
    header_line,
    join_path,
    parse_interaction,
    read_bytes,
    reject,
    require_file,
)


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
            path = join_path(data_dir, name)
            columns = csv_header(require_file(path, self.name, self._HINT), path, self._HINT)
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
        columns = csv_header(read_bytes(path, HEAD_BYTES), path, self._HINT)
        self._validate(path, columns, required)
        for entry in csv_rows(path, len(columns)):
            yield entry if isinstance(entry, Rejected) else (*entry[:2], dict(zip(columns, entry[2])))

    def interaction_lines(self, data_dir: str) -> LineFile:
        path = join_path(data_dir, self.INTERACTIONS)
        return LineFile(path, "utf-8-sig", header_line=header_line(read_bytes(path, HEAD_BYTES)),
                        columns=tuple(self._checked_columns()))

    def parse_interaction_line(self, file: LineFile, number: int, line: str) -> Iterator[RawInteraction | Rejected]:
        fields = csv_line(file, number, line, len(file.columns))
        if isinstance(fields, Rejected):
            yield fields
            return
        row = dict(zip(file.columns, fields))
        yield parse_interaction(file.path, number, line, row["user_id"], row["item_id"], row.get("rating"),
                                row.get("timestamp"))

    def read_items(self, data_dir: str) -> Iterator[Item | Rejected]:
        path = join_path(data_dir, self.ITEMS)
        for entry in self._rows(path, self._REQUIRED[self.ITEMS]):
            if isinstance(entry, Rejected):
                yield entry
                continue
            number, line, row = entry
            item_id = row["item_id"].strip()
            if not item_id:
                yield reject(path, number, REJECT_MISSING_FIELD, line)
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
