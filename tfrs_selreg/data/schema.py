"""The one schema of prepared data: feature names, dtypes, shapes and roles.

Every prepared folder holds ``train-*.tfrecord``, ``val-*.tfrecord`` and ``test-*.tfrecord`` files of
``tf.train.Example`` records, one record per positive interaction, plus a ``schema.json`` written from
this module. The Beam jobs write it, the ``tf.data`` input function and the exporter read it, so a
feature is renamed here and nowhere else.

Roles (in the spirit of TF Ranking's separate training-only feature spec):

- ``serving``: what a client sends to the exported model (``user_id``, ``history``). The serving
    signatures parse these and nothing else.
- ``example``: the interaction itself and its segment features (``item_id``, ``timestamp``,
    ``history_length``, ``cold_start``, ``item_popularity``, ``long_tail``, ``rating``), present in every split.
- ``training_only``: teacher pairs and probe pairs joined from the teacher labels. Only training
    examples carry them; validation/test examples and SavedModels never see them.

Fixed-length lists are padded: string lists with ``""`` and numeric lists with 0; the ``*_mask``
features say which slots hold a real pair (1.0) and which are padding (0.0).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

SCHEMA_FILE = "schema.json"
SCHEMA_VERSION = 1

SPLITS = ("train", "val", "test")

ROLE_SERVING = "serving"
ROLE_EXAMPLE = "example"
ROLE_TRAINING_ONLY = "training_only"

# Feature names: one name per concept, used for TFRecord features, config fields and metric keys.
USER_ID = "user_id"
HISTORY = "history"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"
RATING = "rating"
HISTORY_LENGTH = "history_length"
COLD_START = "cold_start"
ITEM_POPULARITY = "item_popularity"
LONG_TAIL = "long_tail"

TEACHER_ITEM_I = "teacher_item_i"
TEACHER_ITEM_J = "teacher_item_j"
TEACHER_PREF = "teacher_pref"
TEACHER_CONFIDENCE = "teacher_confidence"
TEACHER_MASK = "teacher_mask"
PROBE_ITEM_I = "probe_item_i"
PROBE_ITEM_J = "probe_item_j"
PROBE_PREF = "probe_pref"
PROBE_CONFIDENCE = "probe_confidence"
PROBE_TRUTH = "probe_truth"
PROBE_MASK = "probe_mask"

# Label-row fields (the teacher-label contract, see ``tfrs_selreg.data.labels``).
KIND_TEACHER = "teacher"
KIND_PROBE = "probe"


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """One TFRecord feature: ``dtype`` is ``string``, ``int64`` or ``float32``; ``shape`` is ``[]`` or ``[n]``."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    role: str
    default: Any
    description: str

    def to_json(self) -> dict[str, Any]:
        return {
                "name": self.name,
                "dtype": self.dtype,
                "shape": list(self.shape),
                "role": self.role,
                "default": self.default,
                "description": self.description,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "FeatureSpec":
        return cls(d["name"], d["dtype"], tuple(d["shape"]), d["role"], d["default"], d["description"])


@dataclasses.dataclass(frozen=True)
class Schema:
    """Feature specs plus the list lengths they were built with.

    Attributes:
        history_length: ``L``, slots in ``history`` (most recent training items, newest last, left-padded
            with ``""`` so the newest item is always in the last slot).
        teacher_pairs: ``P``, teacher-pair slots per training example.
        probe_pairs: ``Q``, probe-pair slots per training example.
    """

    history_length: int
    teacher_pairs: int
    probe_pairs: int
    features: tuple[FeatureSpec, ...]

    def by_role(self, *roles: str) -> tuple[FeatureSpec, ...]:
        return tuple(f for f in self.features if f.role in roles)

    def __getitem__(self, name: str) -> FeatureSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"feature {name!r} is not in the schema; known: {[f.name for f in self.features]}")

    def to_json(self) -> dict[str, Any]:
        return {
                "schema_version": SCHEMA_VERSION,
                "history_length": self.history_length,
                "teacher_pairs": self.teacher_pairs,
                "probe_pairs": self.probe_pairs,
                "features": [f.to_json() for f in self.features],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Schema":
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                    f"schema_version {d.get('schema_version')!r} is not supported (expected {SCHEMA_VERSION}); "
                    "re-run `tfrs-selreg prepare` with this version of tfrs-selreg.")
        return cls(d["history_length"], d["teacher_pairs"], d["probe_pairs"],
                              tuple(FeatureSpec.from_json(f) for f in d["features"]))

    def dumps(self) -> str:
        """The text of ``schema.json``."""
        return json.dumps(self.to_json(), indent=2) + "\n"

    def save(self, directory: str) -> str:
        import tensorflow as tf  # gfile so that gs:// outputs work for Dataflow runs.
        path = os.path.join(directory, SCHEMA_FILE)
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(self.dumps())
        return path

    @classmethod
    def load(cls, directory: str) -> "Schema":
        import tensorflow as tf
        path = os.path.join(directory, SCHEMA_FILE)
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"{path} not found: point to a folder written by `tfrs-selreg prepare`.")
        with tf.io.gfile.GFile(path) as f:
            return cls.from_json(json.load(f))


def build_schema(history_length: int = 10, teacher_pairs: int = 8, probe_pairs: int = 4) -> Schema:
    """The schema for the given list lengths ``L``, ``P`` and ``Q``."""
    L, P, Q = history_length, teacher_pairs, probe_pairs
    s = lambda name, shape, role, desc: FeatureSpec(name, "string", shape, role, "", desc)  # noqa: E731
    i = lambda name, shape, role, desc: FeatureSpec(name, "int64", shape, role, 0, desc)  # noqa: E731
    f = lambda name, shape, role, desc: FeatureSpec(name, "float32", shape, role, 0.0, desc)  # noqa: E731
    features = (
            s(USER_ID, (), ROLE_SERVING, "user id as in the raw data"),
            s(HISTORY, (L,), ROLE_SERVING,
                "last L training items before this example, oldest first, left-padded with ''"),
            s(ITEM_ID, (), ROLE_EXAMPLE, "the positive item of this interaction"),
            i(TIMESTAMP, (), ROLE_EXAMPLE, "unix seconds, or the 0-based position in the user's sequence "
                "when the source has no timestamps"),
            f(RATING, (), ROLE_EXAMPLE, "explicit rating, or 0 when the source has none"),
            i(HISTORY_LENGTH, (), ROLE_EXAMPLE, "|H(u)|: the user's number of training interactions"),
            i(COLD_START, (), ROLE_EXAMPLE, "1 if history_length <= cold_start_max_history"),
            i(ITEM_POPULARITY, (), ROLE_EXAMPLE, "pop(i): training interactions of item_id"),
            i(LONG_TAIL, (), ROLE_EXAMPLE, "1 if item_id is in the bottom long_tail_fraction by popularity"),
            s(TEACHER_ITEM_I, (P,), ROLE_TRAINING_ONLY, "teacher pair: first item"),
            s(TEACHER_ITEM_J, (P,), ROLE_TRAINING_ONLY, "teacher pair: second item"),
            f(TEACHER_PREF, (P,), ROLE_TRAINING_ONLY, "teacher's P(user prefers item_i over item_j)"),
            f(TEACHER_CONFIDENCE, (P,), ROLE_TRAINING_ONLY,
                "teacher's own confidence in [0,1]; |2 pref - 1| when the teacher gives none"),
            f(TEACHER_MASK, (P,), ROLE_TRAINING_ONLY, "1.0 for a real teacher pair, 0.0 for padding"),
            s(PROBE_ITEM_I, (Q,), ROLE_TRAINING_ONLY, "probe pair: first item"),
            s(PROBE_ITEM_J, (Q,), ROLE_TRAINING_ONLY, "probe pair: second item"),
            f(PROBE_PREF, (Q,), ROLE_TRAINING_ONLY, "teacher's P(user prefers probe item_i over item_j)"),
            f(PROBE_CONFIDENCE, (Q,), ROLE_TRAINING_ONLY, "teacher's confidence on the probe pair"),
            f(PROBE_TRUTH, (Q,), ROLE_TRAINING_ONLY, "1.0 if probe item_i is the user's known positive"),
            f(PROBE_MASK, (Q,), ROLE_TRAINING_ONLY, "1.0 for a real probe pair, 0.0 for padding"),
    )
    return Schema(L, P, Q, features)
