"""RunInference's view of a teacher (:class:`TeacherModelHandler`) and the label contract of its results."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Iterable, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from beam_pipelines.score.options import FAILURE_SCHEMA_VIOLATION, FAILURE_TEACHER_EXCEPTION, METRICS_NAMESPACE
from tfrs_selreg.data import labels as labels_lib
from tfrs_selreg.teachers import registry
from tfrs_selreg.teachers.base import ScoringRequest, ScoringResult, Teacher


class LazyTeacher:
    """A teacher set up on first use: RunInference loads its model when a worker starts, and a job whose
    prompts are all cached should not pay for loading a model it never calls."""

    def __init__(self, teacher: Teacher):
        self._teacher = teacher
        self._ready = False

    def get(self) -> Teacher:
        if not self._ready:
            self._teacher.setup()
            self._ready = True
        return self._teacher


class TeacherModelHandler(ModelHandler[ScoringRequest, PredictionResult, LazyTeacher]):
    """RunInference's view of a teacher: ``load_model`` builds it once per worker (set up on the first
    batch), ``run_inference`` scores a batch of requests with ``Teacher.score_batch``."""

    def __init__(self, teacher: str, teacher_options: dict[str, Any], batch_size: int):
        super().__init__()
        self._teacher = teacher
        self._teacher_options = dict(teacher_options)
        self._batch_size = batch_size

    def load_model(self) -> LazyTeacher:
        return LazyTeacher(registry.create(self._teacher, **self._teacher_options))

    def run_inference(self, batch: Sequence[ScoringRequest], model: LazyTeacher,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        teacher = model.get()
        try:
            results = teacher.score_batch(batch)
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
