"""The Beam graph of the prepare job (``build_pipeline``) and the global temporal cut."""

from __future__ import annotations

import json
import os

import apache_beam as beam

from beam_pipelines.prepare.options import COUNTS, READ_RANGE_BYTES, REJECTED
from beam_pipelines.prepare.read import ACCEPTED_ROWS, ParseLabels, ReadInteractions, ReadItems
from beam_pipelines.prepare.user_examples import POPULARITY, SplitUsers, build_catalog
from beam_pipelines.prepare.write import (
    SHARDS_WRITTEN,
    USER_IDS,
    WriteCatalog,
    WriteShard,
    write_text,
    write_user_vocabulary,
)
from tfrs_selreg.data import prepared, readers, splitting
from tfrs_selreg.data.prepare_config import PrepareConfig
from tfrs_selreg.data.readers import lines


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


def build_pipeline(p: beam.Pipeline, config: PrepareConfig, out: str, reader: readers.DatasetReader,
                   label_files: list[str], range_bytes: int = READ_RANGE_BYTES) -> None:
    """The prepare job's transforms, reading ``config.data_dir`` (and ``label_files``), writing into ``out``;
    an interactions file of one row per line is read in ranges of ``range_bytes``."""
    o = config
    raw = (p | "DataDir" >> beam.Create([o.data_dir or ""]))
    items = raw | "ReadItems" >> beam.ParDo(ReadItems(reader)).with_outputs(REJECTED, COUNTS, main="main")
    catalog_items = beam.pvalue.AsSingleton(items.main)
    source = reader.interaction_lines(o.data_dir or "")
    first_lines = None
    if source is not None:  # one row per line: read in byte ranges, spread over the workers
        raw_interactions = (p | "InteractionRanges" >> beam.Create(lines.ranges(source, range_bytes))
                            | "SpreadRanges" >> beam.Reshuffle())
        first_lines = beam.pvalue.AsSingleton(
            raw_interactions
            | "CountLines" >> beam.Map(lambda r: ((r.file.path, r.index), lines.count_lines(r)))
            | "LineCounts" >> beam.combiners.ToDict()
            | "FirstLines" >> beam.Map(lines.first_line_numbers))
    else:
        raw_interactions = raw
    interactions = raw_interactions | "ReadInteractions" >> beam.ParDo(
        ReadInteractions(reader, o.min_rating), catalog=catalog_items,
        **({"first_lines": first_lines} if first_lines is not None else {})
    ).with_outputs(REJECTED, COUNTS, ACCEPTED_ROWS, main="main")

    label_rejects, label_counts = [], []
    by_user = [interactions.main]
    if label_files:
        parsed = (p | "LabelFiles" >> beam.Create(label_files)
                  | "ParseLabels" >> beam.ParDo(ParseLabels()).with_outputs(REJECTED, COUNTS,
                                                                           main="main"))
        by_user.append(parsed.main)
        label_rejects.append(parsed[REJECTED])
        label_counts.append(parsed[COUNTS])

    cuts = None
    if o.split == splitting.SPLIT_TEMPORAL:
        cuts = beam.pvalue.AsSingleton(
            interactions.main | "Timestamps" >> beam.FlatMap(lambda kv: [x[1] for x in kv[1][1]])
            | "TimestampHistogram" >> beam.CombineGlobally(_Histogram())
            | "TemporalCuts" >> beam.Map(_temporal_cuts, o.temporal_val_fraction,
                                         o.temporal_test_fraction))
    # One shuffle by user brings a user's interactions and label rows together: the values come tagged
    # from the readers, so this is CoGroupByKey without its tagging Map on every element of the largest
    # stream (docs/results/scale.md).
    users = (by_user
             | "ByUser" >> beam.Flatten()
             | "GroupByUser" >> beam.GroupByKey()
             | "SplitUsers" >> beam.ParDo(SplitUsers(o.split, o.seed, o.cold_start_fraction),
                                          cuts=cuts).with_outputs(COUNTS, REJECTED, POPULARITY, main="main"))
    popularity = users[POPULARITY] | "Popularity" >> beam.CombinePerKey(sum)
    catalog = (items.main | "BuildCatalog" >> beam.Map(
        lambda items, pop: build_catalog(items, pop, o.long_tail_fraction), pop=beam.pvalue.AsDict(popularity)))
    catalog_counts = catalog | "WriteCatalog" >> beam.ParDo(WriteCatalog(out))

    if o.num_shards:
        shard_count = p | "NumShards" >> beam.Create([o.num_shards])
    else:
        # auto: from the accepted interaction rows (an upper bound on the training examples), known before the
        # shuffle by user; a count taken from the split users lost users on the local runner (scale.md).
        shard_count = (interactions[ACCEPTED_ROWS] | "SumAcceptedRows" >> beam.CombineGlobally(sum)
                       | "NumShards" >> beam.Map(lambda n: max(1, -(-n // o.examples_per_shard))))
    shards = beam.pvalue.AsSingleton(shard_count)
    # The second and last shuffle, by shard: each shard's users are built into records and written together.
    write_shard = WriteShard(config, out, with_labels=bool(label_files))
    written = (users.main
               | "KeyByShard" >> beam.Map(lambda u, n: (splitting.shard_of(u[0].user_id, n), u), n=shards)
               | "GroupByShard" >> beam.GroupByKey()
               | "WriteShards" >> beam.ParDo(write_shard, catalog=beam.pvalue.AsSingleton(catalog), num_shards=shards)
               .with_outputs(REJECTED, USER_IDS, SHARDS_WRITTEN, main="main"))
    # Shards no user fell into are written empty, so that every file of the set exists. (Not a Flatten of
    # every shard number into the shuffle: the local runner copies a Flatten's inputs in a stage of its own.)
    empty = (shard_count
             | "EmptyShards" >> beam.FlatMap(lambda n, done: [(s, []) for s in sorted(set(range(n)) - set(done))],
                                             done=beam.pvalue.AsList(written[SHARDS_WRITTEN]))
             | "WriteEmptyShards" >> beam.ParDo(write_shard, catalog=beam.pvalue.AsSingleton(catalog),
                                                num_shards=shards).with_outputs(REJECTED, USER_IDS, SHARDS_WRITTEN,
                                                                                main="main"))
    vocabulary_count = (written[USER_IDS]
                        | "UserIdsToList" >> beam.combiners.ToList()
                        | "WriteUserVocabulary" >> beam.Map(write_user_vocabulary(out)))

    rejected = ((interactions[REJECTED], items[REJECTED], users[REJECTED],
                 written[REJECTED], *label_rejects) | "AllRejected" >> beam.Flatten())
    _ = (rejected | "RejectedToJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
         | "WriteDeadLetter" >> beam.io.WriteToText(
             os.path.join(out, prepared.DEAD_LETTER_DIR, "rejected"), file_name_suffix=".jsonl"))
    reject_counts = rejected | "RejectReasons" >> beam.Map(
        lambda r: (f"rejected/{r['input']}/{r['reason']}", 1))
    shards_used = shard_count | "ShardsUsed" >> beam.Map(lambda n: ("num_shards", n))
    _ = ((interactions[COUNTS], items[COUNTS], users[COUNTS], written.main, empty.main, catalog_counts, shards_used,
          vocabulary_count, reject_counts, *label_counts)
         | "AllCounts" >> beam.Flatten()
         | "SumCounts" >> beam.CombinePerKey(sum)
         | "CountsToList" >> beam.combiners.ToList()
         | "WriteCounts" >> beam.Map(lambda kvs: write_text(
             os.path.join(out, "counts.json"), [json.dumps(dict(sorted(kvs)))])))
