"""The scoring job's DoFns (planning, requests, cache, dead letters, item embeddings, observations) and its
stats CombineFn."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Optional, Sequence

import apache_beam as beam
from apache_beam.utils import shared

from beam_pipelines.score.handler import check_result
from beam_pipelines.score.options import CACHED, METRICS_NAMESPACE, PLANNED, STAGE_COUNTERS, ScoreError
from tfrs_selreg.data import item_embeddings, schema
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.teachers import candidates as candidates_lib
from tfrs_selreg.teachers import long_tail, manifest, registry
from tfrs_selreg.teachers.cache import CacheWriter, result_from_json


class _Planning:
    """The catalog (items.jsonl by id), its pools and a planner: planning's one global input."""

    def __init__(self, prepared_dir: str, config: candidates_lib.CandidateConfig):
        self.items = {it.item_id: it for it in PreparedData(prepared_dir).items()}
        self.catalog = candidates_lib.Catalog(list(self.items.values()), config.popular_pool)
        self.planner = candidates_lib.UserPlanner(self.catalog, config)


class _WithCatalog(beam.DoFn):
    """A DoFn that uses the catalog. ``shared_catalog`` (one ``apache_beam.utils.shared.Shared`` for the
    whole graph) makes the six DoFns of a worker process hold one copy, loaded once."""

    def __init__(self, prepared_dir: str, config: candidates_lib.CandidateConfig, shared_catalog: shared.Shared):
        self._prepared_dir = prepared_dir
        self._config = config
        self._shared = shared_catalog

    def setup(self):
        self._planning = self._shared.acquire(lambda: _Planning(self._prepared_dir, self._config),
                                              tag=f"{self._prepared_dir}\x00{self._config!r}")
        self._items, self._catalog, self._planner = (
            self._planning.items, self._planning.catalog, self._planning.planner)


class KeyByLongTailBucket(_WithCatalog):
    """A scored user -> ``(bucket, (user_id, long-tail items the user interacted with))``."""

    def process(self, user, num_buckets):
        yield (long_tail.user_bucket(user.user_id, num_buckets, self._config),
               (user.user_id, self._planner.seen_long_tail(user)))


class LongTailRequests(_WithCatalog):
    """Once per job (any element) -> ``(bucket, item)`` per wanted user of each long-tail item."""

    def process(self, _, num_buckets):
        yield from long_tail.requests(self._catalog.long_tail, num_buckets, self._config)


class AssignLongTail(beam.DoFn):
    """``(bucket, {members, items})`` -> ``(user_id, long-tail item)`` (``long_tail.assign``)."""

    def __init__(self, config: candidates_lib.CandidateConfig):
        self._config = config

    def process(self, element):
        _, grouped = element
        yield from long_tail.assign(grouped["members"], grouped["items"], self._config)


class PlanUser(_WithCatalog):
    """``(user_id, {user, long_tail})`` -> ``(plan, cold_start)`` per prompt; the user's counts
    (:func:`plan_summary`) to the ``planned`` output as ``(name, count)`` pairs."""

    def __init__(self, prepared_dir: str, config: candidates_lib.CandidateConfig, shared_catalog: shared.Shared):
        super().__init__(prepared_dir, config, shared_catalog)
        self._planned = beam.metrics.Metrics.counter(METRICS_NAMESPACE, STAGE_COUNTERS[0])

    def process(self, element):
        _, grouped = element
        users, tail = list(grouped["user"]), list(grouped.get("long_tail", ()))
        if not users:  # cannot happen: assignments are drawn among the scored users
            raise ScoreError(f"long-tail items {sorted(tail)} assigned to a user not scored")
        user = users[0]
        plans = self._planner.plan(user, tail)
        for count in plan_summary(user, plans).items():
            yield beam.pvalue.TaggedOutput(PLANNED, count)
        self._planned.inc(len(plans))
        for plan in plans:
            yield plan, user.cold_start


def plan_summary(user, plans) -> dict[str, int]:
    """What the manifest's ``planned`` counts for one user."""
    return {"users": 1, "cold_start_users": int(user.cold_start), "prompts": len(plans),
            "teacher_pairs_planned": candidates_lib.pair_count(plans, schema.KIND_TEACHER),
            "probes_planned": candidates_lib.pair_count(plans, schema.KIND_PROBE)}


class KeyPlans(_WithCatalog):
    """``(plan, cold_start)`` -> ``(cache key, (plan, cold_start))``.

    The request is built to be hashed and dropped: what is shuffled to the cache join is the plan (item
    ids), not the request, which carries the item texts.
    """

    def __init__(self, prepared_dir: str, config: candidates_lib.CandidateConfig, shared_catalog: shared.Shared,
                 teacher: str, teacher_options: dict[str, Any]):
        super().__init__(prepared_dir, config, shared_catalog)
        self._teacher_name = teacher
        self._teacher_options = dict(teacher_options)
        self._keyed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, STAGE_COUNTERS[1])

    def setup(self):
        super().setup()
        # Only the teacher's identity is used (cache_key); its model is loaded by RunInference.
        self._teacher = registry.create(self._teacher_name, **self._teacher_options)

    def process(self, element):
        plan, cold = element
        self._keyed.inc()
        yield self._teacher.cache_key(candidates_lib.to_request(plan, self._items)), (plan, cold)


class ParseCacheLine(beam.DoFn):
    """A line of a cache object -> ``(key, line)``; a line cut short by a kill or otherwise undecodable
    is counted (``("cache_lines_skipped", 1)`` to the ``planned`` output) and its prompt scored again."""

    def __init__(self):
        self._skipped = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "cache_lines_skipped")

    def process(self, line):
        try:
            key, _ = result_from_json(line)
        except (ValueError, KeyError, TypeError):
            self._skipped.inc()
            yield beam.pvalue.TaggedOutput(PLANNED, ("cache_lines_skipped", 1))
            return
        yield key, line


class JoinCache(beam.DoFn):
    """``(key, {plans, cached})`` -> ``((key, cold_start), plan)`` to score, or ``(plan, cache line,
    cold_start)`` to the ``cached`` output."""

    def __init__(self):
        self._hits = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "cache_hits")
        self._joined = beam.metrics.Metrics.counter(METRICS_NAMESPACE, STAGE_COUNTERS[2])

    def process(self, element):
        key, grouped = element
        # Two objects may hold the same key (a prompt scored again after a kill): any one is the answer,
        # the smallest line for the same outcome on every run.
        line = min(grouped["cached"], default=None)
        for plan, cold in grouped["plans"]:
            self._joined.inc()
            if line is None:
                yield (key, cold), plan
            else:
                self._hits.inc()
                yield beam.pvalue.TaggedOutput(CACHED, (plan, line, cold))


class ToRequest(_WithCatalog):
    """``((key, cold_start), plan)`` -> ``((key, cold_start), ScoringRequest)``, for the teacher."""

    def __init__(self, prepared_dir: str, config: candidates_lib.CandidateConfig, shared_catalog: shared.Shared):
        super().__init__(prepared_dir, config, shared_catalog)
        self._sent = beam.metrics.Metrics.counter(METRICS_NAMESPACE, STAGE_COUNTERS[3])

    def process(self, element):
        keys, plan = element
        self._sent.inc()
        yield keys, candidates_lib.to_request(plan, self._items)


class FromCache(_WithCatalog):
    """``(plan, cache line, cold_start)`` -> ``(ScoringRequest, cached result, True, cold_start)``."""

    def process(self, element):
        plan, line, cold = element
        yield candidates_lib.to_request(plan, self._items), result_from_json(line)[1], True, cold


class CheckAndCache(beam.DoFn):
    """``((key, cold_start), PredictionResult)`` -> ``(request, result, False, cold_start)``; successes go
    to the cache.

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
        (key, cold), prediction = element
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
        yield request, result, False, cold

    def finish_bundle(self):
        self._writer.flush()  # a bundle's results are in the cache before Beam counts the bundle done

    def teardown(self):
        self._writer.close()


class ToDeadLetter(beam.DoFn):
    """A failed result -> one JSON line (reason, raw output), secret values redacted."""

    def __init__(self, secret_env: Sequence[Optional[str]]):
        self._secret_env = tuple(secret_env)

    def setup(self):
        # Secret values are read on the worker, never pickled into the pipeline.
        self._secrets = manifest.secrets_from_env(self._secret_env)

    def process(self, element):
        request, result, _, _ = element
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


def observe_result(element) -> manifest.Observation:
    """``(request, result, cached, cold_start)`` -> :class:`manifest.Observation`."""
    request, result, cached, cold = element
    return manifest.observe(request, result, cached=cached, cold_start=cold)


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

