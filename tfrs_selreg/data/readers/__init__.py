"""Readers of raw interaction data: one per source format (one module each), parsing only.

``tfrs-selreg prepare`` (``beam_pipelines.prepare``) turns a folder of raw files into a prepared
folder. It first calls :meth:`DatasetReader.check` on the driver, so that a missing or empty file is a
clear error before any pipeline starts. A format whose interactions file holds one row per line
(:meth:`DatasetReader.interaction_lines`: the MovieLens layouts and ``csv``) is read in byte ranges by
many workers (:mod:`.lines`), each line parsed by :meth:`DatasetReader.parse_interaction_line`; the
others run :meth:`DatasetReader.read_interactions` on one worker, like :meth:`DatasetReader.read_items`
(the catalog is the job's one global structure anyway). Readers are plain Python generators, and they
open files through Beam's ``FileSystems`` so that ``gs://`` folders work on Dataflow.

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

import inspect
import os
from typing import Any

from tfrs_selreg.data.readers.amazon_json import AmazonJsonReader
from tfrs_selreg.data.readers.base import (
    MAX_RAW_CHARS,
    MAX_TAGS,
    REJECT_BAD_ENCODING,
    REJECT_BAD_JSON,
    REJECT_DUPLICATE_KEY,
    REJECT_MISSING_FIELD,
    REJECT_OUT_OF_RANGE,
    REJECT_UNPARSABLE_NUMBER,
    REJECT_WRONG_COLUMN_COUNT,
    REJECT_WRONG_TYPE,
    DatasetReader,
    LineFile,
    RawInteraction,
    Rejected,
)
from tfrs_selreg.data.readers.generic_csv import CsvReader
from tfrs_selreg.data.readers.movielens import MovieLens1MReader, MovieLens100KReader, MovieLensLatestSmallReader
from tfrs_selreg.data.readers.tfds import TfdsReader

__all__ = [
    "AmazonJsonReader",
    "CsvReader",
    "DatasetReader",
    "LineFile",
    "MAX_RAW_CHARS",
    "MAX_TAGS",
    "MovieLens100KReader",
    "MovieLens1MReader",
    "MovieLensLatestSmallReader",
    "READERS",
    "REJECT_BAD_ENCODING",
    "REJECT_BAD_JSON",
    "REJECT_DUPLICATE_KEY",
    "REJECT_MISSING_FIELD",
    "REJECT_OUT_OF_RANGE",
    "REJECT_UNPARSABLE_NUMBER",
    "REJECT_WRONG_COLUMN_COUNT",
    "REJECT_WRONG_TYPE",
    "RawInteraction",
    "Rejected",
    "TfdsReader",
    "bundled_data_dir",
    "get_reader",
]

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
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bundled", "ml-latest-small")
