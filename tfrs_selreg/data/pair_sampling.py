"""Which of a user's label rows one training example carries: one sampler, in Python and in TensorFlow.

``prepare --labels`` samples, for training example ``k`` of user ``u``, ``P`` of the user's teacher rows
and ``Q`` of its probe rows (rows sorted, :class:`~tfrs_selreg.data.labels.LabelPair` order);
:class:`tfrs_selreg.tasks.TeacherPairs` samples the same way at training time, with the training step in
place of ``k``. Both choose, for ``n`` rows ``r = 0 .. n-1`` and a sample size ``m``:

- every row, in order, when ``n <= m``;
- otherwise the ``m`` rows of smallest ``key(seed, user_key(u), salt, kind, r)`` (ties by ``r``), in order,

with ``salt`` the example index ``k`` or the step, ``kind`` :data:`TEACHER` or :data:`PROBE`, and ``key`` an
integer hash in ``[0, MODULUS)`` (``MODULUS = 2^31``): ``x <- mix(x, v)`` over the five inputs (each taken
modulo ``MODULUS``), where ``mix(x, v) = f(f(x XOR v, M1), M2)`` and ``f(y, m) = ((y m) >> 31) XOR ((y m) mod
2^31)``, a multiply-xorshift. Every intermediate value stays below ``2^62``, so Python's integers and
TensorFlow's ``int64`` agree bit for bit; that is why this is not ``random.Random`` or a TensorFlow
stateless RNG, which have no counterpart on the other side. It uses no division, which costs TensorFlow
several times a multiply on ``int64``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

MODULUS = 2**31
_MASK = MODULUS - 1
_M1 = 1_103_515_245
_M2 = 1_597_334_677
TEACHER = 1
PROBE = 2

T = TypeVar("T")


def user_key(user_id: str) -> int:
    """A stable integer of the user id in ``[0, MODULUS)`` (SHA-256, not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha256(user_id.encode("utf-8")).digest()[:8], "big") & _MASK


def _f(y: int, m: int) -> int:
    y *= m
    return (y >> 31) ^ (y & _MASK)


def _mix(x: int, v: int) -> int:
    return _f(_f(x ^ v, _M1), _M2)


def prefix(seed: int, key: int, salt: int, kind: int) -> int:
    """``key`` with the first four inputs mixed in; :func:`row_key` adds the row."""
    x = seed & _MASK
    for v in (key, salt & _MASK, kind):
        x = _mix(x, v)
    return x


def row_key(prefix_value: int, row: int) -> int:
    return _mix(prefix_value, row)


def sample(rows: Sequence[T], size: int, *, seed: int, user_id: str, salt: int, kind: int) -> list[T]:
    """The ``size`` rows of ``rows`` that the module docstring's rule chooses, in their order."""
    if len(rows) <= size:
        return list(rows)
    head = prefix(seed, user_key(user_id), salt, kind)
    chosen = sorted(range(len(rows)), key=lambda r: (row_key(head, r), r))[:size]
    return [rows[r] for r in sorted(chosen)]


def tf_row_keys(seed: int, keys, salt, kind: int, rows):
    """``key`` of ``rows`` (int64 ``[B, M]``) for users of ``keys`` and ``salt`` (int64 ``[B]``): ``[B, M]``."""
    import tensorflow as tf

    def f(y, m):
        y = y * m
        return tf.bitwise.bitwise_xor(tf.bitwise.right_shift(y, 31), tf.bitwise.bitwise_and(y, _MASK))

    def mix(x, v):
        return f(f(tf.bitwise.bitwise_xor(x, v), _M1), _M2)

    x = tf.fill(tf.shape(keys), tf.constant(seed & _MASK, tf.int64))
    for v in (keys, tf.bitwise.bitwise_and(salt, _MASK), tf.fill(tf.shape(keys), tf.constant(kind, tf.int64))):
        x = mix(x, tf.cast(v, tf.int64))
    return mix(x[:, None], tf.cast(rows, tf.int64))
