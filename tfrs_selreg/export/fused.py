"""The fused export: a two-tower model fused with the embedding teacher, served as one inner product.

``tfrs-selreg evaluate --reference fusion`` ranks by

    s(u, i) = z_u(<q(u), c(i)>) + beta_{b(i)} z_u(<t(u), v(i)>)

(:mod:`tfrs_selreg.evaluation.fusion`), where ``z_u`` standardizes over the ``N`` catalog items, ``v(i)``
are the teacher's unit item text embeddings (the labels folder's ``item_embeddings/``) and ``t(u)`` is
the unit mean of ``v`` over the user's known history items (0 for none). A user's mean and standard
deviation over the catalog are closed forms of the query, ``mu = q . c_bar`` and
``sigma^2 = q^T Cov(c) q`` (population moments over the ``N`` items, computed once at export), so the
fused score is one inner product of widened towers:

    query(u) = [q / sigma_m, -mu_m / sigma_m, t / sigma_t, -mu_t / sigma_t]     (sigma 0 -> 1)
    item(i)  = [c(i),        1,               beta_{b(i)} v(i), beta_{b(i)}]

and it equals the fusion score, not only its ranking. The served model then holds the teacher's item
vectors (``[N + 1, D_t]``) and the two moment pairs, but no LLM and no encoder: a request costs one
more gather of the history's text vectors and a wider brute-force index. The OOV row of both tables is
0 in the teacher part, so unknown items and padding add nothing to ``t(u)``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from tfrs_selreg.data import item_embeddings
from tfrs_selreg.data.popularity import QUARTILES, popularity_buckets

FUSION_KEY = "fusion"


class FusionFileError(ValueError):
    """The fusion weights file is missing, malformed or belongs to another run."""


def load_betas(path: str, run_dir: str) -> tuple[float, ...]:
    """The betas of ``evaluate --reference fusion``'s ``metrics-SPLIT.json`` at ``path``, fitted for ``run_dir``."""
    if not tf.io.gfile.exists(path):
        raise FusionFileError(f"--fusion {path}: no such file; run `tfrs-selreg evaluate --reference fusion "
                              f"--run {run_dir} --output DIR` and pass DIR/metrics.json.")
    try:
        with tf.io.gfile.GFile(path) as f:
            result = json.load(f)
        betas, fused_run = result[FUSION_KEY]["betas"], result["fused_run"]
    except (ValueError, KeyError, TypeError) as e:
        raise FusionFileError(f"--fusion {path}: not a metrics file of `evaluate --reference fusion` "
                              f"({type(e).__name__}: {e}).") from None
    if os.path.realpath(fused_run) != os.path.realpath(run_dir):
        raise FusionFileError(f"--fusion {path}: its betas were fitted for run {fused_run}, not {run_dir}; "
                              "run `tfrs-selreg evaluate --reference fusion` on this run.")
    if (not isinstance(betas, list) or len(betas) != QUARTILES
            or not all(isinstance(b, (int, float)) and np.isfinite(b) and b >= 0 for b in betas)):
        raise FusionFileError(f"--fusion {path}: fusion.betas must be {QUARTILES} finite numbers >= 0, got {betas!r}.")
    return tuple(float(b) for b in betas)


def _moments(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = rows.astype(np.float64)
    mean = rows.mean(axis=0)
    centered = rows - mean
    return mean.astype(np.float32), (centered.T @ centered / rows.shape[0]).astype(np.float32)


class FusedIndex(tf.Module):
    """The widened brute-force index and query transform of the module docstring.

    Args:
      item_embeddings_: ``[N + 1, D]`` candidate embeddings ``c(i)`` of the model (row 0 the OOV slot).
      teacher_vectors: ``[N, D_t]`` unit text embeddings, vocabulary order.
      popularity: ``[N]`` training popularity, vocabulary order (gives the buckets ``b(i)``).
      betas: one weight per popularity quartile (0 rarest).
    """

    def __init__(self, item_embeddings_: np.ndarray, teacher_vectors: np.ndarray, popularity: np.ndarray,
                 betas: tuple[float, ...]) -> None:
        super().__init__(name="fused_index")
        items = np.asarray(item_embeddings_, np.float32)
        vectors = np.asarray(teacher_vectors, np.float32)
        if vectors.shape[0] != items.shape[0] - 1 or len(popularity) != vectors.shape[0]:
            raise ValueError(f"FusedIndex: {items.shape[0] - 1} model items, {vectors.shape[0]} teacher vectors and "
                             f"{len(popularity)} popularities must be the same catalog.")
        beta = np.asarray(betas, np.float32)[popularity_buckets(np.asarray(popularity))]
        teacher = np.concatenate([np.zeros([1, vectors.shape[1]], np.float32), vectors])
        beta = np.concatenate([[0.0], beta]).astype(np.float32)[:, None]
        self.betas = tuple(betas)
        self.candidates = tf.Variable(np.concatenate([items, np.ones_like(beta), beta * teacher, beta], axis=1),
                                      trainable=False, name="candidates")
        self.teacher_vectors = tf.Variable(teacher, trainable=False, name="text_vectors")
        model_mean, model_cov = _moments(items[1:])
        text_mean, text_cov = _moments(vectors)
        self.model_mean = tf.Variable(model_mean, trainable=False, name="model_mean")
        self.model_cov = tf.Variable(model_cov, trainable=False, name="model_cov")
        self.text_mean = tf.Variable(text_mean, trainable=False, name="text_mean")
        self.text_cov = tf.Variable(text_cov, trainable=False, name="text_cov")

    @property
    def teacher_dim(self) -> int:
        return int(self.teacher_vectors.shape[1])

    def query(self, user_embedding: tf.Tensor, history_index: tf.Tensor) -> tf.Tensor:
        """``[B, D + D_t + 2]`` fused queries from ``q(u) [B, D]`` and history item indices ``[B, L]`` (0: none)."""
        known = tf.cast(history_index > 0, tf.float32)
        context = tf.reduce_sum(tf.gather(self.teacher_vectors, history_index) * known[..., None], axis=1)
        context = tf.math.l2_normalize(context, axis=1)  # a zero context stays 0
        parts = []
        for vector, mean, cov in ((user_embedding, self.model_mean, self.model_cov),
                                  (context, self.text_mean, self.text_cov)):
            mu = tf.linalg.matvec(vector, mean)
            sigma = tf.sqrt(tf.maximum(tf.reduce_sum(tf.linalg.matmul(vector, cov) * vector, axis=1), 0.0))
            sigma = tf.where(sigma > 0, sigma, tf.ones_like(sigma))
            parts += [vector / sigma[:, None], (-mu / sigma)[:, None]]
        return tf.concat(parts, axis=1)


def build(model, prepared_dir: str, vocabulary: list[str], betas: tuple[float, ...]) -> FusedIndex:
    """The :class:`FusedIndex` of a trained two-tower ``model`` with the prepared folder's item embeddings."""
    if not hasattr(model, "all_item_embeddings"):
        raise ValueError(f"--fusion needs a factorized backbone (two_tower); this run is a {model.config.backbone}.")
    if not item_embeddings.exists(prepared_dir):
        raise item_embeddings.ItemEmbeddingsError(
                f"--fusion: {item_embeddings.folder(prepared_dir)} is missing; the fused export serves the "
                "embedding teacher's item vectors: score with `--teacher embedding` and join with `prepare --labels`.")
    vectors = item_embeddings.load(prepared_dir, vocabulary)
    return FusedIndex(model.all_item_embeddings().numpy(), vectors, model.catalog.popularity[1:], betas)
