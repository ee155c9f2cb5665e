"""Probes whose positive the backbone never trained on: the training signal of a model-relative gate.

A probe pair's positive is one of the user's most recent training items (``teacher.candidates``), so a
trained backbone has fitted it and is right on nearly every probe: probes cannot tell where the
*teacher* beats the *model*. :func:`hold_out` carves one probe positive per user out of training:

- ``h(u)``: the item of the user's last training record (latest ``timestamp``, then file order), when
  it is the positive of one of that user's probes (else the user holds nothing out);
- the user's training records of ``h(u)`` are dropped (no loss term ever sees ``(u, h(u))``);
- probe slots whose positive is not ``h(u)`` are masked out (``probe_mask = 0``): the probes left are
  exactly the held-out ones.

Every method trained with ``TrainConfig.probe_holdout`` sees the same, smaller training set (one
record fewer per user), ``none`` included, so comparisons stay at equal data; the cost of the holdout
is ``none`` with it against ``none`` without it. ``fraction`` holds out the item of only a fixed random
share of the users, trading the gate's training probes for the cost.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_selreg.data import schema
from tfrs_selreg.data.in_memory import InMemorySplit

NEEDED = (schema.USER_ID, schema.ITEM_ID, schema.TIMESTAMP, schema.PROBE_ITEM_I, schema.PROBE_ITEM_J,
          schema.PROBE_TRUTH, schema.PROBE_MASK)


def held_out_items(columns: dict[str, np.ndarray], fraction: float = 1.0) -> np.ndarray:
    """``[rows]`` item index ``h(u)`` of each row's user (-1 when the user holds nothing out); with
    ``fraction < 1`` only a fixed random share of the users (seed 0 over user indices) hold one out."""
    user, item = columns[schema.USER_ID].astype(np.int64), columns[schema.ITEM_ID].astype(np.int64)
    n = user.size
    if n == 0:
        return np.zeros([0], np.int64)
    order = np.lexsort((np.arange(n), columns[schema.TIMESTAMP], user))
    is_last = np.r_[user[order][1:] != user[order][:-1], True]
    last = order[is_last]
    positives = np.where(columns[schema.PROBE_TRUTH] > 0.5, columns[schema.PROBE_ITEM_I], columns[schema.PROBE_ITEM_J])
    real = columns[schema.PROBE_MASK] > 0
    is_probe_positive = np.any(real[last] & (positives[last] == item[last][:, None]), axis=1)
    held = np.full(int(user.max()) + 1, -1, np.int64)
    held[user[last][is_probe_positive]] = item[last][is_probe_positive]
    if fraction < 1.0:
        held[np.random.default_rng(0).random(held.size) >= fraction] = -1
    return held[user]


def hold_out(split: InMemorySplit, fraction: float = 1.0) -> tuple[InMemorySplit, int]:
    """The training split without the held-out records (of a ``fraction`` of the users), its probes
    restricted to the held-out ones, and the number of records dropped."""
    missing = [name for name in NEEDED if name not in split.columns]
    if missing:
        raise ValueError(f"probe holdout needs the training features {missing}; load the split with the "
                         "example and training-only roles")
    columns = {name: value.numpy() for name, value in split.columns.items()}
    held = held_out_items(columns, fraction)
    keep = columns[schema.ITEM_ID].astype(np.int64) != held
    positives = np.where(columns[schema.PROBE_TRUTH] > 0.5, columns[schema.PROBE_ITEM_I], columns[schema.PROBE_ITEM_J])
    columns[schema.PROBE_MASK] = np.where(positives == held[:, None], columns[schema.PROBE_MASK], 0.0).astype(
        columns[schema.PROBE_MASK].dtype)
    bounds = np.cumsum((0,) + split.file_sizes)
    sizes = tuple(int(keep[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:]))
    kept = InMemorySplit({name: tf.constant(value[keep]) for name, value in columns.items()}, sizes)
    return kept, int((~keep).sum())
