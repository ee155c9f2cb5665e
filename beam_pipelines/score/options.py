"""The scoring job's flags (``ScoreOptions``), its resolved :class:`ScoreConfig`, output names and error type."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any, Optional

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options import add_flag
from tfrs_selreg import flags
from tfrs_selreg.teachers import candidates as candidates_lib
from tfrs_selreg.teachers import registry
from tfrs_selreg.teachers.cache import CACHE_DIR

LABELS_PREFIX = "labels"
DEAD_LETTER_PREFIX = "failures"
STATS_TEMP_FILE = "_score_stats.json"
PLANNED_TEMP_FILE = "_score_planned.json"
METRICS_NAMESPACE = "tfrs_selreg.score"
CACHED = "cached"
PLANNED = "planned"
# Prompts counted as they pass the job's stages, in order (Beam counters), to tell where a runner lost some.
STAGE_COUNTERS = ("prompts_planned", "prompts_keyed", "prompts_joined", "prompts_sent_to_teacher")

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
        add_flag(parser, "--output", default=None, help="output folder, local or gs://")
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
        add_flag(parser, "--long-tail-bucket-users", dest="long_tail_bucket_users", type=flags.integer(1),
                  default=d.long_tail_bucket_users,
                  help="users per bucket of the long-tail assignment (what one worker holds for it)")
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
            long_tail_items_per_prompt=o.long_tail_items_per_prompt,
            long_tail_bucket_users=o.long_tail_bucket_users)
    except ValueError as e:
        raise ScoreError(str(e).replace("CandidateConfig.", "--")) from None
    if o.batch_size < 1 or o.progress_every < 1:
        raise ScoreError("--batch-size and --progress-every must be >= 1")
    return ScoreConfig(prepared=o.prepared, output=o.output, teacher=o.teacher,
                       teacher_options=teacher_options, candidates=cand, cache_dir=o.cache_dir,
                       batch_size=o.batch_size, progress_every=o.progress_every)
