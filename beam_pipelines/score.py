"""Beam job: a prepared folder -> teacher label rows, dead letters and a manifest (offline scoring).

Run locally::

    python -m beam_pipelines.score --prepared PREP --teacher embedding --output OUT \
        --runner DirectRunner --direct_num_workers 2 --direct_running_mode multi_processing

``tfrs-selreg score`` wraps this job; ``tfrs-selreg prepare --labels OUT`` joins its label rows.

Stages:

1. (driver) plan every prompt with ``teachers.candidates`` (pure Python, seeded), key each with
   ``Teacher.cache_key`` and look it up in the result cache (``teachers.cache``);
2. ``ResolveRequests``: plan -> ``ScoringRequest`` with the item catalog, split into cached prompts and
   prompts to score;
3. ``ScoreWithTeacher``: Beam's ``RunInference`` with :class:`TeacherModelHandler`, so each worker
   loads the teacher once and scores batches of prompts; ``CheckResults`` turns rows that break the
   label contract into failures; ``WriteCache`` appends every success to the cache at once (a killed
   job loses nothing it had finished); ``ReadCache`` serves the cached prompts;
4. ``WriteLabels`` (``labels-*.jsonl``, the ``tfrs_selreg.data.labels`` contract),
   ``WriteDeadLetters`` (``dead_letter/failures-*.jsonl``: reason and raw model output) and
   ``CombineStats`` -> ``manifest.json`` (``teachers.manifest``), written by the driver;
5. with a teacher that embeds item texts (``item_vectors``, the ``embedding`` teacher): ``EmbedItems``
   over batches of the catalog -> ``item_embeddings/`` (``tfrs_selreg.data.item_embeddings``), which
   ``prepare --labels`` copies into the joined folder for training.

Re-running the same job makes no model call; a failed prompt is not cached, so a rerun retries it.
API keys are read by the teachers from the environment variable named by ``--api-key-env``; the job
writes only that name, and redacts the value from everything it writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import logging
import os
import shutil
import sys
import time
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

import tfrs_selreg  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from beam_pipelines.options import add_flag
from tfrs_selreg import flags
from tfrs_selreg.data import item_embeddings, schema
from tfrs_selreg.data import labels as labels_lib
from tfrs_selreg.data.prepared import DEAD_LETTER_DIR, PreparedData
from tfrs_selreg.teachers import candidates as candidates_lib
from tfrs_selreg.teachers import manifest, registry
from tfrs_selreg.teachers.base import ScoringRequest, ScoringResult, Teacher
from tfrs_selreg.teachers.cache import CACHE_DIR, CacheWriter, ResultCache

LABELS_PREFIX = "labels"
DEAD_LETTER_PREFIX = "failures"
STATS_TEMP_FILE = "_score_stats.json"
METRICS_NAMESPACE = "tfrs_selreg.score"
CACHED = "cached"

# Failure reasons the job itself assigns (teachers assign their own, see base.ScoringResult).
FAILURE_TEACHER_EXCEPTION = "teacher_exception"
FAILURE_SCHEMA_VIOLATION = "schema_violation"

# Teacher flags handed to the teacher's constructor when given (option name = flag dest).
TEACHER_FLAGS = ("model", "base_url", "mode", "api_key_env", "concurrency", "timeout")


class ScoreError(RuntimeError):
    """The job cannot run as asked; the message says what to change."""


class ScoreOptions(PipelineOptions):
    """Flags of the scoring job (Beam's own flags, such as ``--runner``, are separate)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        d = candidates_lib.CandidateConfig()
        add_flag(parser, "--prepared", default=None, help="prepared folder (tfrs-selreg prepare)")
        add_flag(parser, "--teacher", default="embedding", help=f"one of {registry.names()}")
        add_flag(parser, "--output", default=None, help="output folder (local)")
        add_flag(parser, "--cache-dir", dest="cache_dir", default=None,
                  help=f"result cache folder (default OUTPUT/{CACHE_DIR}); share it between runs")
        add_flag(parser, "--seed", type=flags.integer(0), default=d.seed)
        add_flag(parser, "--max-users", dest="max_users", type=flags.integer(1), default=None,
                  help="score a seeded sample of this many users (default: all)")
        add_flag(parser, "--context-length", dest="context_length", type=flags.integer(1),
                  default=d.context_length, help="L: training items in a prompt's context")
        add_flag(parser, "--num-candidates", dest="num_candidates", type=flags.integer(2),
                  default=d.num_candidates, help="N: candidates per prompt")
        add_flag(parser, "--popular-pool", dest="popular_pool", type=flags.integer(1), default=d.popular_pool,
                  help="candidates come from the top items by training popularity")
        add_flag(parser, "--uniform-mix", dest="uniform_mix", type=flags.FRACTION, default=d.uniform_mix,
                  help="share of popular-prompt candidates drawn uniformly from the catalog")
        add_flag(parser, "--pairs-per-user", dest="pairs_per_user", type=flags.integer(0),
                  default=d.pairs_per_user, help="teacher pairs sampled per prompt")
        add_flag(parser, "--probes-per-user", dest="probes_per_user", type=flags.integer(0),
                  default=d.probes_per_user, help="probe pairs (known truth) per user")
        add_flag(parser, "--long-tail-users-per-item", dest="long_tail_users_per_item", type=flags.integer(0),
                  default=d.long_tail_users_per_item,
                  help="coverage augmentation: users each long-tail item is scored for (0: none)")
        add_flag(parser, "--long-tail-items-per-prompt", dest="long_tail_items_per_prompt",
                  type=flags.integer(1), default=d.long_tail_items_per_prompt)
        add_flag(parser, "--model", default=None, help="teacher model (path or endpoint model name)")
        add_flag(parser, "--base-url", dest="base_url", default=None,
                  help="OpenAI-compatible endpoint (openai teacher)")
        add_flag(parser, "--mode", default=None, choices=("listwise", "pairwise"),
                  help="LLM prompting mode")
        add_flag(parser, "--api-key-env", dest="api_key_env", default=None,
                  help="name of the environment variable holding the API key (never the key)")
        add_flag(parser, "--concurrency", type=flags.integer(1), default=None,
                  help="parallel requests per worker (openai teacher)")
        add_flag(parser, "--timeout", type=flags.number(above=0.0), default=None, help="seconds per model request")
        add_flag(parser, "--teacher-option", dest="teacher_option", action="append", default=None,
                  metavar="KEY=VALUE", help="any other teacher constructor option (JSON value or "
                  "string); repeatable, e.g. --teacher-option temperature=0.1")
        add_flag(parser, "--batch-size", dest="batch_size", type=flags.integer(1), default=32,
                  help="prompts per teacher batch (RunInference max batch size)")
        add_flag(parser, "--progress-every", dest="progress_every", type=flags.integer(1), default=100,
                  help="log a progress line every this many prompts scored per worker")


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """A scoring run, resolved (written into ``manifest.json``).

    Attributes:
      prepared: the prepared folder to score.
      output: output folder; ``labels-*.jsonl``, ``dead_letter/``, ``manifest.json`` and, unless
        ``cache_dir`` is set, ``cache/`` go there.
      teacher: registry name of the teacher.
      teacher_options: keyword arguments of the teacher's constructor.
      candidates: who gets scored against what.
      cache_dir: the result cache folder; ``None`` means ``output/cache``.
      batch_size: prompts per ``Teacher.score_batch`` call (at most).
      progress_every: prompts between progress log lines of one worker.
    """

    prepared: str
    output: str
    teacher: str = "embedding"
    teacher_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    candidates: candidates_lib.CandidateConfig = candidates_lib.CandidateConfig()
    cache_dir: Optional[str] = None
    batch_size: int = 32
    progress_every: int = 100

    @property
    def resolved_cache_dir(self) -> str:
        return self.cache_dir or os.path.join(self.output, CACHE_DIR)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cache_dir"] = self.resolved_cache_dir
        return d


def _teacher_option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def config_from_options(o: ScoreOptions) -> ScoreConfig:
    """The :class:`ScoreConfig` of parsed flags; raises :class:`ScoreError` naming a bad flag."""
    if not o.prepared or not o.output:
        raise ScoreError("--prepared and --output are required")
    teacher_options = {k: getattr(o, k) for k in TEACHER_FLAGS if getattr(o, k) is not None}
    for item in o.teacher_option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ScoreError(f"--teacher-option {item!r}: expected KEY=VALUE")
        teacher_options[key.replace("-", "_")] = _teacher_option_value(value)
    try:
        cand = candidates_lib.CandidateConfig(
            seed=o.seed, max_users=o.max_users, context_length=o.context_length,
            num_candidates=o.num_candidates, popular_pool=o.popular_pool, uniform_mix=o.uniform_mix,
            pairs_per_user=o.pairs_per_user, probes_per_user=o.probes_per_user,
            long_tail_users_per_item=o.long_tail_users_per_item,
            long_tail_items_per_prompt=o.long_tail_items_per_prompt)
    except ValueError as e:
        raise ScoreError(str(e).replace("CandidateConfig.", "--")) from None
    if o.batch_size < 1 or o.progress_every < 1:
        raise ScoreError("--batch-size and --progress-every must be >= 1")
    return ScoreConfig(prepared=o.prepared, output=o.output, teacher=o.teacher,
                       teacher_options=teacher_options, candidates=cand, cache_dir=o.cache_dir,
                       batch_size=o.batch_size, progress_every=o.progress_every)


# --- the model handler -------------------------------------------------------------------------


class TeacherModelHandler(ModelHandler[ScoringRequest, PredictionResult, Teacher]):
    """RunInference's view of a teacher: ``load_model`` builds and sets it up once per worker,
    ``run_inference`` scores a batch of requests with ``Teacher.score_batch``."""

    def __init__(self, teacher: str, teacher_options: dict[str, Any], batch_size: int):
        super().__init__()
        self._teacher = teacher
        self._teacher_options = dict(teacher_options)
        self._batch_size = batch_size

    def load_model(self) -> Teacher:
        teacher = registry.create(self._teacher, **self._teacher_options)
        teacher.setup()
        return teacher

    def run_inference(self, batch: Sequence[ScoringRequest], model: Teacher,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        try:
            results = model.score_batch(batch)
        except Exception as e:  # noqa: BLE001  (one bad batch becomes dead letters, not a dead job)
            logging.exception("teacher %s failed on a batch of %d prompts", self._teacher, len(batch))
            results = [ScoringResult(r.content_hash(), [], failure=FAILURE_TEACHER_EXCEPTION,
                                     raw=f"{type(e).__name__}: {e}") for r in batch]
        if len(results) != len(batch):
            raise RuntimeError(f"teacher {self._teacher} returned {len(results)} results for "
                               f"{len(batch)} requests; Teacher.score_batch must return one per request")
        return [PredictionResult(request, result) for request, result in zip(batch, results)]

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE


def check_result(request: ScoringRequest, result: ScoringResult) -> ScoringResult:
    """``result`` unchanged when its rows keep the label contract, else a ``schema_violation`` failure.

    The contract: every row answers one of the request's pairs (same user, same orientation, same
    kind and truth) and passes ``labels.check_values``.
    """
    if result.failure is not None:
        return result
    wanted = {(p.item_i, p.item_j): p for p in request.pairs}
    for row in result.rows:
        pair = wanted.get((row.item_i, row.item_j))
        problem = labels_lib.check_values(row)
        if pair is None or row.user_id != request.user_id:
            problem = f"row ({row.user_id}, {row.item_i}, {row.item_j}) answers no requested pair"
        elif row.kind != pair.kind or row.truth != pair.truth:
            problem = f"row ({row.item_i}, {row.item_j}) has kind/truth {row.kind}/{row.truth}"
        if problem:
            return dataclasses.replace(
                result, rows=[], failure=FAILURE_SCHEMA_VIOLATION,
                raw=f"{problem}; rows: " + json.dumps([dataclasses.asdict(r) for r in result.rows]))
    return result


# --- DoFns -------------------------------------------------------------------------------------


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


# --- the job -----------------------------------------------------------------------------------


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


def _remove_stale_outputs(output: str) -> None:
    # Outputs are rebuilt in full from the cache; old shards (maybe with another shard count) would
    # otherwise be read as duplicate labels.
    patterns = (f"{LABELS_PREFIX}-*.jsonl", os.path.join(DEAD_LETTER_DIR, f"{DEAD_LETTER_PREFIX}-*.jsonl"),
                os.path.join(item_embeddings.DIR, "*"), STATS_TEMP_FILE, manifest.MANIFEST_FILE)
    for pattern in patterns:
        for path in glob.glob(os.path.join(output, pattern)):
            os.remove(path)
    # Beam's temporary folders of a killed run hold partial label shards; Beam writes them only there.
    for folder in glob.glob(os.path.join(output, "**", "beam-temp-*"), recursive=True):
        if os.path.isdir(folder):
            shutil.rmtree(folder)


def score(config: ScoreConfig, options: Optional[PipelineOptions] = None) -> dict[str, Any]:
    """Runs the scoring job; returns the manifest it wrote to ``config.output``.

    ``options`` are Beam's pipeline options (runner, workers); the default is the DirectRunner.
    """
    start = time.time()
    options = options or PipelineOptions(["--runner=DirectRunner"])
    if not options.view_as(StandardOptions).runner:
        options.view_as(StandardOptions).runner = "DirectRunner"  # Never let Beam pick (Prism download).
    teacher = registry.create(config.teacher, **config.teacher_options)
    data = PreparedData(config.prepared)
    items, users = data.items(), data.users()
    plans = candidates_lib.plan_prompts(items, users, config.candidates)
    if not plans:
        raise ScoreError(f"{config.prepared}: no user has a training item to build a prompt from")
    catalog = {it.item_id: it for it in items}
    cache = ResultCache.load(config.resolved_cache_dir)
    tasks = []
    for plan in plans:
        key = teacher.cache_key(candidates_lib.to_request(plan, catalog))
        tasks.append((key, plan, key in cache))
    hits = sum(1 for _, _, cached in tasks if cached)
    if cache.skipped_lines:
        logging.warning("score: skipped %d incomplete/undecodable cache line(s) in %s (a killed run); "
                        "their prompts are scored again", cache.skipped_lines, config.resolved_cache_dir)
    planned_users = {p.user_id for p in plans}
    logging.info("score: %d prompts for %d users with teacher %s (%d cached, %d to score)",
                 len(plans), len(planned_users), config.teacher, hits, len(plans) - hits)

    os.makedirs(os.path.join(config.output, DEAD_LETTER_DIR), exist_ok=True)
    _remove_stale_outputs(config.output)
    cold = frozenset(u.user_id for u in users if u.cold_start and u.user_id in planned_users)
    # A teacher that embeds item texts also leaves those embeddings for training (item_embeddings).
    embeds = callable(getattr(teacher, "item_vectors", None))
    with beam.Pipeline(options=options) as p:
        build_pipeline(p, config, tasks, cold, items if embeds else ())
    if embeds:
        item_embeddings.write_info(config.output, teacher=teacher.name, model=str(getattr(teacher, "model", "")),
                                   dim=_embedding_dim(config.output), items=len(items))

    stats_path = os.path.join(config.output, STATS_TEMP_FILE)
    with open(stats_path, encoding="utf-8") as f:
        stats = json.load(f)
    os.remove(stats_path)
    planned = {
        "users": len(planned_users),
        "cold_start_users": len(cold),
        "teacher_pairs_planned": candidates_lib.pair_count(plans, schema.KIND_TEACHER),
        "probes_planned": candidates_lib.pair_count(plans, schema.KIND_PROBE),
        "cache_lines_skipped": cache.skipped_lines,
    }
    result = manifest.build_manifest(teacher, stats, planned=planned, config=config.to_json(),
                                     wall_time_s=time.time() - start)
    secrets = manifest.secrets_from_env([config.teacher_options.get("api_key_env")])
    manifest.write_manifest(config.output, result, secrets)
    return result


def _embedding_dim(output: str) -> int:
    import tensorflow as tf

    path = sorted(tf.io.gfile.glob(os.path.join(item_embeddings.folder(output), "*" + item_embeddings.SUFFIX)))[0]
    record = next(iter(tf.data.TFRecordDataset(path).take(1))).numpy()
    return len(tf.train.Example.FromString(record).features.feature[item_embeddings.EMBEDDING].float_list.value)


def run(argv: Optional[list[str]] = None, save_main_session: bool = True) -> dict[str, Any]:
    """Parses flags (job flags and Beam's), runs the job, returns the manifest."""
    options = ScoreOptions(argv)  # Not PipelineOptions(argv): --help should list the job's flags.
    options.view_as(SetupOptions).save_main_session = save_main_session
    return score(config_from_options(options.view_as(ScoreOptions)), options)


def main(argv: Optional[list[str]] = None) -> int:
    """``tfrs-selreg score``: runs the job, prints the manifest summary; 1 when every prompt failed."""
    root = logging.getLogger()
    if not root.handlers:  # Importing Beam may already have given the root logger a handler.
        logging.basicConfig(format="%(asctime)s %(message)s")
    root.setLevel(logging.INFO)
    for noisy in ("apache_beam", "absl", "sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        result = run(argv)
    except (ScoreError, FileNotFoundError, ValueError, ImportError) as e:
        print(f"tfrs-selreg score: error: {e}", file=sys.stderr)
        return 1
    print(manifest.summary(result))
    counts = result["counts"]
    if counts["prompts"] and counts["failed_prompts"] == counts["prompts"]:
        print("tfrs-selreg score: every prompt failed; see dead_letter/ in the output folder",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
