"""The Beam graph of the scoring job (``build_pipeline``)."""

from __future__ import annotations

import json
import os
from typing import Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from beam_pipelines.score.handler import TeacherModelHandler
from beam_pipelines.score.options import (
    CACHED,
    DEAD_LETTER_PREFIX,
    LABELS_PREFIX,
    STATS_TEMP_FILE,
    ScoreConfig,
)
from beam_pipelines.score.transforms import (
    CheckAndCache,
    CombineStats,
    EmbedItems,
    ObserveResult,
    ReadCache,
    ResolveRequests,
    ToDeadLetter,
)
from tfrs_selreg.data import item_embeddings
from tfrs_selreg.data.prepared import DEAD_LETTER_DIR
from tfrs_selreg.teachers import candidates as candidates_lib


def build_pipeline(p: beam.Pipeline, config: ScoreConfig, tasks: list[tuple[str, candidates_lib.PromptPlan, bool]],
                   cold_start_users: frozenset, items: Sequence = ()) -> None:
    """The scoring graph for ``tasks`` = ``(cache key, plan, cached)``; with ``items``, also the teacher's
    embedding of each (``tfrs_selreg.data.item_embeddings``)."""
    if items:
        _ = (p
             | "CreateItems" >> beam.Create(items)
             | "BatchItems" >> beam.BatchElements(min_batch_size=64, max_batch_size=512)
             | "EmbedItems" >> beam.ParDo(EmbedItems(config.teacher, config.teacher_options))
             | "WriteItemEmbeddings" >> beam.io.WriteToTFRecord(
                 os.path.join(item_embeddings.folder(config.output), item_embeddings.PREFIX),
                 file_name_suffix=item_embeddings.SUFFIX))
    resolved = (p
                | "CreatePrompts" >> beam.Create(tasks)
                | "ResolveRequests" >> beam.ParDo(ResolveRequests(config.prepared)).with_outputs(
                    CACHED, main="to_score"))
    branches = []
    if any(not cached for _, _, cached in tasks):
        handler = KeyedModelHandler(TeacherModelHandler(config.teacher, config.teacher_options,
                                                        config.batch_size))
        branches.append(resolved.to_score
                        | "ScoreWithTeacher" >> RunInference(handler)
                        | "CheckAndCache" >> beam.ParDo(CheckAndCache(config.resolved_cache_dir,
                                                                      config.progress_every)))
    if any(cached for _, _, cached in tasks):
        branches.append(resolved[CACHED]
                        | "ReadCache" >> beam.ParDo(ReadCache(config.resolved_cache_dir)))
    results = tuple(branches) | "AllResults" >> beam.Flatten()

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
         | "Observe" >> beam.ParDo(ObserveResult(cold_start_users))
         | "CombineStats" >> beam.CombineGlobally(CombineStats())
         | "StatsToJson" >> beam.Map(json.dumps)
         | "WriteStats" >> beam.io.WriteToText(os.path.join(config.output, STATS_TEMP_FILE),
                                               shard_name_template=""))
