"""The ``random`` teacher: a control whose labels carry no information about the user.

For every pair it draws ``pref ~ Uniform(0, 1)`` from a hash of ``(seed, user, item_i, item_j)``, and
``confidence = |2 pref - 1|`` as the other teachers do. Its probe accuracy is 0.5 in expectation, so
a reliability gate trained on its probes must learn to give its pairs weight near zero, and training
with it must not change the backbone's accuracy beyond seed noise (docs/method.md, section 5). The
labels are a pure function of the pair and the seed: re-scoring, caching and distributed workers all
give the same rows.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Sequence

from tfrs_selreg.data import labels
from tfrs_selreg.data.labels import LabelRow
from tfrs_selreg.teachers.base import ScoringRequest, ScoringResult, Teacher, register


def uniform(seed: int, *parts: str) -> float:
    """A deterministic draw from ``Uniform[0, 1)`` keyed by ``seed`` and ``parts``."""
    digest = hashlib.sha256("\x00".join((str(seed), *parts)).encode("utf-8")).digest()
    return struct.unpack(">Q", digest[:8])[0] / 2.0 ** 64


@register("random")
class RandomTeacher(Teacher):
    """Uniform random preferences (see the module docstring).

    Args:
      seed: keys every draw; ``--teacher-option seed=N`` on ``tfrs-selreg score``.
    """

    name = "random"
    template_version = "uniform-1"
    template_text = "pref = Uniform(0, 1) keyed by sha256(seed, user_id, item_i, item_j)"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    @property
    def model(self) -> str:
        return f"uniform(seed={self.seed})"

    def score_batch(self, requests: Sequence[ScoringRequest]) -> list[ScoringResult]:
        results = []
        for request in requests:
            rows = []
            for pair in request.pairs:
                pref = uniform(self.seed, request.user_id, pair.item_i, pair.item_j)
                rows.append(LabelRow(user_id=request.user_id, item_i=pair.item_i, item_j=pair.item_j, pref=pref,
                                     kind=pair.kind, confidence=labels.default_confidence(pref), truth=pair.truth,
                                     teacher=self.name))
            results.append(ScoringResult(request.content_hash(), rows, model_calls=1))
        return results

    def describe(self) -> dict:
        # Not "seed": manifest.json already has the scoring job's candidate seed under that key.
        return {**super().describe(), "random_seed": self.seed}
