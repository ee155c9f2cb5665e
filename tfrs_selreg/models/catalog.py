"""The item catalog as dense arrays indexed by the models' item index.

Every backbone maps an item id to an integer index with a ``tf.keras.layers.StringLookup`` over
``vocab/items.txt`` with one OOV bucket: index 0 is the OOV slot (unknown items and the ``""`` padding)
and the item on line ``k`` of the vocabulary has index ``k + 1``. The arrays here are aligned with that
index, so that per-item side information (popularity, long-tail flag, title tokens, categories) is a
``tf.gather`` away and the item tower needs nothing but the item id.

Title tokens are lower-cased word pieces (``[a-z0-9]+``); the token vocabulary keeps the
``text_vocabulary_size`` most frequent tokens (ties by token). Token and category ids start at 1; 0 pads.
"""

from __future__ import annotations

import collections
import dataclasses
import re

import numpy as np

from tfrs_selreg.data.prepared import PreparedData

_TOKEN = re.compile(r"[a-z0-9]+")


def title_tokens(title: str) -> list[str]:
    return _TOKEN.findall(title.lower())


@dataclasses.dataclass(frozen=True)
class ItemCatalog:
    """Per-item arrays of length ``num_items + 1`` (row 0 is the OOV slot).

    Attributes:
      item_ids: the vocabulary, ``item_ids[k]`` has index ``k + 1``.
      popularity: ``pop(i)``, training interactions (0 for OOV).
      long_tail: 0/1 long-tail flag (0 for OOV).
      title_token_ids: ``[num_items + 1, max_title_tokens]`` token ids, 0-padded.
      category_ids: ``[num_items + 1, max_categories]`` category ids, 0-padded.
      num_tokens: token vocabulary size including the padding id 0.
      num_categories: category vocabulary size including the padding id 0.
    """

    item_ids: tuple[str, ...]
    popularity: np.ndarray
    long_tail: np.ndarray
    title_token_ids: np.ndarray
    category_ids: np.ndarray
    num_tokens: int
    num_categories: int

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def sampling_probability(self) -> np.ndarray:
        """``Q(i) = pop(i) / sum pop``: the probability that an in-batch candidate is item ``i``."""
        total = max(float(self.popularity.sum()), 1.0)
        return (self.popularity / total).astype(np.float32)

    @classmethod
    def from_prepared(cls, data: PreparedData, *, max_title_tokens: int, max_categories: int,
                      text_vocabulary_size: int) -> ItemCatalog:
        vocabulary = data.item_vocabulary()
        items = {item.item_id: item for item in data.items()}
        missing = [i for i in vocabulary if i not in items]
        if missing:
            raise ValueError(f"{data.directory}: {len(missing)} item(s) of vocab/items.txt are not in items.jsonl "
                             f"(first: {missing[0]!r}); re-run `tfrs-selreg prepare`.")
        ordered = [items[i] for i in vocabulary]
        token_counts = collections.Counter(t for it in ordered for t in set(title_tokens(it.title)))
        tokens = sorted(token_counts, key=lambda t: (-token_counts[t], t))[:text_vocabulary_size]
        token_index = {t: k + 1 for k, t in enumerate(tokens)}
        category_counts = collections.Counter(c for it in ordered for c in it.categories)
        categories = sorted(category_counts, key=lambda c: (-category_counts[c], c))
        category_index = {c: k + 1 for k, c in enumerate(categories)}

        n = len(ordered) + 1
        title_ids = np.zeros([n, max_title_tokens], np.int32)
        category_ids = np.zeros([n, max_categories], np.int32)
        for row, item in enumerate(ordered, start=1):
            ids = [token_index[t] for t in title_tokens(item.title) if t in token_index][:max_title_tokens]
            title_ids[row, :len(ids)] = ids
            ids = [category_index[c] for c in item.categories][:max_categories]
            category_ids[row, :len(ids)] = ids
        return cls(
            item_ids=tuple(vocabulary),
            popularity=np.array([0] + [it.popularity for it in ordered], np.int64),
            long_tail=np.array([0] + [int(it.long_tail) for it in ordered], np.int64),
            title_token_ids=title_ids,
            category_ids=category_ids,
            num_tokens=len(tokens) + 1,
            num_categories=len(categories) + 1,
        )
