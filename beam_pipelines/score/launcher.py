"""Running the scoring job: the pipeline (planning, cache and scoring run in the workers), the manifest, the CLI."""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import sys
import time
from typing import Any, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from beam_pipelines.score.options import (
    DEAD_LETTER_PREFIX,
    LABELS_PREFIX,
    METRICS_NAMESPACE,
    PLANNED_TEMP_FILE,
    STAGE_COUNTERS,
    STATS_TEMP_FILE,
    ScoreConfig,
    ScoreError,
    ScoreOptions,
    config_from_options,
)
from beam_pipelines.score.pipeline import build_pipeline
from tfrs_selreg.data import item_embeddings
from tfrs_selreg.data.prepared import DEAD_LETTER_DIR, PreparedData
from tfrs_selreg.teachers import manifest, registry


def _remove_stale_outputs(output: str) -> None:
    # Outputs are rebuilt in full from the cache; old shards (maybe with another shard count) would
    # otherwise be read as duplicate labels. Beam's temporary files of a killed run hold partial label
    # shards; Beam writes them only under beam-temp-* folders.
    patterns = [f"{LABELS_PREFIX}-*.jsonl", f"{DEAD_LETTER_DIR}/{DEAD_LETTER_PREFIX}-*.jsonl",
                f"{item_embeddings.DIR}/*", STATS_TEMP_FILE, manifest.MANIFEST_FILE, "**beam-temp-*/**"]
    matched = FileSystems.match([FileSystems.join(output, p) for p in patterns])
    stale = [m.path for r in matched for m in r.metadata_list]
    if stale:
        FileSystems.delete(stale)
    if "://" not in output:  # an object store has no folders left behind; a local disk has (empty) ones
        for folder in glob.glob(os.path.join(output, "**", "beam-temp-*"), recursive=True):
            shutil.rmtree(folder, ignore_errors=True)


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
    # The catalog is loaded here only for a teacher that embeds item texts (it also leaves those
    # embeddings for training, item_embeddings); users and cache entries never reach the launcher.
    embeds = callable(getattr(teacher, "item_vectors", None))
    items = data.items() if embeds else []
    dead_letters = FileSystems.join(config.output, DEAD_LETTER_DIR)
    if not FileSystems.exists(dead_letters):
        FileSystems.mkdirs(dead_letters)
    _remove_stale_outputs(config.output)
    p = beam.Pipeline(options=options)
    build_pipeline(p, config, data.users_files, items)
    job = p.run()
    job.wait_until_finish()
    if embeds:
        item_embeddings.write_info(config.output, teacher=teacher.name, model=str(getattr(teacher, "model", "")),
                                   dim=_embedding_dim(config.output), items=len(items))

    stats, planned = (_read_temp_json(FileSystems.join(config.output, name))
                      for name in (STATS_TEMP_FILE, PLANNED_TEMP_FILE))
    planned = {k: planned.get(k, 0) for k in PLANNED_KEYS}
    if not planned["prompts"]:
        raise ScoreError(f"{config.prepared}: no user has a training item to build a prompt from")
    check_every_prompt_observed(stats, planned.pop("prompts"), _stage_counts(job))
    if planned["cache_lines_skipped"]:
        logging.warning("score: skipped %d incomplete/undecodable cache line(s) in %s (a killed run); "
                        "their prompts were scored again", planned["cache_lines_skipped"],
                        config.resolved_cache_dir)
    logging.info("score: %d prompts for %d users with teacher %s (%d cached, %d scored)", stats["prompts"],
                 planned["users"], config.teacher, stats["cache_hits"], stats["prompts_scored"])
    result = manifest.build_manifest(teacher, stats, planned=planned, config=config.to_json(),
                                     wall_time_s=time.time() - start)
    secrets = manifest.secrets_from_env([config.teacher_options.get("api_key_env")])
    manifest.write_manifest(config.output, result, secrets)
    return result


PLANNED_KEYS = ("users", "cold_start_users", "prompts", "teacher_pairs_planned", "probes_planned",
                "cache_lines_skipped")


def _read_temp_json(path: str) -> dict[str, Any]:
    """A one-line JSON file the job wrote for the launcher, deleted once read; a job with nothing to
    count (no user planned) leaves an empty one."""
    with FileSystems.open(path) as f:
        text = f.read().decode("utf-8").strip()
    FileSystems.delete([path])
    return json.loads(text) if text else {}


def _stage_counts(job: beam.runners.runner.PipelineResult) -> dict[str, int]:
    """The job's ``STAGE_COUNTERS`` as the runner reports them (committed values; 0 for a stage it did not run)."""
    counts = dict.fromkeys(STAGE_COUNTERS, 0)
    for result in job.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]:
        if result.key.metric.name in counts:
            counts[result.key.metric.name] += result.committed or 0
    return counts


def check_every_prompt_observed(stats: dict[str, Any], planned: int, stages: Optional[dict[str, int]] = None) -> None:
    """Each planned prompt is observed once (cached, scored or failed); fewer means the runner dropped
    elements, and the job fails before it writes the manifest instead of reporting partial labels as whole.
    ``stages``: the prompts counted at each stage, which the message lists to show where they went missing."""
    if stats["prompts"] != planned:
        where = "; counted per stage: " + ", ".join(f"{k} {v:,}" for k, v in stages.items()) if stages else ""
        raise ScoreError(
            f"{planned - stats['prompts']:,} of {planned:,} planned prompts never reached the end of the job "
            f"(observed {stats['prompts']:,}{where}): the runner dropped elements. What was scored is in the "
            "cache; run the job again (cached prompts are not sent to the teacher again), on the local runner "
            "with one worker: its multi-worker modes were seen dropping prompts at scale (docs/results/scale.md).")


def _embedding_dim(output: str) -> int:
    """The length of the first item vector the job wrote (read through Beam, so ``gs://`` works)."""
    from apache_beam.io.tfrecordio import _TFRecordUtil
    from tensorflow.core.example import example_pb2

    [path, *_] = sorted(m.path for m in FileSystems.match(
        [FileSystems.join(item_embeddings.folder(output), "*" + item_embeddings.SUFFIX)])[0].metadata_list)
    with FileSystems.open(path) as f:
        record = _TFRecordUtil.read_record(f)
    return len(example_pb2.Example.FromString(record).features.feature[item_embeddings.EMBEDDING].float_list.value)


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
