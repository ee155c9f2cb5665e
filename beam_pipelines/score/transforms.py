"""The scoring job's DoFns (requests, cache, dead letters, item embeddings, observations) and its stats CombineFn."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Optional, Sequence

import apache_beam as beam

from beam_pipelines.score.handler import check_result
from beam_pipelines.score.options import CACHED, METRICS_NAMESPACE, ScoreError
from tfrs_selreg.data import item_embeddings
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.teachers import candidates as candidates_lib
from tfrs_selreg.teachers import manifest, registry
from tfrs_selreg.teachers.cache import CacheWriter, ResultCache


class ResolveRequests(beam.DoFn):
    """``(key, plan, cached)`` -> ``(key, ScoringRequest)``, cached ones to the ``cached`` output."""

    def __init__(self, prepared_dir: str):
        self._prepared_dir = prepared_dir
        self._catalog: dict = {}

    def setup(self):
        self._catalog = {it.item_id: it for it in PreparedData(self._prepared_dir).items()}

    def process(self, element):
        key, plan, cached = element
        request = candidates_lib.to_request(plan, self._catalog)
        if cached:
            yield beam.pvalue.TaggedOutput(CACHED, (key, request))
        else:
            yield key, request


class CheckAndCache(beam.DoFn):
    """``(key, PredictionResult)`` -> ``(request, result, cached=False)``; successes go to the cache.

    Also logs a progress line every ``progress_every`` prompts (per worker) and counts prompts,
    model calls and failures as Beam metrics.
    """

    def __init__(self, cache_dir: str, progress_every: int):
        self._cache_dir = cache_dir
        self._progress_every = progress_every
        self._scored = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "prompts_scored")
        self._calls = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "model_calls")
        self._failed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "failed_prompts")

    def setup(self):
        self._writer = CacheWriter(self._cache_dir)
        self._count = 0
        self._start = time.time()

    def process(self, element):
        key, prediction = element
        request, result = prediction.example, check_result(prediction.example, prediction.inference)
        if result.failure is None:
            self._writer.put(key, result)
        else:
            self._failed.inc()
        self._scored.inc()
        self._calls.inc(result.model_calls)
        self._count += 1
        if self._count % self._progress_every == 0:
            elapsed = time.time() - self._start
            logging.info("score: this worker scored %d prompts (%.1f prompts/s)", self._count,
                         self._count / max(elapsed, 1e-9))
        yield request, result, False

    def finish_bundle(self):
        self._writer.flush()  # a bundle's results are in the cache before Beam counts the bundle done

    def teardown(self):
        self._writer.close()


class ReadCache(beam.DoFn):
    """``(key, request)`` -> ``(request, cached result, cached=True)``."""

    def __init__(self, cache_dir: str):
        self._cache_dir = cache_dir
        self._hits = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "cache_hits")

    def setup(self):
        self._cache = ResultCache.load(self._cache_dir)

    def process(self, element):
        key, request = element
        result = self._cache.get(key)
        if result is None:
            raise ScoreError(f"cache entry {key} of user {request.user_id} vanished from "
                             f"{self._cache_dir} while the job ran; rerun the job")
        self._hits.inc()
        yield request, result, True


class ToDeadLetter(beam.DoFn):
    """A failed result -> one JSON line (reason, raw output), secret values redacted."""

    def __init__(self, secret_env: Sequence[Optional[str]]):
        self._secret_env = tuple(secret_env)

    def setup(self):
        # Secret values are read on the worker, never pickled into the pipeline.
        self._secrets = manifest.secrets_from_env(self._secret_env)

    def process(self, element):
        request, result, _ = element
        if result.failure is None:
            return
        record = {"user_id": request.user_id, "segment": request.segment,
                  "request_hash": request.content_hash(), "reason": result.failure,
                  "raw": (result.raw or "")[:4000]}
        yield manifest.redact(json.dumps(record, sort_keys=True), self._secrets)


class EmbedItems(beam.DoFn):
    """A batch of catalog items -> one ``item_embeddings`` record per item (``Teacher.item_vectors``),
    with the teacher loaded once per worker."""

    def __init__(self, teacher: str, teacher_options: dict[str, Any]):
        self._teacher_name = teacher
        self._teacher_options = dict(teacher_options)

    def setup(self):
        self._teacher = registry.create(self._teacher_name, **self._teacher_options)
        self._teacher.setup()

    def process(self, items):
        vectors = self._teacher.item_vectors(items)
        for item, vector in zip(items, vectors):
            yield item_embeddings.to_example_bytes(item.item_id, vector)


class ObserveResult(beam.DoFn):
    """``(request, result, cached)`` -> :class:`manifest.Observation`."""

    def __init__(self, cold_start_users: frozenset):
        self._cold = cold_start_users

    def process(self, element):
        request, result, cached = element
        yield manifest.observe(request, result, cached=cached, cold_start=request.user_id in self._cold)


class CombineStats(beam.CombineFn):
    """Sums observations into :class:`manifest.ScoreStats`."""

    def create_accumulator(self):
        return manifest.ScoreStats()

    def add_input(self, acc, obs):
        acc.add(obs)
        return acc

    def merge_accumulators(self, accs):
        accs = iter(accs)
        first = next(accs)
        for acc in accs:
            first.merge(acc)
        return first

    def extract_output(self, acc):
        return acc.to_json()
