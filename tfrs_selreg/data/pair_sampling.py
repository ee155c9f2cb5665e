"""Which of a user's label rows one training example carries: one sampler, in Python and in TensorFlow.

``prepare --labels`` samples, for training example ``k`` of user ``u``, ``P`` of the user's teacher rows
and ``Q`` of its probe rows (rows sorted, :class:`~tfrs_selreg.data.labels.LabelPair` order);
:class:`tfrs_selreg.tasks.TeacherPairs` samples the same way at training time, with the training step in
place of ``k``. Both choose, for ``n`` rows ``r = 0 .. n-1`` and a sample size ``m``:

- every row, in order, when ``n <= m``;
- otherwise one row from each of ``m`` strata of a rotation of the rows: with ``h(t) = key(seed,
  user_key(u), kind, salt, t)``, ``[x]_n = floor(x n / MODULUS)`` (uniform in ``0 .. n-1``, a
  multiply-shift rather than a modulo), ``a = [h(m)]_n`` and ``b_s = floor(s n / m)``, slot ``s = 0 ..
  m-1`` takes row ``(a + b_s + [h(s)]_{b_{s+1} - b_s}) mod n``, in slot order.

The strata are disjoint and non-empty, so the ``m`` rows are distinct, and the uniform rotation ``a``
gives every row the same chance ``m / n``. It costs ``O(m)`` per example rather than a key per row and a
top-``m`` selection, and no integer division, which TensorFlow's CPU kernels make several times dearer
than a multiply on ``int64``.

``salt`` is the example index ``k`` or the step, ``kind`` :data:`TEACHER` or :data:`PROBE`, and ``key`` an
integer hash in ``[0, MODULUS)`` (``MODULUS = 2^31``): ``x <- mix(x, v)`` over the five inputs in that
order (each taken modulo ``MODULUS``), where ``mix(x, v) = f(f(x XOR v, M1), M2)`` and ``f(y, m) =
((y m) >> 31) XOR ((y m) mod 2^31)``, a multiply-xorshift. Every intermediate value stays below
``2^62``, so Python's integers and TensorFlow's ``int64`` agree bit for bit; that is why this is not
``random.Random`` or a TensorFlow stateless RNG, which have no counterpart on the other side. Limits:
``n < 2^32`` rows per user, ``m < 2^21``.
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=1 << 10)  # a user's records are sampled one after another
def user_key(user_id: str) -> int:
    """A stable integer of the user id in ``[0, MODULUS)`` (SHA-256, not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha256(user_id.encode("utf-8")).digest()[:8], "big") & _MASK


def _f(y: int, m: int) -> int:
    y *= m
    return (y >> 31) ^ (y & _MASK)


def _mix(x: int, v: int) -> int:
    return _f(_f(x ^ v, _M1), _M2)


def user_prefix(seed: int, key: int, kind: int) -> int:
    """The hash state after ``seed``, the user's key and ``kind``: constant per user and kind, so
    :class:`~tfrs_selreg.tasks.TeacherPairs` stores it and mixes in only the salt and the slots per step."""
    return _mix(_mix(seed & _MASK, key), kind)


def prefix(seed: int, key: int, salt: int, kind: int) -> int:
    """``key`` with the first four inputs mixed in; :func:`row_key` adds the slot."""
    return _mix(user_prefix(seed, key, kind), salt & _MASK)


def row_key(prefix_value: int, row: int) -> int:
    return _mix(prefix_value, row)


def slot_rows(n: int, size: int, head: int) -> list[int]:
    """The rows of the ``size`` slots for ``n > size`` rows and the prefix ``head`` (module docstring)."""
    keys = []
    for t in range(size + 1):  # row_key(head, t), inlined: it runs for every slot of every training record
        y = (head ^ t) * _M1
        y = ((y >> 31) ^ (y & _MASK)) * _M2
        keys.append((y >> 31) ^ (y & _MASK))
    start = (keys[size] * n) >> 31
    bounds = [s * n // size for s in range(size + 1)]
    return [(start + bounds[s] + ((keys[s] * (bounds[s + 1] - bounds[s])) >> 31)) % n for s in range(size)]


def sample(rows: Sequence[T], size: int, *, seed: int, user_id: str, salt: int, kind: int) -> list[T]:
    """The ``size`` rows of ``rows`` that the module docstring's rule chooses, in slot order."""
    if len(rows) <= size:
        return list(rows)
    return [rows[r] for r in slot_rows(len(rows), size, prefix(seed, user_key(user_id), salt, kind))]


def tf_mix(x, v):
    """:func:`_mix` on int64 tensors (broadcasting)."""
    import tensorflow as tf

    def f(y, m):
        y = y * m
        return tf.bitwise.bitwise_xor(tf.bitwise.right_shift(y, 31), tf.bitwise.bitwise_and(y, _MASK))
    return f(f(tf.bitwise.bitwise_xor(x, v), _M1), _M2)


def tf_slot_rows(user_prefixes, salt, count, size: int):
    """TensorFlow's :func:`slot_rows` for users of ``user_prefixes`` (:func:`user_prefix`), ``salt`` and
    ``count`` rows (int64 ``[B]``): ``[B, size]`` row indices; a user with ``count <= size`` gets ``0 ..
    size-1`` (the caller masks rows ``>= count``)."""
    import tensorflow as tf

    slots = tf.range(size + 1, dtype=tf.int64)
    h = tf_mix(tf_mix(user_prefixes, tf.bitwise.bitwise_and(salt, _MASK))[:, None], slots)
    n = tf.maximum(count, size + 1)[:, None]  # n > size: no empty stratum, no division by 0
    # floor(s n / m) in float64 is exact for n < 2^32, m < 2^21, and TensorFlow's int64 FloorDiv costs as
    # much as the rest of the lookup.
    bounds = tf.cast(tf.floor(tf.cast(slots * n, tf.float64) / size), tf.int64)
    rows = (tf.bitwise.right_shift(h[:, size:] * n, 31) + bounds[:, :-1]
            + tf.bitwise.right_shift(h[:, :size] * (bounds[:, 1:] - bounds[:, :-1]), 31))
    rows = tf.where(rows >= n, rows - n, rows)  # both terms are below n: the modulo is one subtraction
    return tf.where(count[:, None] > size, rows, slots[:size])
