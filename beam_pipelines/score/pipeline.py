"""The Beam graph of the scoring job (``build_pipeline``)."""

from __future__ import annotations

import json
import os
from typing import Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.utils import shared

from beam_pipelines.score.handler import TeacherModelHandler
from beam_pipelines.score.options import (
    CACHED,
    DEAD_LETTER_PREFIX,
    LABELS_PREFIX,
    PLANNED,
    PLANNED_TEMP_FILE,
    STATS_TEMP_FILE,
    ScoreConfig,
)
from beam_pipelines.score.transforms import (
    AssignLongTail,
    CheckAndCache,
    CombineStats,
    EmbedItems,
    FromCache,
    JoinCache,
    KeyByLongTailBucket,
    KeyPlans,
    LongTailRequests,
    ParseCacheLine,
    PlanUser,
    ToDeadLetter,
    ToRequest,
    observe_result,
)
from tfrs_selreg.data import item_embeddings
from tfrs_selreg.data.prepared import DEAD_LETTER_DIR, read_users_file
from tfrs_selreg.teachers import candidates as candidates_lib
from tfrs_selreg.teachers import long_tail
from tfrs_selreg.teachers.cache import SHARD_PATTERN


def build_pipeline(p: beam.Pipeline, config: ScoreConfig, users_files: Sequence[str], items: Sequence = ()) -> None:
    """The scoring graph: plan the prompts of the users in ``users_files`` (the prepared users shards),
    join them with the cache by key, score the rest, write labels, dead letters, stats and what was
    planned; with ``items``, also the teacher's embedding of each (``tfrs_selreg.data.item_embeddings``).

    Planning runs in the workers, a user at a time: the catalog (items.jsonl, loaded by each worker) is
    the only global input, the long-tail assignment runs per bucket of users, and the cache is joined
    by key (``CoGroupByKey``, plans and cache lines, not requests and results), so neither users nor cache
    entries are ever held in one place.
    """
    cfg = config.candidates
    catalog = shared.Shared()  # one catalog per worker process, whichever DoFns use it
    if items:
        _ = (p
             | "CreateItems" >> beam.Create(items)
             | "BatchItems" >> beam.BatchElements(min_batch_size=64, max_batch_size=512)
             | "EmbedItems" >> beam.ParDo(EmbedItems(config.teacher, config.teacher_options))
             | "WriteItemEmbeddings" >> beam.io.WriteToTFRecord(
                 os.path.join(item_embeddings.folder(config.output), item_embeddings.PREFIX),
                 file_name_suffix=item_embeddings.SUFFIX))
    users = (p
             | "UsersFiles" >> beam.Create(list(users_files))
             | "SpreadUsersFiles" >> beam.Reshuffle()
             | "ReadUsers" >> beam.FlatMap(read_users_file)
             | "WithTrainItems" >> beam.Filter(lambda u: bool(u.train_items)))
    if cfg.max_users is not None:
        sample = beam.pvalue.AsSingleton(
            users
            | "UserIds" >> beam.Map(lambda u: u.user_id)
            | "SampleUsers" >> beam.combiners.Top.Smallest(
                cfg.max_users, key=lambda uid: candidates_lib.user_rank(cfg.seed, uid))
            | "SampleToSet" >> beam.Map(frozenset))
        users = users | "InSample" >> beam.Filter(lambda u, chosen: u.user_id in chosen, chosen=sample)
    by_user = users | "KeyByUser" >> beam.Map(lambda u: (u.user_id, u))
    groups: dict = {"user": by_user}
    if cfg.long_tail_users_per_item:
        num_buckets = beam.pvalue.AsSingleton(
            users
            | "CountUsers" >> beam.combiners.Count.Globally()
            | "NumBuckets" >> beam.Map(long_tail.num_buckets, cfg))
        members = users | "KeyByBucket" >> beam.ParDo(KeyByLongTailBucket(config.prepared, cfg, catalog), num_buckets)
        wanted = (p
                  | "Once" >> beam.Create([None])
                  | "LongTailRequests" >> beam.ParDo(LongTailRequests(config.prepared, cfg, catalog), num_buckets))
        groups["long_tail"] = ({"members": members, "items": wanted}
                               | "GroupByBucket" >> beam.CoGroupByKey()
                               | "AssignLongTail" >> beam.ParDo(AssignLongTail(cfg)))
    planned = (groups
               | "JoinLongTail" >> beam.CoGroupByKey()
               | "PlanUsers" >> beam.ParDo(PlanUser(config.prepared, cfg, catalog)).with_outputs(PLANNED, main="plans"))
    keyed = planned.plans | "KeyPlans" >> beam.ParDo(
        KeyPlans(config.prepared, cfg, catalog, config.teacher, config.teacher_options))
    cache_lines = (p
                   | "CachePattern" >> beam.Create([os.path.join(config.resolved_cache_dir, SHARD_PATTERN)])
                   | "ReadCache" >> beam.io.ReadAllFromText()
                   | "ParseCache" >> beam.ParDo(ParseCacheLine()).with_outputs(PLANNED, main="entries"))
    resolved = ({"plans": keyed, "cached": cache_lines.entries}
                | "GroupByCacheKey" >> beam.CoGroupByKey()
                | "JoinCache" >> beam.ParDo(JoinCache()).with_outputs(CACHED, main="to_score"))
    handler = KeyedModelHandler(TeacherModelHandler(config.teacher, config.teacher_options, config.batch_size))
    scored = (resolved.to_score
              | "ToRequests" >> beam.ParDo(ToRequest(config.prepared, cfg, catalog))
              | "ScoreWithTeacher" >> RunInference(handler)
              | "CheckAndCache" >> beam.ParDo(CheckAndCache(config.resolved_cache_dir, config.progress_every)))
    cached = resolved[CACHED] | "FromCache" >> beam.ParDo(FromCache(config.prepared, cfg, catalog))
    results = (scored, cached) | "AllResults" >> beam.Flatten()

    _ = (results
         | "ToLabelRows" >> beam.FlatMap(lambda e: [row.to_json() for row in e[1].rows])
         | "WriteLabels" >> beam.io.WriteToText(os.path.join(config.output, LABELS_PREFIX),
                                                file_name_suffix=".jsonl"))
    secret_env = (config.teacher_options.get("api_key_env"),)
    _ = (results
         | "ToDeadLetters" >> beam.ParDo(ToDeadLetter(secret_env))
         | "WriteDeadLetters" >> beam.io.WriteToText(
             os.path.join(config.output, DEAD_LETTER_DIR, DEAD_LETTER_PREFIX), file_name_suffix=".jsonl"))
    _ = (results
         | "Observe" >> beam.Map(observe_result)
         | "CombineStats" >> beam.CombineGlobally(CombineStats())
         | "StatsToJson" >> beam.Map(json.dumps)
         | "WriteStats" >> beam.io.WriteToText(os.path.join(config.output, STATS_TEMP_FILE),
                                               shard_name_template=""))
    _ = ((planned[PLANNED], cache_lines[PLANNED])
         | "AllPlanned" >> beam.Flatten()
         | "SumPlanned" >> beam.CombinePerKey(sum)
         | "PlannedToDict" >> beam.combiners.ToDict()
         | "PlannedToJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
         | "WritePlanned" >> beam.io.WriteToText(os.path.join(config.output, PLANNED_TEMP_FILE),
                                                 shard_name_template=""))
