"""Beam job: raw interactions (+ optional teacher labels) -> split TFRecords, vocabularies, statistics.

Run locally::

    python -m beam_pipelines.prepare --dataset ml-1m --data-dir ../shared/data/ml-1m --output OUT \
        --runner DirectRunner --direct_num_workers 2 --direct_running_mode multi_processing

or on Dataflow with ``--runner DataflowRunner --project P --region R --temp_location gs://... \
--setup_file ./setup.py`` and ``gs://`` paths. ``tfrs-selreg prepare`` wraps this job.

Stages (every statistic comes from the training split only):

1. read interactions and the item catalog with the dataset's reader; malformed rows, unknown items and
   duplicate catalog entries go to ``dead_letter/`` with file, line and reason;
2. keep positives (``rating >= --min-rating`` when set), group by user, dedupe, split
   (``leave_last_out`` or ``temporal``) and optionally simulate cold-start users;
3. training popularity per item -> catalog order, ``long_tail`` items (bottom ``--long-tail-fraction``);
4. optionally join teacher labels per user, dropping unknown ids, invalid ``pref`` and leakage into
   the user's validation/test items (counted, dead-lettered);
5. one ``tf.train.Example`` per interaction, written into deterministic shards.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import os
import sys
import time
import zlib
from typing import Any, Iterable, Optional

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

import tfrs_selreg  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from beam_pipelines.options import add_flag
from tfrs_selreg import flags
from tfrs_selreg.data import examples as ex
from tfrs_selreg.data import item_embeddings, prepared, readers, schema
from tfrs_selreg.data import labels as labels_lib

REJECTED = "rejected"
COUNTS = "counts"

# Reasons counted but not errors of the input: they are the documented filtering rules.
REASON_BELOW_MIN_RATING = "below_min_rating"
REASON_UNKNOWN_ITEM = "unknown_item"
REASON_DUPLICATE_ITEM = "duplicate_item"


class PrepareError(RuntimeError):
    """The input is unusable (too many bad rows, missing files); the message says what to fix."""


class PrepareOptions(PipelineOptions):
    """Flags of the prepare job (Beam's own flags, such as ``--runner``, are separate)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_flag(parser, "--dataset", choices=sorted(readers.READERS), help="input format / reader (required)")
        add_flag(parser, "--data-dir", dest="data_dir", default=None,
                            help="raw data folder (default for ml-latest-small: the bundled copy)")
        add_flag(parser, "--tfds-name", dest="tfds_name", default="movielens/100k-ratings",
                            help="TFDS dataset for --dataset tfds")
        add_flag(parser, "--tfds-data-dir", dest="tfds_data_dir", default=None,
                            help="TFDS data dir holding the prepared dataset (no download)")
        add_flag(parser, "--output", help="output folder, local or gs:// (required)")
        add_flag(parser, "--split", default=ex.SPLIT_LEAVE_LAST_OUT, choices=ex.SPLIT_MODES)
        add_flag(parser, "--temporal-val-fraction", dest="temporal_val_fraction",
                 type=flags.number(0.0, below=1.0), default=0.1,
                 help="temporal split: share of interactions in validation")
        add_flag(parser, "--temporal-test-fraction", dest="temporal_test_fraction",
                 type=flags.number(0.0, below=1.0), default=0.1, help="temporal split: share of interactions in test")
        add_flag(parser, "--min-rating", dest="min_rating", type=flags.number(), default=None,
                            help="keep only interactions with rating >= this as positives")
        add_flag(parser, "--history-length", dest="history_length", type=flags.integer(1), default=10,
                            help="L: training items in each example's history")
        add_flag(parser, "--cold-start-max-history", dest="cold_start_max_history", type=flags.integer(0),
                            default=3, help="users with at most this many training items are cold_start")
        add_flag(parser, "--long-tail-fraction", dest="long_tail_fraction", type=flags.FRACTION, default=0.2,
                            help="bottom fraction of items by training popularity that is long_tail")
        add_flag(parser, "--cold-start-fraction", dest="cold_start_fraction", type=flags.FRACTION,
                            default=0.0, help="simulate cold start: fraction of users keeping 1-3 "
                            "training items")
        add_flag(parser, "--teacher-pairs", dest="teacher_pairs", type=flags.integer(0), default=8,
                            help="P: teacher pairs per training example")
        add_flag(parser, "--probe-pairs", dest="probe_pairs", type=flags.integer(0), default=4,
                            help="Q: probe pairs per training example")
        add_flag(parser, "--seed", type=flags.integer(0), default=0)
        add_flag(parser, "--max-error-fraction", dest="max_error_fraction", type=flags.FRACTION,
                            default=0.01, help="fail when more rejected rows than this fraction")
        add_flag(parser, "--num-shards", dest="num_shards", type=flags.integer(1), default=2,
                            help="TFRecord shards per split")


# --- reading -----------------------------------------------------------------------------------


# Multi-output DoFn: Beam would infer a Union with TaggedOutput and reject the keyed main output.
@beam.typehints.with_output_types(Any)
class ReadInteractions(beam.DoFn):
    """Reader output -> ``(user_id, [(item_id, timestamp, rating, line), ...])``; bad rows tagged.

    Rows naming an item missing from the catalog are rejected as ``unknown_item``; the catalog ids
    arrive as a side input so the million-row stream is not shuffled by item. Accepted rows are
    grouped by user within at most ``FLUSH_ROWS`` rows before they leave the DoFn (combiner lifting by
    hand), so the shuffle by user moves a few lists per user instead of one element per row.
    """

    FLUSH_ROWS = 100_000

    def __init__(self, reader: readers.DatasetReader, min_rating: Optional[float]):
        self._reader = reader
        self._min_rating = min_rating

    def process(self, data_dir: str, catalog_ids):
        known = frozenset(catalog_ids)
        # Counted here and emitted once: a count element per row would double the rows Beam moves.
        read = below_min_rating = buffered = 0
        by_user: dict[str, list] = {}
        for row in self._reader.read_interactions(data_dir):
            read += 1
            if isinstance(row, readers.Rejected):
                yield beam.pvalue.TaggedOutput(REJECTED, _reject_record("interactions", row.source,
                                                                        row.line, row.reason, row.raw))
            elif row.item_id not in known:
                yield beam.pvalue.TaggedOutput(REJECTED, _reject_record(
                    "interactions", row.source, row.line, REASON_UNKNOWN_ITEM,
                    f"user_id={row.user_id} item_id={row.item_id}"))
            elif self._min_rating is not None and (row.rating is None or row.rating < self._min_rating):
                below_min_rating += 1
            else:
                by_user.setdefault(row.user_id, []).append((row.item_id, row.timestamp, row.rating, row.line))
                buffered += 1
                if buffered >= self.FLUSH_ROWS:
                    yield from by_user.items()
                    by_user, buffered = {}, 0
        yield from by_user.items()
        yield from _counts(interaction_rows_read=read, **{REASON_BELOW_MIN_RATING: below_min_rating})


def _counts(**counts: int):
    """``COUNTS`` outputs of the non-zero counts (zeros add nothing to the sums)."""
    for key, value in counts.items():
        if value:
            yield beam.pvalue.TaggedOutput(COUNTS, (key, value))


@beam.typehints.with_output_types(Any)
class ReadItems(beam.DoFn):
    """Reader output -> ``Item``; bad rows tagged."""

    def __init__(self, reader: readers.DatasetReader):
        self._reader = reader

    def process(self, data_dir: str):
        read = 0
        for position, row in enumerate(self._reader.read_items(data_dir)):
            read += 1
            if isinstance(row, readers.Rejected):
                yield beam.pvalue.TaggedOutput(REJECTED, _reject_record("items", row.source, row.line,
                                                                        row.reason, row.raw))
            else:
                yield row.item_id, (position, row)
        yield from _counts(item_rows_read=read)


def _reject_record(what: str, source: str, line: int, reason: str, raw: str) -> dict:
    return {"input": what, "source": source, "line": line, "reason": reason, "raw": raw[:500]}


@beam.typehints.with_output_types(Any)
class DedupeCatalog(beam.DoFn):
    """One catalog entry per item id: the first one in reading order wins, the others are rejected."""

    def process(self, element):
        item_id, entries = element
        entries = sorted(entries, key=lambda e: e[0])
        yield entries[0][1]
        for position, _ in entries[1:]:
            yield beam.pvalue.TaggedOutput(REJECTED, _reject_record(
                "items", "catalog", position + 1, REASON_DUPLICATE_ITEM, f"item_id={item_id}"))


# --- labels ------------------------------------------------------------------------------------


def _label_files(path: str) -> list[str]:
    """Label files named by ``--labels``: a file, a glob, or a folder holding them."""
    pattern = path
    if not any(c in path for c in "*?[") and not _is_label_file(path):
        pattern = path.rstrip("/") + "/*"
    matches = FileSystems.match([pattern])[0].metadata_list
    return sorted(m.path for m in matches if _is_label_file(m.path))


_BOM = b"\xef\xbb\xbf"


class LabelFileError(ValueError):
    """A label file that cannot be read at all (corrupt compression or framing); names the file."""


@contextlib.contextmanager
def _open_lines(path: str):
    """``path`` opened for reading lines; ``.gz`` through :mod:`gzip`, which, unlike Beam's
    ``CompressedFile``, raises on a truncated stream instead of ending early and losing its rows."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        if not path.endswith(".gz"):
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as f:
            yield f


def _lines(f, path: str):
    """The lines of ``f``; a broken compressed stream is a :class:`LabelFileError` that names ``path``."""
    while True:
        try:
            line = f.readline()
        except (OSError, EOFError, zlib.error) as e:
            raise LabelFileError(f"{path}: unreadable ({type(e).__name__}: {e}); is it a complete gzip file? "
                                 "Re-write or remove it.") from None
        if not line:
            return
        yield line


def _is_label_file(path: str) -> bool:
    name = os.path.basename(path)
    return any(name.endswith(s) for s in (".jsonl", ".jsonl.gz", ".tfrecord", ".tfrecord.gz"))


@beam.typehints.with_output_types(Any)
class ParseLabels(beam.DoFn):
    """Label file -> ``(user_id, LabelRow)``; malformed or invalid rows go to the dead letter."""

    def process(self, path: str):
        if ".tfrecord" in os.path.basename(path):
            yield from self._tfrecords(path)
            return
        line_no = 0
        with _open_lines(path) as f:
            for line_no, raw in enumerate(_lines(f, path), start=1):
                if line_no == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
                if not raw.strip():
                    continue  # a blank line holds no row
                try:
                    row = labels_lib.parse_json(raw.decode("utf-8"))
                except (ValueError, UnicodeDecodeError, TypeError) as e:
                    yield beam.pvalue.TaggedOutput(REJECTED, _reject_record(
                        "labels", path, line_no, labels_lib.REJECT_MALFORMED,
                        f"{e}: {raw[:400].decode('utf-8', 'replace')}"))
                    continue
                yield from self._checked(path, line_no, row)
        yield from _counts(label_rows_read=line_no)

    def _tfrecords(self, path: str):
        import tensorflow as tf
        compression = "GZIP" if path.endswith(".gz") else ""
        n = 0
        records = tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator()
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except tf.errors.OpError as e:
                raise LabelFileError(f"{path}: unreadable after record {n} ({type(e).__name__}: "
                                     f"{e.message.splitlines()[0]}); re-write or remove the file.") from None
            n += 1
            try:
                row = labels_lib.from_example_bytes(record)
            except (ValueError, IndexError, KeyError) as e:
                yield beam.pvalue.TaggedOutput(REJECTED, _reject_record(
                    "labels", path, n, labels_lib.REJECT_MALFORMED, str(e)))
                continue
            yield from self._checked(path, n, row)
        yield from _counts(label_rows_read=n)

    def _checked(self, path, line_no, row):
        reason = labels_lib.check_values(row)
        if reason:
            yield beam.pvalue.TaggedOutput(REJECTED, _reject_record(
                "labels", path, line_no, reason, row.to_json()))
        else:
            yield row.user_id, (row, path, line_no)


# --- per-user examples ---------------------------------------------------------------------------


@beam.typehints.with_output_types(Any)
class SplitUsers(beam.DoFn):
    """``(user_id, lists of interactions)`` -> :class:`examples.UserSplit` (dedup, split, cold-start simulation)."""

    def __init__(self, mode: str, seed: int, cold_start_fraction: float):
        self._mode, self._seed, self._cold = mode, seed, cold_start_fraction

    def process(self, element, cuts=None):
        user_id, chunks = element
        interactions = [x for chunk in chunks for x in chunk]
        val_cut, test_cut = cuts if cuts else (None, None)
        split = ex.split_user(user_id, interactions, mode=self._mode, seed=self._seed,
                              cold_start_fraction=self._cold, val_cut=val_cut, test_cut=test_cut)
        if split.duplicates:
            yield beam.pvalue.TaggedOutput(COUNTS, ("duplicate_interactions", split.duplicates))
        if split.dropped_by_simulation:
            yield beam.pvalue.TaggedOutput(COUNTS, ("dropped_by_cold_start_simulation",
                                                    split.dropped_by_simulation))
        if split.simulated_cold_start:
            yield beam.pvalue.TaggedOutput(COUNTS, ("simulated_cold_start_users", 1))
        yield split


def build_catalog(items: list, popularity: dict[str, int], long_tail_fraction: float) -> dict:
    """Catalog info: vocabulary order, popularity, long-tail set and threshold."""
    pop = {it.item_id: int(popularity.get(it.item_id, 0)) for it in items}
    tail, tail_max = ex.long_tail_items(pop, long_tail_fraction)
    order = ex.catalog_order(pop)
    by_id = {it.item_id: it for it in items}
    return {"order": order, "popularity": pop, "long_tail": tail, "long_tail_max_popularity": tail_max,
            "items": by_id}


@beam.typehints.with_output_types(Any)
class BuildExamples(beam.DoFn):
    """A user's split (+ joined labels) -> ``((split, shard), (sort_key, record))`` and side rows."""

    def __init__(self, options: dict[str, Any]):
        self._o = options

    def process(self, element, catalog):
        user_id, grouped = element
        splits = list(grouped["users"])
        label_rows = list(grouped.get("labels", ()))
        if not splits:
            for row, path, line in label_rows:
                yield beam.pvalue.TaggedOutput(REJECTED, _reject_record(
                    "labels", path, line, labels_lib.REJECT_UNKNOWN_USER, row.to_json()))
            return
        (split,) = splits
        o = self._o
        held_out = {x[0] for x in split.val} | {x[0] for x in split.test}
        teacher_rows, probe_rows = [], []
        for row, path, line in label_rows:
            reason = None
            if row.item_i not in catalog["popularity"] or row.item_j not in catalog["popularity"]:
                reason = labels_lib.REJECT_UNKNOWN_ITEM
            elif row.item_i in held_out or row.item_j in held_out:
                reason = labels_lib.REJECT_LEAKAGE
            if reason:
                yield beam.pvalue.TaggedOutput(REJECTED, _reject_record("labels", path, line, reason,
                                                                        row.to_json()))
                continue
            if row.kind == schema.KIND_PROBE:
                probe_rows.append((row.item_i, row.item_j, row.pref, row.effective_confidence,
                                   row.truth))
            else:
                teacher_rows.append((row.item_i, row.item_j, row.pref, row.effective_confidence))
        # Label files have no defined order; sort so sampling does not depend on the runner.
        teacher_rows.sort()
        probe_rows.sort()
        yield beam.pvalue.TaggedOutput(COUNTS, ("labels_joined_teacher", len(teacher_rows)))
        yield beam.pvalue.TaggedOutput(COUNTS, ("labels_joined_probe", len(probe_rows)))

        pop, tail = catalog["popularity"], catalog["long_tail"]
        train_items = [x[0] for x in split.train]
        n_train = len(train_items)
        cold = n_train <= o["cold_start_max_history"]
        L, shards, seed = o["history_length"], o["num_shards"], o["seed"]
        shard = ex.shard_of(user_id, shards)
        common = dict(user_id=user_id, history_length=n_train, cold_start=cold)
        with_labels = o["with_labels"]
        train_records = []
        for k, (item_id, ts, rating, _) in enumerate(split.train):
            record = ex.make_example(
                item_id=item_id, history=ex.padded_history(train_items[max(0, k - L):k], L), timestamp=ts,
                rating=rating, item_popularity=pop[item_id], long_tail=item_id in tail,
                teacher_pairs=ex.sample_pairs(teacher_rows, o["teacher_pairs"], seed, user_id, k, "t")
                if with_labels else None,
                probe_pairs=ex.sample_pairs(probe_rows, o["probe_pairs"], seed, user_id, k, "p")
                if with_labels else None,
                num_teacher_pairs=o["teacher_pairs"], num_probe_pairs=o["probe_pairs"], **common)
            train_records.append((ex.unit_hash(seed, "order", user_id, k), record))
        # One element per user and split keeps the shard shuffle small (records travel in lists).
        yield ("train", shard), train_records
        history = ex.padded_history(train_items, L)
        for name, rows in (("val", split.val), ("test", split.test)):
            yield (name, shard), [
                (ex.unit_hash(seed, "order", user_id, name, k), ex.make_example(
                    item_id=item_id, history=history, timestamp=ts, rating=rating,
                    item_popularity=pop.get(item_id, 0), long_tail=item_id in tail, **common))
                for k, (item_id, ts, rating, _) in enumerate(rows)]
        yield beam.pvalue.TaggedOutput("users", json.dumps({
            "user_id": user_id, "train_items": train_items,
            "val_items": [x[0] for x in split.val], "test_items": [x[0] for x in split.test],
            "history_length": n_train, "cold_start": cold}, sort_keys=True))
        for name, rows in (("train", split.train), ("val", split.val), ("test", split.test)):
            if rows:
                yield beam.pvalue.TaggedOutput(COUNTS, (f"interactions_{name}", len(rows)))
                yield beam.pvalue.TaggedOutput(COUNTS, (f"users_with_{name}", 1))
        yield beam.pvalue.TaggedOutput(COUNTS, ("users", 1))
        if cold:
            yield beam.pvalue.TaggedOutput(COUNTS, ("cold_start_users", 1))


class WriteShard(beam.DoFn):
    """Writes one shard of one split, records ordered by their seeded sort key (deterministic)."""

    def __init__(self, output: str, num_shards: int):
        self._output, self._num_shards = output, num_shards

    def process(self, element):
        (split, shard), values = element
        records = sorted(r for batch in values for r in batch)
        path = os.path.join(self._output, f"{split}-{shard:05d}-of-{self._num_shards:05d}.tfrecord")
        # Beam's own TFRecord framing (what WriteToTFRecord writes, CRCs by google-crc32c) instead of
        # tf.io.TFRecordWriter: importing TensorFlow costs each worker process seconds.
        with FileSystems.create(path) as f:
            for _, record in records:
                _TFRecordUtil.write_record(f, record)
        yield f"{split}_records", len(records)


def _write_text(path: str, lines: Iterable[str]) -> None:
    with FileSystems.create(path) as f:
        for line in lines:
            f.write(line.encode("utf-8") + b"\n")


class WriteCatalog(beam.DoFn):
    """Writes vocab/items.txt and items.jsonl in catalog order."""

    def __init__(self, output: str):
        self._output = output

    def process(self, catalog):
        import dataclasses
        rows = []
        for item_id in catalog["order"]:
            item = dataclasses.replace(catalog["items"][item_id],
                                       popularity=catalog["popularity"][item_id],
                                       long_tail=item_id in catalog["long_tail"])
            d = dataclasses.asdict(item)
            d["categories"], d["tags"] = list(d["categories"]), list(d["tags"])
            rows.append(json.dumps(d, sort_keys=True, ensure_ascii=False))
        _write_text(os.path.join(self._output, prepared.ITEMS_VOCAB), catalog["order"])
        _write_text(os.path.join(self._output, prepared.ITEMS_FILE), rows)
        yield ("items", len(catalog["order"]))
        yield ("long_tail_items", len(catalog["long_tail"]))
        yield ("long_tail_max_popularity", catalog["long_tail_max_popularity"])
        yield ("items_with_training_interactions", sum(1 for v in catalog["popularity"].values() if v))


def _write_users(output: str):
    def write(users_json: list[str]):
        users_json = sorted(users_json)
        _write_text(os.path.join(output, prepared.USERS_FILE), users_json)
        _write_text(os.path.join(output, prepared.USERS_VOCAB),
                    sorted(json.loads(u)["user_id"] for u in users_json if json.loads(u)["train_items"]))
        return len(users_json)
    return write


def _temporal_cuts(histogram: dict[int, int], val_fraction: float, test_fraction: float):
    """Exact global timestamp cuts so that about the requested shares fall in validation and test."""
    total = sum(histogram.values())
    want_train = total * (1.0 - val_fraction - test_fraction)
    want_val = total * (1.0 - test_fraction)
    cum, val_cut, test_cut = 0, None, None
    for ts in sorted(histogram):
        if val_cut is None and cum >= want_train:
            val_cut = ts
        if test_cut is None and cum >= want_val:
            test_cut = ts
        cum += histogram[ts]
    last = max(histogram) + 1
    return (val_cut if val_cut is not None else last, test_cut if test_cut is not None else last)


class _Histogram(beam.CombineFn):
    def create_accumulator(self):
        return {}

    def add_input(self, acc, ts):
        acc[ts] = acc.get(ts, 0) + 1
        return acc

    def merge_accumulators(self, accs):
        out: dict[int, int] = {}
        for a in accs:
            for k, v in a.items():
                out[k] = out.get(k, 0) + v
        return out

    def extract_output(self, acc):
        return acc


# --- the pipeline ------------------------------------------------------------------------------


def _add_labels_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", default=None,
                        help="teacher label rows to join (*.jsonl[.gz] or *.tfrecord[.gz]: a file, "
                        "a glob or a folder)")


def _labels_arg(argv: Optional[list[str]]) -> tuple[Optional[str], list[str]]:
    """Parses ``--labels`` apart: Beam's Google Cloud options own that flag name (job labels; use
    ``--label key=value`` for those), so it cannot live in :class:`PrepareOptions`."""
    parser = argparse.ArgumentParser(add_help=False)
    _add_labels_arg(parser)
    known, rest = parser.parse_known_args(argv)
    return known.labels, rest


def _print_help() -> None:
    parser = argparse.ArgumentParser(
        prog="tfrs-selreg prepare", description=__doc__.split("\n\n")[0],
        epilog="Beam's own flags (--runner, --direct_num_workers, --project, ...) are accepted too.")
    PrepareOptions._add_argparse_args(parser)
    _add_labels_arg(parser)
    parser.print_help()


def build_pipeline(p: beam.Pipeline, o: PrepareOptions, reader: readers.DatasetReader,
                   data_dir: str, label_files: list[str]) -> None:
    out = o.output
    raw = (p | "DataDir" >> beam.Create([data_dir]))
    items = raw | "ReadItems" >> beam.ParDo(ReadItems(reader)).with_outputs(REJECTED, COUNTS,
                                                                           main="main")
    catalog_items = (items.main | "GroupCatalogIds" >> beam.GroupByKey()
                     | "DedupeCatalog" >> beam.ParDo(DedupeCatalog()).with_outputs(REJECTED,
                                                                                   main="main"))
    catalog_ids = catalog_items.main | "CatalogIds" >> beam.Map(lambda it: it.item_id)
    interactions = raw | "ReadInteractions" >> beam.ParDo(
        ReadInteractions(reader, o.min_rating), catalog_ids=beam.pvalue.AsList(catalog_ids)
    ).with_outputs(REJECTED, COUNTS, main="main")

    cuts = None
    if o.split == ex.SPLIT_TEMPORAL:
        cuts = beam.pvalue.AsSingleton(
            interactions.main | "Timestamps" >> beam.FlatMap(lambda kv: [x[1] for x in kv[1]])
            | "TimestampHistogram" >> beam.CombineGlobally(_Histogram())
            | "TemporalCuts" >> beam.Map(_temporal_cuts, o.temporal_val_fraction,
                                         o.temporal_test_fraction))
    users = (interactions.main
             | "GroupByUser" >> beam.GroupByKey()
             | "SplitUsers" >> beam.ParDo(SplitUsers(o.split, o.seed, o.cold_start_fraction),
                                          cuts=cuts).with_outputs(COUNTS, main="main"))
    popularity = (users.main
                  | "TrainItems" >> beam.FlatMap(lambda s: [(x[0], 1) for x in s.train])
                  | "Popularity" >> beam.CombinePerKey(sum))
    catalog = (catalog_items.main | "CatalogToList" >> beam.combiners.ToList()
               | "BuildCatalog" >> beam.Map(
                   lambda items, pop: build_catalog(items, pop, o.long_tail_fraction),
                   pop=beam.pvalue.AsDict(popularity)))
    catalog_counts = catalog | "WriteCatalog" >> beam.ParDo(WriteCatalog(out))

    keyed_users = users.main | "KeyUsers" >> beam.Map(lambda s: (s.user_id, s))
    joined = {"users": keyed_users}
    label_rejects = []
    label_counts = []
    if label_files:
        parsed = (p | "LabelFiles" >> beam.Create(label_files)
                  | "ParseLabels" >> beam.ParDo(ParseLabels()).with_outputs(REJECTED, COUNTS,
                                                                           main="main"))
        joined["labels"] = parsed.main
        label_rejects.append(parsed[REJECTED])
        label_counts.append(parsed[COUNTS])
    options = {"history_length": o.history_length, "cold_start_max_history": o.cold_start_max_history,
               "teacher_pairs": o.teacher_pairs, "probe_pairs": o.probe_pairs, "seed": o.seed,
               "num_shards": o.num_shards, "with_labels": bool(label_files)}
    built = (joined | "JoinLabels" >> beam.CoGroupByKey()
             | "BuildExamples" >> beam.ParDo(BuildExamples(options),
                                             catalog=beam.pvalue.AsSingleton(catalog))
             .with_outputs(REJECTED, COUNTS, "users", main="main"))

    empty_shards = p | "AllShards" >> beam.Create(
        [((split, s), []) for split in schema.SPLITS for s in range(o.num_shards)])
    shard_counts = ((built.main, empty_shards) | "WithEmptyShards" >> beam.Flatten()
                    | "GroupShards" >> beam.GroupByKey()
                    | "WriteShards" >> beam.ParDo(WriteShard(out, o.num_shards)))
    user_counts = (built.users | "UsersToList" >> beam.combiners.ToList()
                   | "WriteUsers" >> beam.Map(_write_users(out))
                   | "UsersWritten" >> beam.Map(lambda n: ("users_written", n)))

    rejected = ((interactions[REJECTED], items[REJECTED], catalog_items[REJECTED],
                 built[REJECTED], *label_rejects) | "AllRejected" >> beam.Flatten())
    _ = (rejected | "RejectedToJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
         | "WriteDeadLetter" >> beam.io.WriteToText(
             os.path.join(out, prepared.DEAD_LETTER_DIR, "rejected"), file_name_suffix=".jsonl"))
    reject_counts = rejected | "RejectReasons" >> beam.Map(
        lambda r: (f"rejected/{r['input']}/{r['reason']}", 1))
    _ = ((interactions[COUNTS], items[COUNTS], users[COUNTS], built[COUNTS], catalog_counts,
          shard_counts, user_counts, reject_counts, *label_counts)
         | "AllCounts" >> beam.Flatten()
         | "SumCounts" >> beam.CombinePerKey(sum)
         | "CountsToList" >> beam.combiners.ToList()
         | "WriteCounts" >> beam.Map(lambda kvs: _write_text(
             os.path.join(out, "_counts.json"), [json.dumps(dict(sorted(kvs)))])))


# --- launcher ----------------------------------------------------------------------------------


def _stats(counts: dict[str, int], o: PrepareOptions, reader: readers.DatasetReader, data_dir: str,
           label_files: list[str], seconds: float) -> dict:
    rejected: dict[str, dict[str, int]] = {}
    for key, n in counts.items():
        if key.startswith("rejected/"):
            _, what, reason = key.split("/", 2)
            rejected.setdefault(what, {})[reason] = n
    return {
        "dataset": o.dataset,
        "data_dir": data_dir,
        "seed": o.seed,
        "split": o.split,
        "min_rating": o.min_rating,
        "has_timestamps": reader.has_timestamps,
        "users": counts.get("users", 0),
        "items": counts.get("items", 0),
        "items_with_training_interactions": counts.get("items_with_training_interactions", 0),
        "interactions": {s: counts.get(f"interactions_{s}", 0) for s in schema.SPLITS},
        "users_with": {s: counts.get(f"users_with_{s}", 0) for s in schema.SPLITS},
        "records": {s: counts.get(f"{s}_records", 0) for s in schema.SPLITS},
        "cold_start_users": counts.get("cold_start_users", 0),
        "simulated_cold_start_users": counts.get("simulated_cold_start_users", 0),
        "long_tail_items": counts.get("long_tail_items", 0),
        "thresholds": {
            "cold_start_max_history": o.cold_start_max_history,
            "long_tail_fraction": o.long_tail_fraction,
            "long_tail_max_popularity": counts.get("long_tail_max_popularity", -1),
            "cold_start_fraction": o.cold_start_fraction,
        },
        "rows_read": {"interactions": counts.get("interaction_rows_read", 0),
                      "items": counts.get("item_rows_read", 0),
                      "labels": counts.get("label_rows_read", 0)},
        "rows_rejected": rejected,
        "rows_filtered": {
            REASON_BELOW_MIN_RATING: counts.get(REASON_BELOW_MIN_RATING, 0),
            "duplicate_interactions": counts.get("duplicate_interactions", 0),
            "dropped_by_cold_start_simulation": counts.get("dropped_by_cold_start_simulation", 0),
        },
        "labels": {"files": label_files,
                   "joined_teacher_rows": counts.get("labels_joined_teacher", 0),
                   "joined_probe_rows": counts.get("labels_joined_probe", 0),
                   "rejected": rejected.get("labels", {})},
        "history_length": o.history_length,
        "teacher_pairs": o.teacher_pairs,
        "probe_pairs": o.probe_pairs,
        "num_shards": o.num_shards,
        "seconds": round(seconds, 2),
    }


def _first_bad_lines(output: str, what: str, reasons: Optional[set] = None,
                     limit: int = 5) -> list[str]:
    rows = []
    for m in FileSystems.match([os.path.join(output, prepared.DEAD_LETTER_DIR, "*.jsonl")])[0] \
            .metadata_list:
        with FileSystems.open(m.path) as f:
            for line in f:
                r = json.loads(line)
                if r["input"] == what and (reasons is None or r["reason"] in reasons):
                    rows.append(r)
    rows.sort(key=lambda r: (r["source"], r["line"]))
    return [f"{r['source']}:{r['line']}: {r['reason']}: {r['raw'][:120]!r}" for r in rows[:limit]]


def _check_error_fraction(stats: dict, o: PrepareOptions) -> None:
    # Items first: a rejected catalog row makes its interactions unknown_item, so its own reason comes first.
    for what in ("items", "interactions", "labels"):
        read = stats["rows_read"][what]
        rejected = stats["rows_rejected"].get(what, {})
        # Label rows dropped for leakage or unknown ids are the guard working, not malformed input.
        reasons = {labels_lib.REJECT_MALFORMED} if what == "labels" else set(rejected)
        bad = sum(n for reason, n in rejected.items() if reason in reasons)
        if read and bad / read > o.max_error_fraction:
            lines = "\n  ".join(_first_bad_lines(o.output, what, reasons))
            items_rejected = sum(stats["rows_rejected"].get("items", {}).values())
            cause = ""
            if what == "interactions" and rejected.get(REASON_UNKNOWN_ITEM) and items_rejected:
                first = "\n  ".join(_first_bad_lines(o.output, "items"))
                cause = (f"{items_rejected} catalog rows were rejected themselves, so their interactions are "
                         f"{REASON_UNKNOWN_ITEM}; the first of them:\n  {first}\n")
            raise PrepareError(
                f"{bad} of {read} {what} rows ({bad / read:.2%}) were rejected, more than "
                f"--max-error-fraction={o.max_error_fraction}. {cause}First bad rows:\n  {lines}\n"
                f"All rejected rows: {os.path.join(o.output, prepared.DEAD_LETTER_DIR)}. Fix the input "
                "or raise --max-error-fraction.")


def _dataset_card(stats: dict) -> str:
    t = stats["thresholds"]
    lines = [
        f"# Prepared dataset: {stats['dataset']}",
        "",
        f"- source: `{stats['data_dir']}`; split `{stats['split']}`, seed {stats['seed']}, "
        f"min rating {stats['min_rating']}",
        f"- users {stats['users']:,}, items {stats['items']:,} "
        f"({stats['items_with_training_interactions']:,} with training interactions)",
        "- interactions: " + ", ".join(f"{k} {v:,}" for k, v in stats["interactions"].items()),
        f"- cold_start users (training history <= {t['cold_start_max_history']}): "
        f"{stats['cold_start_users']:,} ({stats['simulated_cold_start_users']:,} simulated, "
        f"fraction {t['cold_start_fraction']})",
        f"- long_tail items (bottom {t['long_tail_fraction']:.0%} by training popularity, "
        f"popularity <= {t['long_tail_max_popularity']}): {stats['long_tail_items']:,}",
        f"- rows read: {stats['rows_read']}; rejected: {stats['rows_rejected'] or 'none'}; "
        f"filtered: {stats['rows_filtered']}",
        f"- teacher labels joined: {stats['labels']['joined_teacher_rows']:,} teacher rows, "
        f"{stats['labels']['joined_probe_rows']:,} probe rows",
        "",
        "Features are described in `schema.json`; statistics come from the training split only.",
    ]
    return "\n".join(lines) + "\n"


STAGING_SUFFIX = ".incomplete"
# What a prepare job writes into --output, besides the split shards; nothing else there is touched.
OWNED_NAMES = (prepared.ITEMS_FILE, prepared.USERS_FILE, prepared.STATS_FILE, prepared.DATASET_CARD,
               schema.SCHEMA_FILE)
OWNED_FOLDERS = (os.path.dirname(prepared.ITEMS_VOCAB), prepared.DEAD_LETTER_DIR, item_embeddings.DIR)


def run(argv: Optional[list[str]] = None) -> dict:
    """Runs the prepare job; returns the statistics written to ``stats.json``."""
    labels_path, argv = _labels_arg(argv)
    options = PipelineOptions(argv)
    o = options.view_as(PrepareOptions)
    std = options.view_as(StandardOptions)
    if not std.runner:
        std.runner = "DirectRunner"  # Never let Beam pick (it would try to download Prism).
    options.view_as(SetupOptions).save_main_session = False

    if not o.dataset or not o.output:
        raise PrepareError("--dataset and --output are required (see tfrs-selreg prepare --help)")
    reader_options = {}
    if o.dataset == "tfds":
        reader_options = {"tfds_name": o.tfds_name, "tfds_data_dir": o.tfds_data_dir}
    reader = readers.get_reader(o.dataset, **reader_options)
    data_dir = o.data_dir
    if data_dir is None:
        if o.dataset == "ml-latest-small":
            data_dir = readers.bundled_data_dir()
        elif o.dataset == "tfds":
            data_dir = o.tfds_data_dir or ""
        else:
            raise PrepareError(f"--data-dir is required for --dataset {o.dataset}")
    reader.check(data_dir)
    if o.split == ex.SPLIT_TEMPORAL and not reader.has_timestamps:
        raise PrepareError(f"--split temporal needs timestamps, and {o.dataset} data has none; "
                           "use --split leave_last_out")
    # The flags' ranges are checked while parsing (tfrs_selreg.flags); this is the one joint rule.
    if o.split == ex.SPLIT_TEMPORAL and o.temporal_val_fraction + o.temporal_test_fraction >= 1:
        raise PrepareError(f"--temporal-val-fraction {o.temporal_val_fraction} + --temporal-test-fraction "
                           f"{o.temporal_test_fraction} must be < 1: the rest is the training split.")
    label_files: list[str] = []
    if labels_path:
        label_files = _label_files(labels_path)
        if not label_files:
            raise PrepareError(f"--labels {labels_path}: no *.jsonl, *.jsonl.gz, *.tfrecord or "
                               "*.tfrecord.gz files found there")

    output = o.output.rstrip("/")
    _refuse_inputs_inside(output, data_dir, labels_path, label_files)
    # Everything is written to a staging folder first and moved into --output only when the job and its
    # checks succeeded: a failed job leaves a previous good output as it was.
    staging = output + STAGING_SUFFIX
    if FileSystems.exists(staging):
        FileSystems.delete([staging])
    for sub in ("", os.path.dirname(prepared.ITEMS_VOCAB), prepared.DEAD_LETTER_DIR):
        FileSystems.mkdirs(os.path.join(staging, sub))
    o.output = staging
    try:
        stats = _run_into(options, o, reader, data_dir, labels_path, label_files)
    except PrepareError:
        raise  # the staging folder stays: its dead_letter/ holds the rejected rows the message names
    except BaseException:
        FileSystems.delete([staging])
        raise
    finally:
        o.output = output
    _publish(staging, output)
    return stats


def _run_into(options: PipelineOptions, o: PrepareOptions, reader: readers.DatasetReader, data_dir: str,
              labels_path: Optional[str], label_files: list[str]) -> dict:
    """Runs the pipeline into ``o.output`` (the staging folder) and checks the result; returns the stats."""
    schema_obj = schema.build_schema(o.history_length, o.teacher_pairs, o.probe_pairs)
    start = time.time()
    logging.info("prepare: reading %s from %s", o.dataset, data_dir)
    with beam.Pipeline(options=options) as p:
        build_pipeline(p, o, reader, data_dir, label_files)
    seconds = time.time() - start

    counts_path = os.path.join(o.output, "_counts.json")
    with FileSystems.open(counts_path) as f:
        counts = json.loads(f.read().decode("utf-8"))
    FileSystems.delete([counts_path])
    stats = _stats(counts, o, reader, data_dir, label_files, seconds)
    _write_text(os.path.join(o.output, prepared.STATS_FILE), [json.dumps(stats, indent=2)])
    _check_error_fraction(stats, o)
    if stats["users"] == 0 or stats["interactions"]["train"] == 0:
        raise PrepareError(f"no training interactions left from {data_dir} (read "
                           f"{stats['rows_read']}, filtered {stats['rows_filtered']}); check "
                           "--min-rating and the input files")
    joined = stats["labels"]["joined_teacher_rows"] + stats["labels"]["joined_probe_rows"]
    if label_files and joined == 0:
        lines = "\n  ".join(_first_bad_lines(o.output, "labels")) or "(no label row was read)"
        raise PrepareError(
                f"--labels {labels_path}: none of its {stats['rows_read']['labels']:,} rows could be joined "
                f"(rejected: {stats['labels']['rejected']}). First rejected rows:\n  {lines}\n"
                f"All of them: {os.path.join(o.output, prepared.DEAD_LETTER_DIR)}. Were the labels scored on "
                "this prepared folder (same dataset, split and seed)?")
    # Beam's file system rather than Schema.save (tf.io.gfile): the launcher need not import TensorFlow.
    with FileSystems.create(os.path.join(o.output, schema.SCHEMA_FILE)) as f:
        f.write(schema_obj.dumps().encode("utf-8"))
    _write_text(os.path.join(o.output, prepared.DATASET_CARD), [_dataset_card(stats)])
    if labels_path:
        _copy_item_embeddings(labels_path, o.output)
    return stats


def _inside(path: str, folder: str) -> bool:
    path, folder = (p if "://" in p else os.path.abspath(p) for p in (path, folder))
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _refuse_inputs_inside(output: str, data_dir: str, labels_path: Optional[str], label_files: list[str]) -> None:
    """An --output that holds an input would be overwritten by the job that reads it."""
    inputs = [("--data-dir", data_dir)] + [("--labels", f) for f in label_files]
    inputs += [("--labels", labels_path)] if labels_path else []
    for flag, path in inputs:
        if _inside(path, output) or _inside(output, path):
            raise PrepareError(f"{flag} {path} and --output {output} overlap: the job would overwrite its own "
                               "input. Write the prepared folder somewhere else.")


def _owned(folder: str) -> list[str]:
    """The paths in ``folder`` that a prepare job writes (and only those: other files are left alone)."""
    patterns = [os.path.join(folder, f"{split}-[0-9]*-of-[0-9]*.tfrecord") for split in schema.SPLITS]
    patterns += [os.path.join(folder, name) for name in OWNED_NAMES]
    return sorted(m.path for result in FileSystems.match(patterns) for m in result.metadata_list)


def _publish(staging: str, output: str) -> None:
    """Moves the finished ``staging`` folder's files into ``output``, replacing only a previous job's.

    File by file (object stores have no folders to rename); a new local ``output`` is the renamed staging
    folder.
    """
    if "://" not in output and not FileSystems.exists(output):
        FileSystems.rename([staging], [output])
        return
    folders = [os.path.join(output, n) for n in OWNED_FOLDERS]
    old = _owned(output) + [f for f in folders if FileSystems.exists(f)]
    if old:
        FileSystems.delete(old)
    sources = sorted(m.path for m in FileSystems.match([FileSystems.join(staging, "**")])[0].metadata_list)
    targets = [FileSystems.join(output, os.path.relpath(path, staging)) for path in sources]
    empty = [os.path.join(output, n) for n in OWNED_FOLDERS if FileSystems.exists(os.path.join(staging, n))]
    for folder in sorted({os.path.dirname(t) for t in targets} | set(empty)):
        if not FileSystems.exists(folder):
            FileSystems.mkdirs(folder)
    FileSystems.rename(sources, targets)
    FileSystems.delete([staging])


def _copy_item_embeddings(labels_path: str, output: str) -> None:
    """``LABELS/item_embeddings/`` (the teacher's item text embeddings, when it wrote them) into ``output``."""
    source = item_embeddings.folder(labels_path.rstrip("/"))
    target = item_embeddings.folder(output)
    if FileSystems.exists(target):
        FileSystems.delete([target])
    if not FileSystems.exists(os.path.join(source, item_embeddings.INFO_FILE)):
        return
    files = [m.path for m in FileSystems.match([os.path.join(source, "*")])[0].metadata_list]
    FileSystems.mkdirs(target)
    FileSystems.copy(files, [os.path.join(target, os.path.basename(f)) for f in files])


def main(argv: Optional[list[str]] = None) -> int:
    """``tfrs-selreg prepare``: runs the job and prints the dataset card."""
    if argv is not None and ({"-h", "--help"} & set(argv)):
        _print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("apache_beam", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        stats = run(argv)
    except (PrepareError, FileNotFoundError, ValueError) as e:
        print(f"tfrs-selreg prepare: error: {e}", file=sys.stderr)
        return 1
    print(_dataset_card(stats), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
