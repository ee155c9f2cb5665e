"""Reference rankers with no training, evaluated exactly like a trained run.

They answer "where does the teacher know more than the model?" before any regularizer is tuned:

- ``popularity``: ``score(u, i) = log(1 + popularity(i))`` (training interactions), the same for every user;
- ``embedding-teacher``: the ``embedding`` teacher alone as a ranker,
  ``score(u, i) = cos(mean_{h in H_L(u)} e(h), e(i))`` with ``e`` the unit all-MiniLM-L6-v2 embedding of the
  item's text and ``H_L(u)`` the user's last ``L`` training items (the teacher's context). Its pairwise
  labels are ``sigmoid((score(u, i) - score(u, j)) / T)``, so this ranking is the teacher's whole opinion.

Each ranker has the ``score_all`` interface of ``RecommenderModel`` (``[batch, 1 + num_items]``, column 0 the
OOV slot), so :class:`tfrs_selreg.evaluation.ranking.RankingEvaluator` ranks it over the full catalog
with the same exclusions and segments as a trained model.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_selreg.data import item_embeddings, schema
from tfrs_selreg.data.prepared import PreparedData

POPULARITY = "popularity"
EMBEDDING_TEACHER = "embedding-teacher"
REFERENCES = (POPULARITY, EMBEDDING_TEACHER)


class PopularityRanker:
    """``log(1 + popularity)`` of every catalog item, for every user."""

    def __init__(self, data: PreparedData):
        popularity = {item.item_id: item.popularity for item in data.items()}
        scores = np.log1p([popularity.get(i, 0) for i in data.item_vocabulary()]).astype(np.float32)
        self._row = np.concatenate([[-np.inf], scores]).astype(np.float32)

    def score_all(self, features: dict) -> tf.Tensor:
        batch = int(tf.shape(features[schema.USER_ID])[0])
        return tf.constant(np.broadcast_to(self._row, (batch, self._row.size)))


class EmbeddingTeacherRanker:
    """Cosine of the mean history embedding with every item embedding (the ``embedding`` teacher's score).

    Args:
      data: the prepared folder (catalog text and vocabulary).
      model: a sentence-transformers folder; ``None``: the bundled all-MiniLM-L6-v2 the teacher uses.
    """

    def __init__(self, data: PreparedData, model: str | None = None):
        from tfrs_selreg.teachers.embedding_teacher import EmbeddingTeacher

        by_id = {item.item_id: item for item in data.items()}
        vocabulary = data.item_vocabulary()
        missing = [i for i in vocabulary if i not in by_id]
        if missing:
            raise ValueError(f"{data.directory}: {len(missing)} vocabulary items have no catalog entry "
                             f"(first: {missing[0]!r}); re-run `tfrs-selreg prepare`.")
        if model is None and item_embeddings.exists(data.directory):  # the teacher's own vectors, no encoder
            self._vectors = item_embeddings.load(data.directory, vocabulary)
        else:
            self._vectors = EmbeddingTeacher(model=model).item_vectors([by_id[i] for i in vocabulary])
        self._order = np.argsort(np.array(vocabulary, dtype=object)).astype(np.int64)
        self._sorted = np.array(vocabulary, dtype=object)[self._order].astype(str)

    def score_all(self, features: dict) -> tf.Tensor:
        histories = tf.convert_to_tensor(features[schema.HISTORY]).numpy().astype(str)  # [B, L], "" pads
        found = np.minimum(np.searchsorted(self._sorted, histories), self._sorted.size - 1)
        known = self._sorted[found] == histories
        vectors = self._vectors[self._order[found]] * known[..., None]  # [B, L, D]
        context = vectors.sum(axis=1) / np.maximum(known.sum(axis=1, keepdims=True), 1)
        norms = np.linalg.norm(context, axis=1, keepdims=True)
        context = np.divide(context, norms, out=np.zeros_like(context), where=norms > 0)
        scores = context @ self._vectors.T
        return tf.constant(np.concatenate([np.full([scores.shape[0], 1], -np.inf, np.float32), scores], axis=1))


def ranker(name: str, data: PreparedData):
    """The reference ranker called ``name`` (one of :data:`REFERENCES`)."""
    if name == POPULARITY:
        return PopularityRanker(data)
    if name == EMBEDDING_TEACHER:
        return EmbeddingTeacherRanker(data)
    raise ValueError(f"unknown reference ranker {name!r}; choose one of {REFERENCES}")
