"""Feature embeddings shared by the backbones: item features by item index, and the query features.

- :class:`ItemFeatures`: item index ``[...]`` -> ``[..., 3 d]``, the concatenation of the item-id
  embedding, the mean of its title-token embeddings and the mean of its category embeddings. Token and
  category ids come from constant per-item tables (:class:`~tfrs_selreg.models.catalog.ItemCatalog`), so a
  rare item still gets a content representation learnt from the items that share its words.
- :class:`QueryFeatures`: ``(user_id [B], history [B, L])`` -> ``[B, 4 d]``, the user-id embedding (index 0
  is the OOV bucket of unknown users) and the masked mean of the history items' :class:`ItemFeatures`
  (``""`` slots are padding). A cold-start or unknown user is thus described by the items it touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from tfrs_selreg.models.catalog import ItemCatalog


def by_unique(fn: Callable[[tf.Tensor], tf.Tensor], index: tf.Tensor) -> tf.Tensor:
    """``fn`` applied to the distinct values of ``index [...]`` only, then gathered back to ``[..., out]``.

    A batch scores the same items many times (histories, teacher and probe pairs); computing each
    distinct item once keeps the cost of content features proportional to the distinct items.
    """
    unique, position = tf.unique(tf.reshape(index, [-1]))
    values = fn(unique)
    out = tf.reshape(tf.gather(values, position), tf.concat([tf.shape(index), tf.shape(values)[1:]], axis=0))
    return tf.ensure_shape(out, index.shape.concatenate(values.shape[1:]))


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """``sum_t mask_t v_t / max(1, sum_t mask_t)`` over axis -2 of ``values [..., T, d]``; 0 for all-padding."""
    mask = tf.cast(mask, values.dtype)[..., None]
    return tf.reduce_sum(values * mask, axis=-2) / tf.maximum(tf.reduce_sum(mask, axis=-2), 1.0)


class ItemFeatures(tf.keras.layers.Layer):
    """Item index ``[...]`` (int) -> ``[..., 3 * embedding_dim]`` id, title and category embeddings."""

    def __init__(self, catalog: ItemCatalog, embedding_dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.output_dim = 3 * embedding_dim
        self._title_token_ids = tf.constant(catalog.title_token_ids, tf.int32)
        self._category_ids = tf.constant(catalog.category_ids, tf.int32)
        self.id_embedding = tf.keras.layers.Embedding(catalog.num_items + 1, embedding_dim, name="item_id")
        self.token_embedding = tf.keras.layers.Embedding(catalog.num_tokens, embedding_dim, name="title_token")
        self.category_embedding = tf.keras.layers.Embedding(catalog.num_categories, embedding_dim, name="category")

    def call(self, index: tf.Tensor) -> tf.Tensor:
        return by_unique(self._features, tf.cast(index, tf.int32))

    def _features(self, index: tf.Tensor) -> tf.Tensor:
        tokens = tf.gather(self._title_token_ids, index)
        categories = tf.gather(self._category_ids, index)
        return tf.concat([
            self.id_embedding(index),
            masked_mean(self.token_embedding(tokens), tokens > 0),
            masked_mean(self.category_embedding(categories), categories > 0),
        ], axis=-1)


class QueryFeatures(tf.keras.layers.Layer):
    """``(user_id [B], history item indices [B, L], history mask [B, L])`` -> ``[B, 4 * embedding_dim]``."""

    def __init__(self, user_vocabulary: Sequence[str], item_features: ItemFeatures, embedding_dim: int,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.output_dim = embedding_dim + item_features.output_dim
        self.user_lookup = tf.keras.layers.StringLookup(vocabulary=list(user_vocabulary), num_oov_indices=1,
                                                        mask_token=None, name="user_lookup")
        self.user_embedding = tf.keras.layers.Embedding(len(user_vocabulary) + 1, embedding_dim, name="user_id")
        self.item_features = item_features

    def call(self, user_id: tf.Tensor, history_index: tf.Tensor, history_mask: tf.Tensor) -> tf.Tensor:
        return tf.concat([
            self.user_embedding(self.user_lookup(user_id)),
            masked_mean(self.item_features(history_index), history_mask),
        ], axis=-1)
