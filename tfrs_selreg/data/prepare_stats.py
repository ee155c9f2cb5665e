"""What a prepared folder holds, counted: :class:`PrepareStats`, written as ``stats.json``.

One writer (the prepare job, :meth:`PrepareStats.to_text`) and one reader
(:meth:`tfrs_selreg.data.prepared.PreparedData.stats`); test fixtures build the same dataclass.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from tfrs_selreg import typed_config


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The segment thresholds: cold-start users have at most ``cold_start_max_history`` training items;
    long-tail items are the bottom ``long_tail_fraction`` by training popularity, i.e. those with at most
    ``long_tail_max_popularity`` training interactions."""

    cold_start_max_history: int
    long_tail_fraction: float
    long_tail_max_popularity: int
    cold_start_fraction: float = 0.0


@dataclasses.dataclass(frozen=True)
class LabelJoin:
    """The teacher label rows joined into the training examples, and the rejected ones by reason."""

    files: tuple[str, ...] = ()
    joined_teacher_rows: int = 0
    joined_probe_rows: int = 0
    rejected: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PrepareStats:
    """Counts of one prepared folder (``SPLIT`` keys are ``train``, ``val``, ``test``).

    Attributes:
      dataset, data_dir, seed, split, min_rating, history_length, teacher_pairs, probe_pairs, num_shards:
        the settings the counts are of (the whole config is ``prepare_config.json``).
      has_timestamps: whether the reader gave timestamps.
      users, items: users with a split, catalog items; ``items_with_training_interactions`` of them seen.
      interactions, users_with, records: per split, interactions, users with any, TFRecord examples.
      cold_start_users: users at or below the cold-start threshold (``simulated_cold_start_users`` of
        them cut by the simulation); long_tail_items: items at or below the long-tail threshold.
      rows_read: raw rows read per input (``interactions``, ``items``, ``labels``).
      rows_rejected: per input, rejected rows by reason (the dead letters).
      rows_filtered: rows dropped by a documented rule, by rule.
      seconds: the job's wall time.
      rows_read_by_worker: interaction rows read by each worker process (``host:pid``), to see that a
        large input was read in parallel.
    """

    dataset: str
    users: int
    items: int
    thresholds: Thresholds
    data_dir: str = ""
    seed: int = 0
    split: str = "leave_last_out"
    min_rating: Optional[float] = None
    has_timestamps: bool = True
    items_with_training_interactions: int = 0
    interactions: dict[str, int] = dataclasses.field(default_factory=dict)
    users_with: dict[str, int] = dataclasses.field(default_factory=dict)
    records: dict[str, int] = dataclasses.field(default_factory=dict)
    cold_start_users: int = 0
    simulated_cold_start_users: int = 0
    long_tail_items: int = 0
    rows_read: dict[str, int] = dataclasses.field(default_factory=dict)
    rows_rejected: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    rows_filtered: dict[str, int] = dataclasses.field(default_factory=dict)
    labels: LabelJoin = dataclasses.field(default_factory=LabelJoin)
    history_length: int = 10
    teacher_pairs: int = 0
    probe_pairs: int = 0
    num_shards: int = 1
    seconds: float = 0.0
    rows_read_by_worker: dict[str, int] = dataclasses.field(default_factory=dict)

    # The order of stats.json's keys, as the job has always written them.
    _ORDER = ("dataset", "data_dir", "seed", "split", "min_rating", "has_timestamps", "users", "items",
              "items_with_training_interactions", "interactions", "users_with", "records", "cold_start_users",
              "simulated_cold_start_users", "long_tail_items", "thresholds", "rows_read", "rows_rejected",
              "rows_filtered", "labels", "history_length", "teacher_pairs", "probe_pairs", "num_shards",
              "seconds", "rows_read_by_worker")

    def to_json(self) -> dict[str, Any]:
        values = typed_config.to_dict(self)
        return {key: values[key] for key in self._ORDER}

    def to_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    @classmethod
    def from_text(cls, text: str, where: str = "stats.json") -> PrepareStats:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise typed_config.ConfigError(f"{where}: not valid JSON ({e})") from None
        return typed_config.from_dict(cls, values, where)
