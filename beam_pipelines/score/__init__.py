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

import tfrs_selreg  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from beam_pipelines.score.handler import TeacherModelHandler, check_result
from beam_pipelines.score.launcher import main, run, score
from beam_pipelines.score.options import ScoreConfig, ScoreError, ScoreOptions, config_from_options
from beam_pipelines.score.pipeline import build_pipeline

__all__ = ["ScoreConfig", "ScoreError", "ScoreOptions", "TeacherModelHandler", "build_pipeline", "check_result",
           "config_from_options", "main", "run", "score"]
