"""The teacher-label contract: pairwise label rows written by teachers and joined by ``prepare``.

One row says how a teacher orders two items for one user::

    {"user_id": "42", "item_i": "318", "item_j": "2571", "pref": 0.83, "confidence": 0.66,
     "kind": "teacher", "truth": null, "teacher": "embedding"}

- ``pref``: the teacher's probability in [0, 1] that the user prefers ``item_i`` over ``item_j``.
  ``pref = 0.5`` orders nothing.
- ``confidence`` (optional, in [0, 1]): the teacher's own confidence; ``|2 pref - 1|`` when missing.
- ``kind``: ``teacher`` (a pair for the regularizer) or ``probe`` (a pair whose truth is known,
  used to measure the teacher and to train the reliability gate).
- ``truth`` (probe rows only): 1 if ``item_i`` is the user's known (held-out training) positive,
  0 if ``item_j`` is.
- ``teacher``: the teacher's name.

Rows are stored as JSON lines (``*.jsonl``, optionally gzipped) or as TFRecords of
``tf.train.Example`` with the same field names (``truth`` = -1 and ``confidence`` = -1 mean missing).
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from typing import Any, NamedTuple, Optional

from tfrs_selreg.data import schema

FIELDS = ("user_id", "item_i", "item_j", "pref", "confidence", "kind", "truth", "teacher")

# The rules that read a label, used by the loss, the regularizer, the diagnostics and the teachers' manifest.
# Each works elementwise on Python floats, NumPy arrays and tensors alike.
TIE = 0.5


def is_ordered(pref):
    """A label orders its pair unless ``pref`` is exactly ``TIE`` (0.5): a tie is no pair and no probe."""
    return pref != TIE


def prefers_i(pref):
    """The teacher prefers ``item_i``: ``pref > 0.5``."""
    return pref > TIE


def probe_correct(pref, truth):
    """The teacher's order agrees with the probe's truth: ``(pref > 0.5) == (truth == 1)`` (``truth`` in {0, 1};
    meaningful for ordered probes only)."""
    return prefers_i(pref) == (truth > 0.5)


def default_confidence(pref):
    """The confidence of a label that gives none: ``|2 pref - 1|``."""
    return abs(2.0 * pref - 1.0)

# Reasons a label row is rejected; they are the keys of stats.json["labels"]["rejected"].
REJECT_MALFORMED = "malformed"
REJECT_UNKNOWN_USER = "unknown_user"
REJECT_UNKNOWN_ITEM = "unknown_item"
REJECT_PREF_OUT_OF_RANGE = "pref_out_of_range"
REJECT_LEAKAGE = "leakage_val_or_test_item"
REJECT_SAME_ITEM = "same_item"


class LabelPair(NamedTuple):
    """A joined label as a training record's pair slot holds it (``teacher_*`` or ``probe_*`` features).

    ``truth`` is a probe's (1: ``item_i`` is the known positive, 0: ``item_j`` is); -1 for a teacher pair.
    Tuples sort by item ids first, which ``prepare`` uses to sample pairs independently of the runner.
    """

    item_i: str
    item_j: str
    pref: float
    confidence: float
    truth: int = -1


@dataclasses.dataclass(frozen=True)
class LabelRow:
    user_id: str
    item_i: str
    item_j: str
    pref: float
    kind: str = schema.KIND_TEACHER
    confidence: Optional[float] = None
    truth: Optional[int] = None
    teacher: str = ""

    @property
    def effective_confidence(self) -> float:
        """``confidence``, or the default of ``pref`` as the TFRecords store it (float32), so that a row read
        from JSON lines and the same row read from a TFRecord label file give the same value."""
        if self.confidence is not None:
            return self.confidence
        return default_confidence(struct.unpack("f", struct.pack("f", self.pref))[0])

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def to_example_bytes(self) -> bytes:
        import tensorflow as tf
        b = lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))  # noqa: E731
        fl = lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=[v]))  # noqa: E731
        i = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))  # noqa: E731
        ex = tf.train.Example(features=tf.train.Features(feature={
            "user_id": b(self.user_id), "item_i": b(self.item_i), "item_j": b(self.item_j),
            "pref": fl(self.pref), "kind": b(self.kind), "teacher": b(self.teacher),
            "confidence": fl(-1.0 if self.confidence is None else self.confidence),
            "truth": i(-1 if self.truth is None else self.truth),
        }))
        return ex.SerializeToString(deterministic=True)


def parse_json(line: str) -> LabelRow:
    """Parses one JSON line; raises ``ValueError`` naming the field that is wrong."""
    d = json.loads(line)
    return from_dict(d)


def from_dict(d: dict[str, Any]) -> LabelRow:
    if not isinstance(d, dict):
        raise ValueError("a label row must be a JSON object")
    missing = [k for k in ("user_id", "item_i", "item_j", "pref") if k not in d or d[k] is None]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    kind = d.get("kind") or schema.KIND_TEACHER
    if kind not in (schema.KIND_TEACHER, schema.KIND_PROBE):
        raise ValueError(f"kind must be 'teacher' or 'probe', got {kind!r}")
    truth = d.get("truth")
    if truth is not None and truth != -1:
        # Exactly 0 or 1: int() would truncate 0.7 to 0 and join a wrong answer to the probe.
        if isinstance(truth, bool) or not isinstance(truth, (int, float)) or truth not in (0, 1):
            raise ValueError(f"truth must be 0 or 1, got {truth!r}")
        truth = int(truth)
    else:
        truth = None
    if kind == schema.KIND_PROBE and truth is None:
        raise ValueError("probe rows need truth (0 or 1)")
    conf = d.get("confidence")
    conf = None if conf is None or conf == -1 else float(conf)
    return LabelRow(
        user_id=str(d["user_id"]), item_i=str(d["item_i"]), item_j=str(d["item_j"]),
        pref=float(d["pref"]), kind=kind, confidence=conf, truth=truth,
        teacher=str(d.get("teacher") or ""))


def from_example_bytes(record: bytes) -> LabelRow:
    import tensorflow as tf
    ex = tf.train.Example.FromString(record)
    f = ex.features.feature
    d: dict[str, Any] = {}
    for k in ("user_id", "item_i", "item_j", "kind", "teacher"):
        if k in f:
            d[k] = f[k].bytes_list.value[0].decode("utf-8")
    for k in ("pref", "confidence"):
        if k in f:
            d[k] = f[k].float_list.value[0]
    if "truth" in f:
        d["truth"] = f["truth"].int64_list.value[0]
    return from_dict(d)


def check_values(row: LabelRow) -> Optional[str]:
    """Returns a rejection reason for values no teacher may produce, or ``None``."""
    if not (0.0 <= row.pref <= 1.0) or math.isnan(row.pref):
        return REJECT_PREF_OUT_OF_RANGE
    if row.confidence is not None and (not (0.0 <= row.confidence <= 1.0) or math.isnan(row.confidence)):
        return REJECT_PREF_OUT_OF_RANGE
    if row.item_i == row.item_j:
        return REJECT_SAME_ITEM
    return None
