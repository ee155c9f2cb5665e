"""The prepare job's flags (``PrepareOptions``, ``--labels``), its side-output tags and its error type."""

from __future__ import annotations

import argparse
from typing import Optional

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options import add_flag
from tfrs_selreg import flags
from tfrs_selreg.data import readers, splitting
from tfrs_selreg.data.prepare_config import DEFAULTS

REJECTED = "rejected"
COUNTS = "counts"
# Small enough that a file of a million rows (20-25 MB) gives every local worker ranges to read.
READ_RANGE_BYTES = 4 << 20

# Reasons counted but not errors of the input: they are the documented filtering rules.
REASON_BELOW_MIN_RATING = "below_min_rating"
REASON_UNKNOWN_ITEM = "unknown_item"
REASON_DUPLICATE_ITEM = "duplicate_item"


class PrepareError(RuntimeError):
    """The input is unusable (too many bad rows, missing files); the message says what to fix."""


def _num_shards(text: str) -> int:
    """``--num-shards``: a count >= 1, or ``auto`` (0 in PrepareConfig)."""
    return 0 if text == "auto" else flags.integer(1)(text)


class PrepareOptions(PipelineOptions):
    """Flags of the prepare job (Beam's own flags, such as ``--runner``, are separate)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        d = DEFAULTS  # one source of defaults: PrepareConfig
        add_flag(parser, "--dataset", choices=sorted(readers.READERS), help="input format / reader (required)")
        add_flag(parser, "--data-dir", dest="data_dir", default=None,
                 help="raw data folder (default for ml-latest-small: the bundled copy)")
        add_flag(parser, "--tfds-name", dest="tfds_name", default=d["tfds_name"],
                 help="TFDS dataset for --dataset tfds")
        add_flag(parser, "--tfds-data-dir", dest="tfds_data_dir", default=None,
                 help="TFDS data dir holding the prepared dataset (no download)")
        add_flag(parser, "--output", help="output folder, local or gs:// (required)")
        add_flag(parser, "--split", default=d["split"], choices=splitting.SPLIT_MODES)
        add_flag(parser, "--temporal-val-fraction", dest="temporal_val_fraction",
                 type=flags.number(0.0, below=1.0), default=d["temporal_val_fraction"],
                 help="temporal split: share of interactions in validation")
        add_flag(parser, "--temporal-test-fraction", dest="temporal_test_fraction",
                 type=flags.number(0.0, below=1.0), default=d["temporal_test_fraction"],
                 help="temporal split: share of interactions in test")
        add_flag(parser, "--min-rating", dest="min_rating", type=flags.number(), default=d["min_rating"],
                 help="keep only interactions with rating >= this as positives")
        add_flag(parser, "--history-length", dest="history_length", type=flags.integer(1),
                 default=d["history_length"], help="L: training items in each example's history")
        add_flag(parser, "--cold-start-max-history", dest="cold_start_max_history", type=flags.integer(0),
                 default=d["cold_start_max_history"], help="users with at most this many training items are cold_start")
        add_flag(parser, "--long-tail-fraction", dest="long_tail_fraction", type=flags.FRACTION,
                 default=d["long_tail_fraction"],
                 help="bottom fraction of items by training popularity that is long_tail")
        add_flag(parser, "--cold-start-fraction", dest="cold_start_fraction", type=flags.FRACTION,
                 default=d["cold_start_fraction"],
                 help="simulate cold start: fraction of users keeping 1-3 training items")
        add_flag(parser, "--teacher-pairs", dest="teacher_pairs", type=flags.integer(0), default=d["teacher_pairs"],
                 help="P: teacher pairs per training example")
        add_flag(parser, "--probe-pairs", dest="probe_pairs", type=flags.integer(0), default=d["probe_pairs"],
                 help="Q: probe pairs per training example")
        add_flag(parser, "--seed", type=flags.integer(0), default=d["seed"])
        add_flag(parser, "--max-error-fraction", dest="max_error_fraction", type=flags.FRACTION,
                 default=d["max_error_fraction"], help="fail when more rejected rows than this fraction")
        add_flag(parser, "--num-shards", dest="num_shards", type=_num_shards, default=d["num_shards"],
                 help="TFRecord and users-file shards per split, or auto: one per --examples-per-shard "
                 "accepted interaction rows")
        add_flag(parser, "--examples-per-shard", dest="examples_per_shard", type=flags.integer(1),
                 default=d["examples_per_shard"], help="shard size of --num-shards auto")
        # Not part of PrepareConfig: how the input is cut for the workers changes no output byte.
        add_flag(parser, "--read-range-bytes", dest="read_range_bytes", type=flags.integer(256),
                 default=READ_RANGE_BYTES,
                 help="an interactions file of one row per line is read by the workers in ranges of this size")


def _add_labels_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", default=None,
                        help="teacher label rows to join (*.jsonl[.gz] or *.tfrecord[.gz]: a file, "
                        "a glob or a folder)")


def labels_arg(argv: Optional[list[str]]) -> tuple[Optional[str], list[str]]:
    """Parses ``--labels`` apart: Beam's Google Cloud options own that flag name (job labels; use
    ``--label key=value`` for those), so it cannot live in :class:`PrepareOptions`."""
    parser = argparse.ArgumentParser(add_help=False)
    _add_labels_arg(parser)
    known, rest = parser.parse_known_args(argv)
    return known.labels, rest


def print_help() -> None:
    parser = argparse.ArgumentParser(
        prog="tfrs-selreg prepare",
        description="Beam job: raw interactions (+ optional teacher labels) -> split TFRecords, vocabularies, "
                    "statistics.",
        epilog="Beam's own flags (--runner, --direct_num_workers, --project, ...) are accepted too.")
    PrepareOptions._add_argparse_args(parser)
    _add_labels_arg(parser)
    parser.print_help()
