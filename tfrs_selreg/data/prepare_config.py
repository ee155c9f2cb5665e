"""What a prepared folder was made from: :class:`PrepareConfig`, written as ``prepare_config.json``.

The prepare job resolves its flags into this dataclass (``--data-dir`` resolved to the folder it read)
and writes it next to its outputs; a cached stage compares the config a command would resolve to with
this file rather than comparing argument lists, so a reordered command, a default written out or a
Beam runner flag does not redo the job. ``--output`` is where, not what, and is not part of it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from tfrs_selreg import typed_config
from tfrs_selreg.data import splitting

PREPARE_CONFIG_FILE = "prepare_config.json"


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """The settings of one ``tfrs-selreg prepare`` job (its flags without dashes; ranges in the flags).

    Attributes:
      dataset: the reader (``tfrs_selreg.data.readers``).
      data_dir: the raw data folder read.
      tfds_name, tfds_data_dir: the TFDS dataset for ``dataset: tfds``.
      labels: teacher label rows joined (a file, glob or folder), ``None`` for none.
      split: ``leave_last_out`` or ``temporal``; ``temporal_*_fraction`` the temporal cut.
      min_rating: interactions below this rating are not positives.
      history_length: L, training items in an example's history.
      cold_start_max_history: users with at most this many training items are cold-start.
      long_tail_fraction: the bottom fraction of items by training popularity that is long-tail.
      cold_start_fraction: the fraction of users cut to 1-3 training items (simulated cold start).
      teacher_pairs, probe_pairs: P and Q, label pairs sampled into each training example.
      seed: seeds the splits, the cold-start simulation and the pair sampling.
      max_error_fraction: the job fails above this fraction of rejected rows.
      num_shards: TFRecord (and users-file) shards per split; ``0`` (``--num-shards auto``): one shard per
        ``examples_per_shard`` accepted interaction rows (rows read less rejected and below ``min_rating``;
        an upper bound on the training examples), so that a shard's memory on its worker is bounded.
      examples_per_shard: the shard size of ``num_shards: 0``.
    """

    dataset: str
    data_dir: Optional[str] = None
    tfds_name: str = "movielens/100k-ratings"
    tfds_data_dir: Optional[str] = None
    labels: Optional[str] = None
    split: str = splitting.SPLIT_LEAVE_LAST_OUT
    temporal_val_fraction: float = 0.1
    temporal_test_fraction: float = 0.1
    min_rating: Optional[float] = None
    history_length: int = 10
    cold_start_max_history: int = 3
    long_tail_fraction: float = 0.2
    cold_start_fraction: float = 0.0
    teacher_pairs: int = 8
    probe_pairs: int = 4
    seed: int = 0
    max_error_fraction: float = 0.01
    num_shards: int = 2
    examples_per_shard: int = 100_000

    def __post_init__(self) -> None:
        if self.num_shards < 0 or self.examples_per_shard < 1:
            raise typed_config.ConfigError("num_shards must be >= 0 (0: auto) and examples_per_shard >= 1")
        if self.split not in splitting.SPLIT_MODES:
            raise typed_config.ConfigError(f"split {self.split!r} is not one of {splitting.SPLIT_MODES}")
        if self.split == splitting.SPLIT_TEMPORAL and self.temporal_val_fraction + self.temporal_test_fraction >= 1:
            raise typed_config.ConfigError(
                    f"--temporal-val-fraction {self.temporal_val_fraction} + --temporal-test-fraction "
                    f"{self.temporal_test_fraction} must be < 1: the rest is the training split.")

    def to_json(self) -> dict[str, Any]:
        return typed_config.to_dict(self)

    def to_text(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_text(cls, text: str, where: str = PREPARE_CONFIG_FILE) -> PrepareConfig:
        return typed_config.from_dict(cls, json.loads(text), where)


DEFAULTS = {f.name: f.default for f in dataclasses.fields(PrepareConfig)}
