"""What a scoring run did: counts, cost and the teacher's probe accuracy, written as ``manifest.json``.

Each scored (or cache-hit) request becomes an :class:`Observation`; :class:`ScoreStats` sums them (it
is the accumulator of the job's combine step, so workers can merge partial sums). The manifest adds
the run's identity (teacher, model, prompt template version and the SHA-256 of the template text,
seed, resolved configuration) and wall time.

Probe accuracy: a probe is *correct* when ``(pref > 0.5) == (truth == 1)``; a probe with
``pref == 0.5`` exactly is a *tie*, counted apart and left out of ``accuracy``
(``correct / (probes - ties)``). It is reported overall, on cold-start users, and on long-tail items
(probe pairs holding at least one long-tail item, the gate's ``Tail`` signal).

Secrets: the manifest records the *name* of the environment variable that holds an API key, never its
value; :func:`redact` removes secret values from any text the job writes.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
from typing import Any, Iterable, Optional, Sequence

from tfrs_selreg.data import labels, schema
from tfrs_selreg.teachers.base import ScoringRequest, ScoringResult, Teacher

MANIFEST_FILE = "manifest.json"

SLICE_OVERALL = "overall"
SLICE_COLD_START = "cold_start"
SLICE_LONG_TAIL = "long_tail"
PROBE_SLICES = (SLICE_OVERALL, SLICE_COLD_START, SLICE_LONG_TAIL)

# Always redacted, whatever --api-key-env says: the variable OpenAI clients read by default.
DEFAULT_SECRET_ENV = ("OPENAI_API_KEY",)


@dataclasses.dataclass(frozen=True)
class Observation:
    """The countable facts of one request and its result.

    ``probes`` holds one ``(correct, tie, long_tail)`` triple per probe row.
    """

    segment: str
    cached: bool
    cold_start: bool
    failure: Optional[str]
    model_calls: int
    tokens_in: int
    tokens_out: int
    teacher_rows: int
    probes: tuple[tuple[bool, bool, bool], ...]


def observe(request: ScoringRequest, result: ScoringResult, *, cached: bool,
            cold_start: bool) -> Observation:
    """Summarizes one request/result; a cache hit made no model call and used no tokens this run."""
    tail = {it.item_id for it in request.candidates if it.long_tail}
    probes = tuple(
        (labels.is_ordered(row.pref) and labels.probe_correct(row.pref, row.truth), not labels.is_ordered(row.pref),
         row.item_i in tail or row.item_j in tail)
        for row in result.rows if row.kind == schema.KIND_PROBE)
    return Observation(
        segment=request.segment, cached=cached, cold_start=cold_start, failure=result.failure,
        model_calls=0 if cached else result.model_calls,
        tokens_in=0 if cached else result.tokens_in,
        tokens_out=0 if cached else result.tokens_out,
        teacher_rows=sum(1 for row in result.rows if row.kind == schema.KIND_TEACHER),
        probes=probes)


@dataclasses.dataclass
class ProbeTally:
    probes: int = 0
    correct: int = 0
    ties: int = 0

    @property
    def accuracy(self) -> Optional[float]:
        """``correct / (probes - ties)``; ``None`` when no probe was decided."""
        decided = self.probes - self.ties
        return self.correct / decided if decided else None

    def add(self, correct: bool, tie: bool) -> None:
        self.probes += 1
        self.correct += int(correct)
        self.ties += int(tie)

    def merge(self, other: "ProbeTally") -> None:
        self.probes += other.probes
        self.correct += other.correct
        self.ties += other.ties

    def to_json(self) -> dict[str, Any]:
        return {"probes": self.probes, "correct": self.correct, "ties": self.ties,
                "accuracy": self.accuracy}


@dataclasses.dataclass
class ScoreStats:
    """Sums of observations; ``merge`` makes it a combine accumulator."""

    prompts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    cache_hits: int = 0
    prompts_scored: int = 0
    model_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    failures: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    teacher_pairs: int = 0
    probe_accuracy: dict[str, ProbeTally] = dataclasses.field(
        default_factory=lambda: {s: ProbeTally() for s in PROBE_SLICES})

    def add(self, obs: Observation) -> None:
        self.prompts[obs.segment] += 1
        self.cache_hits += int(obs.cached)
        self.prompts_scored += int(not obs.cached)
        self.model_calls += obs.model_calls
        self.tokens_in += obs.tokens_in
        self.tokens_out += obs.tokens_out
        if obs.failure is not None:
            self.failures[obs.failure] += 1
        self.teacher_pairs += obs.teacher_rows
        for correct, tie, long_tail in obs.probes:
            self.probe_accuracy[SLICE_OVERALL].add(correct, tie)
            if obs.cold_start:
                self.probe_accuracy[SLICE_COLD_START].add(correct, tie)
            if long_tail:
                self.probe_accuracy[SLICE_LONG_TAIL].add(correct, tie)

    def merge(self, other: "ScoreStats") -> None:
        self.prompts.update(other.prompts)
        self.cache_hits += other.cache_hits
        self.prompts_scored += other.prompts_scored
        self.model_calls += other.model_calls
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.failures.update(other.failures)
        self.teacher_pairs += other.teacher_pairs
        for name, tally in other.probe_accuracy.items():
            self.probe_accuracy[name].merge(tally)

    def to_json(self) -> dict[str, Any]:
        return {
            "prompts_by_segment": dict(sorted(self.prompts.items())),
            "prompts": sum(self.prompts.values()),
            "cache_hits": self.cache_hits,
            "prompts_scored": self.prompts_scored,
            "model_calls": self.model_calls,
            "failed_prompts": sum(self.failures.values()),
            "failures": dict(sorted(self.failures.items())),
            "teacher_pairs": self.teacher_pairs,
            "probes": self.probe_accuracy[SLICE_OVERALL].probes,
            "tokens": {"in": self.tokens_in, "out": self.tokens_out},
            "probe_accuracy": {name: t.to_json() for name, t in self.probe_accuracy.items()},
        }


def template_sha256(teacher: Teacher) -> Optional[str]:
    """SHA-256 of the teacher's prompt template text (its ``template_text`` attribute), if it has one."""
    text = getattr(teacher, "template_text", None)
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if isinstance(text, str) else None


def build_manifest(teacher: Teacher, stats: dict[str, Any], *, planned: dict[str, Any],
                   config: dict[str, Any], wall_time_s: float) -> dict[str, Any]:
    """The manifest: teacher identity, resolved config, planned and observed counts, probe accuracy.

    ``stats`` is :meth:`ScoreStats.to_json`; tokens are ``None`` when the teacher reported none.
    """
    identity = dict(teacher.describe())
    identity.setdefault("template_sha256", template_sha256(teacher))
    tokens = stats["tokens"]
    counts = {k: v for k, v in stats.items() if k not in ("probe_accuracy", "tokens")}
    return {
        **identity,
        "seed": config["candidates"]["seed"],
        "counts": {**planned, **counts},
        "tokens": tokens if tokens["in"] or tokens["out"] else None,
        "probe_accuracy": stats["probe_accuracy"],
        "wall_time_s": round(wall_time_s, 3),
        "config": config,
    }


def secrets_from_env(names: Iterable[Optional[str]]) -> list[str]:
    """Values of the named environment variables (plus the default key variables) that are set."""
    wanted = [n for n in (*names, *DEFAULT_SECRET_ENV) if n]
    return [os.environ[n] for n in wanted if os.environ.get(n)]


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def write_manifest(directory: str, manifest: dict[str, Any], secrets: Sequence[str]) -> str:
    """Writes ``manifest.json`` (secret values redacted); returns its path."""
    from apache_beam.io.filesystems import FileSystems

    path = FileSystems.join(directory, MANIFEST_FILE)
    with FileSystems.create(path) as f:
        f.write((redact(json.dumps(manifest, indent=2, sort_keys=False), secrets) + "\n").encode("utf-8"))
    return path


def summary(manifest: dict[str, Any]) -> str:
    """A few lines for the terminal: what was scored, at what cost, and how good the teacher is."""
    c = manifest["counts"]
    lines = [
        f"teacher {manifest['teacher']} (model {manifest['model']}, template "
        f"{manifest['template_version']}), {manifest['wall_time_s']:.1f} s",
        f"  users {c['users']}, prompts {c['prompts']} "
        f"({', '.join(f'{k} {v}' for k, v in c['prompts_by_segment'].items())})",
        f"  cache hits {c['cache_hits']}, model calls {c['model_calls']}, failed prompts "
        f"{c['failed_prompts']}" + (f" {c['failures']}" if c["failures"] else ""),
        f"  label rows: teacher pairs {c['teacher_pairs']}, probes {c['probes']}",
    ]
    if manifest["tokens"]:
        lines.append(f"  tokens in {manifest['tokens']['in']}, out {manifest['tokens']['out']}")
    parts = []
    for name, t in manifest["probe_accuracy"].items():
        acc = "n/a" if t["accuracy"] is None else f"{t['accuracy']:.3f}"
        parts.append(f"{name} {acc} (n={t['probes']}, ties {t['ties']})")
    lines.append("  probe accuracy: " + "; ".join(parts))
    return "\n".join(lines)
