"""Item-id embedding rows started from the teacher's item text embeddings (``ModelConfig.item_init``).

``teacher``: with ``E [N, D_t]`` the item text embeddings aligned with the item index (row ``k`` is the
item of index ``k + 1``), ``C = E - mean(E)`` and ``V_d`` its first ``d`` right singular vectors::

    X = C V_d                                   (PCA to the embedding size d; zero columns if d > rank)
    rows = X * r / mean_k ||X_k||               (r: the mean row norm of the randomly initialized table)

so the rows keep the text's geometry at the scale the optimizer expects. Controls at the same norms:
``teacher_shuffled`` permutes ``rows`` across items (the text's statistics without its assignment),
``random_matched`` gives each item a random direction with its ``rows`` norm. Row 0 (the OOV slot)
keeps its random init. Nothing is added to the model: only the starting values of a variable change.
"""

from __future__ import annotations

import numpy as np

from tfrs_selreg.data import item_embeddings
from tfrs_selreg.data.prepared import PreparedData


def pca_rows(vectors: np.ndarray, dim: int, target_norm: float) -> np.ndarray:
    """``[N, dim]``: the PCA projection of ``vectors`` scaled to mean row norm ``target_norm``."""
    centered = np.asarray(vectors, np.float64) - np.mean(vectors, axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    projected = centered @ vt[:dim].T
    if projected.shape[1] < dim:
        projected = np.pad(projected, [(0, 0), (0, dim - projected.shape[1])])
    mean_norm = float(np.linalg.norm(projected, axis=1).mean())
    return (projected * (target_norm / mean_norm if mean_norm > 0 else 0.0)).astype(np.float32)


def initial_rows(mode: str, vectors: np.ndarray, dim: int, target_norm: float, seed: int) -> np.ndarray:
    """The ``[N, dim]`` starting rows of ``mode`` (``teacher``, ``teacher_shuffled``, ``random_matched``)."""
    rows = pca_rows(vectors, dim, target_norm)
    rng = np.random.default_rng(seed)
    if mode == "teacher":
        return rows
    if mode == "teacher_shuffled":
        return rows[rng.permutation(rows.shape[0])]
    if mode == "random_matched":
        directions = rng.standard_normal(rows.shape)
        directions /= np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
        return (directions * np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    raise ValueError(f"item_init {mode!r} has no teacher rows")


def apply(model, data: PreparedData, mode: str, seed: int) -> None:
    """Sets the item-id rows of ``model`` (a built ``RecommenderModel``) for ``mode``; ``random`` is a no-op."""
    if mode == "random":
        return
    vectors = item_embeddings.load(data.directory, data.item_vocabulary())
    table = model.item_features.id_embedding.embeddings
    current = table.numpy()
    target_norm = float(np.linalg.norm(current[1:], axis=1).mean())
    current[1:] = initial_rows(mode, vectors, current.shape[1], target_norm, seed)
    table.assign(current)
