"""Feature embeddings shared by the backbones: item features by item index, and the query features.

- :class:`ItemFeatures`: item index ``[...]`` -> ``[..., 3 d]``, the concatenation of the item-id
  embedding, the mean of its title-token embeddings and the mean of its category embeddings. Token and
  category ids come from constant per-item tables (:class:`~tfrs_selreg.models.catalog.ItemCatalog`), so a
  rare item still gets a content representation learnt from the items that share its words.
- :class:`QueryFeatures`: ``(user_id [B], history [B, L])`` -> ``[B, 4 d]``, the user-id embedding (index 0
  is the OOV bucket of unknown users) and the masked mean of the history items' :class:`ItemFeatures`
  (``""`` slots are padding). A cold-start or unknown user is thus described by the items it touched.

Both means are sparse products rather than padded gathers. With ``A`` the constant ``[items, tokens]``
matrix holding ``1 / n_i`` at the ``n_i`` real title tokens of item ``i`` (a ragged constant of its rows),
the title features of the batch's distinct items are their rows of ``A @ E_token``, one fused
gather-and-reduce (``tf.sparse.segment_mean``, the kernel behind ``tf.nn.embedding_lookup_sparse``'s
``mean`` combiner); the same holds for categories, and the history mean of a batch is ``H @ F`` with
``H [B, distinct items]`` holding ``1 / |history_b|`` at the row's real history slots and ``F`` the
features of the batch's distinct items. No padding slot is gathered, multiplied or back-propagated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfrs_selreg.data.in_memory import vocabulary_lookup
from tfrs_selreg.models.catalog import ItemCatalog
from tfrs_selreg.tasks.regularization import by_unique


def _ragged_ids(ids: np.ndarray) -> tf.RaggedTensor:
    """The ids ``> 0`` of each row of ``ids`` (0 pads), in slot order, as a constant ragged tensor: the rows
    of the sparse mean matrix ``A``."""
    real = ids > 0
    return tf.RaggedTensor.from_row_lengths(ids[real].astype(np.int32), real.sum(axis=1).astype(np.int64))


def sparse_mean(table: tf.Tensor, ids: tf.RaggedTensor) -> tf.Tensor:
    """``A @ table`` for the ragged rows ``ids`` of ``A`` (``1 / n_r`` at the ``n_r`` ids of row ``r``): the mean
    embedding of each row's ids, 0 for an empty row. One fused gather-and-reduce, sparse gradient."""
    return tf.sparse.segment_mean(table, ids.values, tf.cast(ids.value_rowids(), tf.int32),
                                  num_segments=tf.cast(ids.nrows(), tf.int32))


class ItemFeatures(tf.keras.layers.Layer):
    """Item index ``[...]`` (int) -> ``[..., 3 * embedding_dim]`` id, title and category embeddings."""

    def __init__(self, catalog: ItemCatalog, embedding_dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.output_dim = 3 * embedding_dim
        self.num_items = catalog.num_items
        self.id_embedding = tf.keras.layers.Embedding(catalog.num_items + 1, embedding_dim, name="item_id")
        self.token_embedding = tf.keras.layers.Embedding(catalog.num_tokens, embedding_dim, name="title_token")
        self.category_embedding = tf.keras.layers.Embedding(catalog.num_categories, embedding_dim, name="category")
        self._token_ids = _ragged_ids(catalog.title_token_ids)
        self._category_ids = _ragged_ids(catalog.category_ids)

    def build(self, input_shape) -> None:
        for table in (self.id_embedding, self.token_embedding, self.category_embedding):
            table.build(None)
        super().build(input_shape)

    def call(self, index: tf.Tensor) -> tf.Tensor:
        return by_unique(self.distinct, tf.cast(index, tf.int32))

    def distinct(self, index: tf.Tensor) -> tf.Tensor:
        """``[n, 3 d]`` features of item indices ``[n]`` (no de-duplication: pass distinct indices)."""
        if not self.built:  # called directly by QueryFeatures, not through __call__
            self.build(None)
        return tf.concat([self.id_embedding(index),
                          sparse_mean(self.token_embedding.embeddings, tf.gather(self._token_ids, index)),
                          sparse_mean(self.category_embedding.embeddings, tf.gather(self._category_ids, index))],
                         axis=-1)


class QueryFeatures(tf.keras.layers.Layer):
    """``(user_id [B], history item indices [B, L], history mask [B, L])`` -> ``[B, 4 * embedding_dim]``.

    ``user_id`` is a string id, or an integer user index (``vocab/users.txt`` line + 1, 0 for unknown
    users) as :meth:`user_index` returns it.
    """

    def __init__(self, user_vocabulary: Sequence[str], item_features: ItemFeatures, embedding_dim: int,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.output_dim = embedding_dim + item_features.output_dim
        self.user_lookup = vocabulary_lookup(user_vocabulary, "user_lookup")
        self.user_embedding = tf.keras.layers.Embedding(len(user_vocabulary) + 1, embedding_dim, name="user_id")
        self.item_features = item_features

    def user_index(self, user_id: tf.Tensor) -> tf.Tensor:
        """User ids -> int64 indices (0 for unknown users); integer input is taken as indices already."""
        user_id = tf.convert_to_tensor(user_id)
        return tf.cast(user_id, tf.int64) if user_id.dtype.is_integer else self.user_lookup(user_id)

    def call(self, user_id: tf.Tensor, history_index: tf.Tensor, history_mask: tf.Tensor,
             items: tf.Tensor | None = None,
             history_projection: tf.Tensor | None = None) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        """The query features; with ``items`` (indices ``[...]``) also their :class:`ItemFeatures`
        ``[..., 3 d]``, computed in the same pass over the distinct items as the history's.

        With ``history_projection`` (a ``[3 d, k]`` matrix ``P``) the history part is the mean of the
        projected item features, ``mean_h f(h) P`` (``[B, d + k]`` in all): the mean is linear, so this is
        ``(mean_h f(h)) P``, but the mean gathers and back-propagates ``k``-wide rows instead of ``3 d``-wide.
        """
        flat_history = tf.reshape(tf.cast(history_index, tf.int32), [-1])
        flat_items = tf.zeros([0], tf.int32) if items is None else tf.reshape(tf.cast(items, tf.int32), [-1])
        unique, position = tf.unique(tf.concat([flat_history, flat_items], axis=0))
        features = self.item_features.distinct(unique)
        history_rows = features if history_projection is None else tf.linalg.matmul(features, history_projection)
        # Real slots in row-major order: their rows are sorted, as the segment mean needs.
        slots = tf.cast(tf.where(tf.reshape(history_mask, [-1])), tf.int32)[:, 0]
        length = tf.shape(history_index)[1]
        history_mean = tf.sparse.segment_mean(history_rows, tf.gather(position, slots), slots // length,
                                              num_segments=tf.shape(history_index)[0])
        query = tf.concat([self.user_embedding(self.user_index(user_id)), history_mean], axis=-1)
        if items is None:
            return query
        item_features = tf.gather(features, position[tf.size(flat_history):])
        return query, tf.reshape(item_features, tf.concat([tf.shape(items), [self.item_features.output_dim]], 0))
