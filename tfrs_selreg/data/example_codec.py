"""A fast writer of ``tf.train.Example`` wire bytes for the prepare job's hot loop.

Building ``tf.train.Example`` messages field by field through the protobuf Python API costs about
100 us per record, which caps the prepare job far below its 20,000 examples/s target. The
``Example`` layout is tiny and fixed::

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }      # entries: {key = 1; value = 2}
    Feature  { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
    Int64List { repeated int64 value = 1 [packed]; }

so this module writes those bytes directly, map entries sorted by key in Python string order, so the
same features always give the same bytes. ``tests/data/test_example_codec.py`` checks the output against
protobuf's ``SerializeToString(deterministic=True)``; that mode orders a key after a longer key it is a
prefix of (``history_length`` before ``history``), the only difference, which no parser sees.
"""

from __future__ import annotations

import functools
import struct
from typing import Iterable, Mapping

_LEN = 2  # wire type of length-delimited fields


def _varint_slow(n: int) -> bytes:
    if 0 <= n < 1 << 35:  # unix seconds: five bytes, unrolled (the loop below costs 1.6x as much)
        if n < 1 << 28:
            if n < 1 << 21:
                if n < 1 << 14:
                    return bytes((n & 0x7F | 0x80, n >> 7)) if n > 0x7F else bytes((n,))
                return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14))
            return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21))
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21 & 0x7F | 0x80, n >> 28))
    if n < 0:
        n += 1 << 64  # int64 two's complement, always 10 bytes on the wire
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Lengths and most counts are small: a lookup table takes the varint loop off the hot path.
_SMALL = tuple(_varint_slow(n) for n in range(1 << 14))
_TAGS = tuple(_varint_slow((number << 3) | _LEN) for number in range(4))
_KEYS: dict[str, bytes] = {}


def varint(n: int) -> bytes:
    """``n`` as a protobuf varint (int64: negative values as their 64-bit two's complement)."""
    return _SMALL[n] if 0 <= n < 16384 else _varint_slow(n)


def _field(number: int, payload: bytes) -> bytes:
    return _TAGS[number] + varint(len(payload)) + payload


def bytes_feature(values: Iterable[bytes]) -> bytes:
    """Serialized ``Feature`` holding a ``BytesList``."""
    return _field(1, b"".join([b"\n" + varint(len(v)) + v for v in values]))


@functools.lru_cache(maxsize=1 << 18)
def string_list_entry(value: str) -> bytes:
    """One UTF-8 string as a slot of a serialized ``BytesList`` (tag and length included)."""
    encoded = value.encode("utf-8")
    return b"\n" + varint(len(encoded)) + encoded


EMPTY_STRING_ENTRY = string_list_entry("")
FLOAT_ZERO = struct.pack("<f", 0.0)


def string_feature(values: Iterable[str]) -> bytes:
    """``bytes_feature`` of UTF-8 strings; ids repeat across records, so their encodings are cached."""
    return _field(1, b"".join([string_list_entry(v) for v in values]))


def encoded_string_feature(entries: list[bytes]) -> bytes:
    """``string_feature`` of strings already encoded by :func:`string_list_entry`."""
    return _field(1, b"".join(entries))


def packed_float(value: float) -> bytes:
    """One float32 as it lies in a packed ``FloatList``."""
    return struct.pack("<f", value)


def float_feature(values: Iterable[float]) -> bytes:
    """Serialized ``Feature`` holding a packed ``FloatList``."""
    values = list(values)
    return packed_float_feature(struct.pack(f"<{len(values)}f", *values))


def packed_float_feature(packed: bytes) -> bytes:
    """``float_feature`` of floats already packed (little-endian float32 values, concatenated)."""
    return _field(2, _field(1, packed) if packed else b"")


def int64_feature(values: Iterable[int]) -> bytes:
    """Serialized ``Feature`` holding a packed ``Int64List``."""
    packed = b"".join([varint(int(v)) for v in values])
    return _field(3, _field(1, packed) if packed else b"")


def _key(name: str) -> bytes:
    key = _KEYS.get(name)
    if key is None:
        key = _KEYS[name] = _field(1, name.encode("utf-8"))
    return key


def encode_example(features: Mapping[str, bytes]) -> bytes:
    """Serialized ``Example`` from ``{name: serialized Feature}``, map entries sorted by key."""
    return encode_entries([entry(key, features[key]) for key in sorted(features)])


def entry(name: str, feature: bytes) -> bytes:
    """One serialized ``Features.feature`` map entry ``{key: name, value: feature}``, tag included."""
    body = _key(name) + b"\x12" + varint(len(feature)) + feature
    return b"\n" + varint(len(body)) + body


BYTES_LIST, INT64_LIST = 1, 3  # the field numbers of BytesList and Int64List in Feature


@functools.lru_cache(maxsize=1 << 12)
def entry_prefix(name: str, kind: int, size: int) -> bytes:
    """The bytes of an ``entry`` of feature ``name`` before its list's ``size`` payload bytes, so that
    ``entry_prefix(name, kind, len(p)) + p`` is the entry: for ``BYTES_LIST``, ``p`` is the values'
    slots (:func:`string_list_entry`); for ``INT64_LIST``, the packed varints."""
    payload = b"\0" * size
    feature = _field(1, payload) if kind == BYTES_LIST else _field(3, _field(1, payload) if size else b"")
    whole = entry(name, feature)
    return whole[:len(whole) - size]


def encode_entries(entries: Iterable[bytes]) -> bytes:
    """Serialized ``Example`` from map entries (``entry``) already in key order."""
    return _field(1, b"".join(entries))


# Ids, small counts, flags and ratings repeat across records: their whole map entries are cached.
@functools.lru_cache(maxsize=1 << 18)
def string_entry(name: str, value: str) -> bytes:
    """``entry`` of a one-string ``BytesList`` feature."""
    return entry(name, string_feature([value]))


@functools.lru_cache(maxsize=1 << 16)
def int64_entry(name: str, value: int) -> bytes:
    """``entry`` of a one-value ``Int64List`` feature (for values that repeat; else ``entry``)."""
    return entry(name, int64_feature([value]))


@functools.lru_cache(maxsize=1 << 12)
def float_entry(name: str, value: float) -> bytes:
    """``entry`` of a one-value ``FloatList`` feature (for values that repeat, e.g. ratings)."""
    return entry(name, float_feature([value]))
