"""The ``amazon-json`` reader: ``*.inter.json`` interactions and ``*.item.json`` metadata."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any

from apache_beam.io.filesystems import FileSystems

from tfrs_selreg.data.prepared import Item
from tfrs_selreg.data.readers.base import (
    REJECT_BAD_ENCODING,
    REJECT_BAD_JSON,
    REJECT_DUPLICATE_KEY,
    REJECT_MISSING_FIELD,
    REJECT_WRONG_TYPE,
    DatasetReader,
    RawInteraction,
    Rejected,
    join_path,
    read_bytes,
    reject,
    require_file,
)


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
        pattern = join_path(data_dir, "*" + suffix)
        paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
        if len(paths) != 1:
            found = ", ".join(paths) or "none"
            raise FileNotFoundError(f"{pattern}: expected exactly one file, found {found}. {self._HINT}")
        return paths[0]

    def check(self, data_dir: str) -> None:
        for suffix in (".inter.json", ".item.json"):
            path = self._file(data_dir, suffix)
            require_file(path, self.name, self._HINT)
            self._load(path)

    def _load(self, path: str) -> list[tuple[str, Any]]:
        """The ``(key, value)`` pairs of the file's top-level object, in file order and with repeated keys;
        raises :class:`_BadJson` saying where parsing failed.

        Bytes that are not utf-8 become lone surrogates, so that only the records that hold them are
        rejected (``bad_encoding``), not the whole file.
        """
        text = read_bytes(path).decode("utf-8-sig", errors="surrogateescape")
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
            yield reject(path, e.line, REJECT_BAD_JSON, e.detail)
            return
        last = {key: number for number, (key, _) in enumerate(data, start=1)}
        for number, (key, value) in enumerate(data, start=1):
            raw = json.dumps({key: value}, ensure_ascii=False, default=str)
            if last[key] != number:  # json keeps a repeated key's last value; the earlier ones are not lost silently
                yield reject(path, number, REJECT_DUPLICATE_KEY, raw.encode("utf-8", "replace"))
                continue
            if not _is_utf8(raw):
                yield reject(path, number, REJECT_BAD_ENCODING, raw.encode("utf-8", "replace"))
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
                yield reject(path, number, REJECT_WRONG_TYPE, raw)
                continue
            if not user_id:
                yield reject(path, number, REJECT_MISSING_FIELD, raw)
                continue
            for position, item_id in enumerate(items):
                # A bad entry is rejected alone; the others keep their positions, so the order holds.
                if isinstance(item_id, bool) or not isinstance(item_id, (int, str)):
                    yield reject(path, number, REJECT_WRONG_TYPE, raw)
                elif not str(item_id).strip():
                    yield reject(path, number, REJECT_MISSING_FIELD, raw)
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
                yield reject(path, number, REJECT_WRONG_TYPE, raw)
                continue
            if not item_id:
                yield reject(path, number, REJECT_MISSING_FIELD, raw)
                continue
            yield Item(
                item_id,
                title=_clean_text(fields.get("title")),
                categories=_categories(fields.get("categories")),
                description=_clean_text(fields.get("description")),
                brand=_clean_text(fields.get("brand")),
            )
