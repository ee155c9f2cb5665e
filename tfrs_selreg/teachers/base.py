"""The teacher interface: what every offline teacher (LLM or not) implements.

A teacher receives :class:`ScoringRequest` objects (one prompt's worth of work for one user: the
user's context items, the candidate items, and the pairs to label) and returns one
:class:`ScoringResult` per request. Results carry label rows in the contract of
``tfrs_selreg.data.labels``; a failed request carries a failure reason and its raw response and
**no** rows: nothing is invented.

Adding a teacher is one file: subclass :class:`Teacher`, implement :meth:`Teacher.score_batch`, and
register it with :func:`register`. Teachers never reach training or serving code; only their label
rows do, through the TFRecords.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
from typing import Callable, Optional, Sequence

from tfrs_selreg.data.labels import LabelRow
from tfrs_selreg.data.prepared import Item


@dataclasses.dataclass(frozen=True)
class PairSpec:
    """A pair to label. ``truth`` is set for probe pairs (1 if ``item_i`` is the known positive)."""

    item_i: str
    item_j: str
    kind: str  # schema.KIND_TEACHER or schema.KIND_PROBE
    truth: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class ScoringRequest:
    """One prompt's worth of work.

    Attributes:
      user_id: the user.
      context: the user's context items (training items only, oldest first).
      candidates: the candidate items, already shuffled with the job's seed.
      pairs: the pairs whose labels this request must produce (all items are in ``candidates``).
      segment: free-form tag of why this request exists (``popular``, ``cold_start``,
        ``long_tail``, ``probe``), kept for counting.
    """

    user_id: str
    context: tuple[Item, ...]
    candidates: tuple[Item, ...]
    pairs: tuple[PairSpec, ...]
    segment: str = "popular"

    def content_hash(self) -> str:
        """Hash of everything a teacher sees; with the teacher's identity it keys the cache."""
        payload = json.dumps({
            "user_id": self.user_id,
            "context": [[it.item_id, it.text()] for it in self.context],
            "candidates": [[it.item_id, it.text()] for it in self.candidates],
            "pairs": [dataclasses.astuple(p) for p in self.pairs],
        }, sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclasses.dataclass
class ScoringResult:
    """What a teacher produced for one request.

    ``failure`` is ``None`` on success; otherwise it is a short reason (``invalid_json``,
    ``schema_violation``, ``unknown_item``, ``score_out_of_range``, ``http_429``, ``http_5xx``,
    ``timeout``, ...) and ``rows`` is empty. ``raw`` keeps the raw model output for dead-lettering.
    """

    request_hash: str
    rows: list[LabelRow]
    failure: Optional[str] = None
    raw: Optional[str] = None
    model_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0


class Teacher(abc.ABC):
    """Base class of teachers.

    Attributes:
      name: registry name (``embedding``, ``llama-cpp``, ``openai``).
      model: the model identity (path, hub name or endpoint model name) that keys the cache.
      template_version: bump when the prompt or scoring rule changes, so cached results are not reused.
    """

    name: str = ""
    template_version: str = "1"

    @property
    @abc.abstractmethod
    def model(self) -> str:
        ...

    def setup(self) -> None:
        """Loads the model; called once per worker before the first batch."""

    @abc.abstractmethod
    def score_batch(self, requests: Sequence[ScoringRequest]) -> list[ScoringResult]:
        """Scores a batch of requests; returns one result per request, in order."""

    def cache_key(self, request: ScoringRequest) -> str:
        ident = f"{self.name}\x00{self.model}\x00{self.template_version}\x00{request.content_hash()}"
        return hashlib.sha256(ident.encode("utf-8")).hexdigest()

    def describe(self) -> dict:
        """Teacher identity for manifest.json. Never include secrets."""
        return {"teacher": self.name, "model": self.model, "template_version": self.template_version}


_REGISTRY: dict[str, Callable[..., Teacher]] = {}


def register(name: str) -> Callable[[Callable[..., Teacher]], Callable[..., Teacher]]:
    def deco(factory: Callable[..., Teacher]) -> Callable[..., Teacher]:
        _REGISTRY[name] = factory
        return factory
    return deco


def create(name: str, **options) -> Teacher:
    if name not in _REGISTRY:
        raise ValueError(f"unknown teacher {name!r}; available: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**options)
