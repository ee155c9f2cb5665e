"""The probe holdout: one probe positive per user out of training, only the probes on it kept."""

import numpy as np
import tensorflow as tf

from tfrs_selreg.data import schema
from tfrs_selreg.data.in_memory import InMemorySplit
from tfrs_selreg.data.probe_holdout import hold_out, held_out_items


def _split():
    # user 1: items 10, 11, 12 at t = 1, 2, 3 (the last one in the second file), probes on 11 and 12;
    # user 2: items 20, 21; its last item 21 is no probe positive, so nothing of user 2 is held out.
    user = [1, 1, 2, 1, 2]
    item = [10, 11, 20, 12, 21]
    timestamp = [1, 2, 5, 3, 6]
    probe_i = [[11, 30], [11, 30], [20, 31], [11, 30], [20, 31]]
    probe_j = [[40, 12], [40, 12], [41, 41], [40, 12], [41, 41]]
    truth = [[1, 0], [1, 0], [1, 0], [1, 0], [1, 0]]  # positives: user 1 11 and 12, user 2 20
    mask = [[1, 1], [1, 1], [1, 0], [1, 1], [1, 0]]
    columns = {schema.USER_ID: np.int32(user), schema.ITEM_ID: np.int32(item), schema.TIMESTAMP: np.int64(timestamp),
               schema.PROBE_ITEM_I: np.int32(probe_i), schema.PROBE_ITEM_J: np.int32(probe_j),
               schema.PROBE_TRUTH: np.float32(truth), schema.PROBE_MASK: np.float32(mask),
               schema.HISTORY_LENGTH: np.int64([3, 3, 2, 3, 2])}
    return InMemorySplit({k: tf.constant(v) for k, v in columns.items()}, (3, 2))


def test_the_last_training_item_is_held_out_when_it_is_a_probe_positive():
    split = _split()
    np.testing.assert_array_equal(held_out_items({k: v.numpy() for k, v in split.columns.items()}),
                                  [12, 12, -1, 12, -1])
    kept, dropped = hold_out(split)
    assert dropped == 1 and kept.file_sizes == (3, 1)
    np.testing.assert_array_equal(kept.columns[schema.ITEM_ID].numpy(), [10, 11, 20, 21])
    # Only user 1's probe on the held-out item 12 is left; user 2 keeps no probe.
    np.testing.assert_array_equal(kept.columns[schema.PROBE_MASK].numpy(), [[0, 1], [0, 1], [0, 0], [0, 0]])
    np.testing.assert_array_equal(kept.columns[schema.HISTORY_LENGTH].numpy(), [3, 3, 2, 2])


def test_a_fraction_of_the_users_hold_out():
    columns = {k: v.numpy() for k, v in _split().columns.items()}
    chosen = np.random.default_rng(0).random(3) < 0.5  # users 0 (absent), 1, 2
    expected = [12 if chosen[1] else -1] * 2 + [-1] + [12 if chosen[1] else -1] + [-1]
    np.testing.assert_array_equal(held_out_items(columns, 0.5), expected)
