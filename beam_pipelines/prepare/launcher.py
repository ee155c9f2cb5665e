"""Running the job: the staging folder, statistics, the error-fraction check, the dataset card and publishing."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from beam_pipelines.prepare.options import (
    REASON_BELOW_MIN_RATING,
    REASON_UNKNOWN_ITEM,
    PrepareError,
    PrepareOptions,
    labels_arg,
    print_help,
)
from beam_pipelines.prepare.pipeline import build_pipeline
from beam_pipelines.prepare.read import ROWS_BY_WORKER
from beam_pipelines.prepare.write import write_text
from tfrs_selreg.data import item_embeddings, prepared, readers, schema, splitting
from tfrs_selreg.data import labels as labels_lib
from tfrs_selreg.data.label_files import list_label_files
from tfrs_selreg.data.prepare_config import DEFAULTS, PREPARE_CONFIG_FILE, PrepareConfig
from tfrs_selreg.data.prepare_stats import LabelJoin, PrepareStats, Thresholds
from tfrs_selreg.typed_config import ConfigError


def _stats(counts: dict[str, int], config: PrepareConfig, reader: readers.DatasetReader,
           label_files: list[str], seconds: float) -> PrepareStats:
    rejected: dict[str, dict[str, int]] = {}
    for key, n in counts.items():
        if key.startswith("rejected/"):
            _, what, reason = key.split("/", 2)
            rejected.setdefault(what, {})[reason] = n
    return PrepareStats(
        dataset=config.dataset, data_dir=config.data_dir or "", seed=config.seed, split=config.split,
        min_rating=config.min_rating, has_timestamps=reader.has_timestamps,
        users=counts.get("users", 0), items=counts.get("items", 0),
        items_with_training_interactions=counts.get("items_with_training_interactions", 0),
        interactions={s: counts.get(f"interactions_{s}", 0) for s in schema.SPLITS},
        users_with={s: counts.get(f"users_with_{s}", 0) for s in schema.SPLITS},
        records={s: counts.get(f"{s}_records", 0) for s in schema.SPLITS},
        cold_start_users=counts.get("cold_start_users", 0),
        simulated_cold_start_users=counts.get("simulated_cold_start_users", 0),
        long_tail_items=counts.get("long_tail_items", 0),
        thresholds=Thresholds(cold_start_max_history=config.cold_start_max_history,
                              long_tail_fraction=config.long_tail_fraction,
                              long_tail_max_popularity=counts.get("long_tail_max_popularity", -1),
                              cold_start_fraction=config.cold_start_fraction),
        rows_read={"interactions": counts.get("interaction_rows_read", 0), "items": counts.get("item_rows_read", 0),
                   "labels": counts.get("label_rows_read", 0)},
        rows_rejected=rejected,
        rows_filtered={REASON_BELOW_MIN_RATING: counts.get(REASON_BELOW_MIN_RATING, 0),
                       "duplicate_interactions": counts.get("duplicate_interactions", 0),
                       "dropped_by_cold_start_simulation": counts.get("dropped_by_cold_start_simulation", 0)},
        labels=LabelJoin(files=tuple(label_files), joined_teacher_rows=counts.get("labels_joined_teacher", 0),
                         joined_probe_rows=counts.get("labels_joined_probe", 0),
                         rejected=rejected.get("labels", {})),
        history_length=config.history_length, teacher_pairs=config.teacher_pairs,
        probe_pairs=config.probe_pairs, num_shards=counts.get("num_shards", config.num_shards),
        seconds=round(seconds, 2),
        rows_read_by_worker={key[len(ROWS_BY_WORKER):]: n for key, n in sorted(counts.items())
                             if key.startswith(ROWS_BY_WORKER)})


def _first_bad_lines(output: str, what: str, reasons: Optional[set] = None,
                     limit: int = 5) -> list[str]:
    rows = []
    for m in FileSystems.match([os.path.join(output, prepared.DEAD_LETTER_DIR, "*.jsonl")])[0] \
            .metadata_list:
        with FileSystems.open(m.path) as f:
            for line in f:
                r = json.loads(line)
                if r["input"] == what and (reasons is None or r["reason"] in reasons):
                    rows.append(r)
    rows.sort(key=lambda r: (r["source"], r["line"]))
    return [f"{r['source']}:{r['line']}: {r['reason']}: {r['raw'][:120]!r}" for r in rows[:limit]]


def _check_error_fraction(stats: PrepareStats, config: PrepareConfig, output: str) -> None:
    # Items first: a rejected catalog row makes its interactions unknown_item, so its own reason comes first.
    for what in ("items", "interactions", "labels"):
        read = stats.rows_read[what]
        rejected = stats.rows_rejected.get(what, {})
        # Label rows dropped for leakage or unknown ids are the guard working, not malformed input.
        reasons = {labels_lib.REJECT_MALFORMED} if what == "labels" else set(rejected)
        bad = sum(n for reason, n in rejected.items() if reason in reasons)
        if read and bad / read > config.max_error_fraction:
            lines = "\n  ".join(_first_bad_lines(output, what, reasons))
            items_rejected = sum(stats.rows_rejected.get("items", {}).values())
            cause = ""
            if what == "interactions" and rejected.get(REASON_UNKNOWN_ITEM) and items_rejected:
                first = "\n  ".join(_first_bad_lines(output, "items"))
                cause = (f"{items_rejected} catalog rows were rejected themselves, so their interactions are "
                         f"{REASON_UNKNOWN_ITEM}; the first of them:\n  {first}\n")
            raise PrepareError(
                f"{bad} of {read} {what} rows ({bad / read:.2%}) were rejected, more than "
                f"--max-error-fraction={config.max_error_fraction}. {cause}First bad rows:\n  {lines}\n"
                f"All rejected rows: {os.path.join(output, prepared.DEAD_LETTER_DIR)}. Fix the input "
                "or raise --max-error-fraction.")


def check_conservation(stats: PrepareStats) -> None:
    """Every interaction row read is accounted for: ``read = rejected + filtered + written`` (train, val and
    test), and each split has one record per interaction. A difference is data lost between reading and
    writing (a runner fault, not bad input), so the job fails instead of publishing a partial folder."""
    read = stats.rows_read["interactions"]
    rejected = sum(stats.rows_rejected.get("interactions", {}).values())
    filtered = sum(stats.rows_filtered.values())
    written = sum(stats.interactions.values())
    records = stats.records
    if read != rejected + filtered + written or records != stats.interactions:
        raise PrepareError(
            f"{read - rejected - filtered - written:,} interaction rows were lost between reading and writing: "
            f"read {read:,} = rejected {rejected:,} + filtered {filtered:,} + written {written:,} does not hold "
            f"(written interactions {stats.interactions}, records {records}). The input is not at fault: the "
            "runner dropped elements. The previous output, if any, is unchanged; run the job again (on the local "
            "runner, with one worker: its multi-worker modes were seen dropping rows at scale, docs/results/scale.md).")


def _dataset_card(stats: PrepareStats) -> str:
    t = stats.thresholds
    lines = [
        f"# Prepared dataset: {stats.dataset}",
        "",
        f"- source: `{stats.data_dir}`; split `{stats.split}`, seed {stats.seed}, "
        f"min rating {stats.min_rating}",
        f"- users {stats.users:,}, items {stats.items:,} "
        f"({stats.items_with_training_interactions:,} with training interactions)",
        "- interactions: " + ", ".join(f"{k} {v:,}" for k, v in stats.interactions.items()),
        f"- cold_start users (training history <= {t.cold_start_max_history}): "
        f"{stats.cold_start_users:,} ({stats.simulated_cold_start_users:,} simulated, "
        f"fraction {t.cold_start_fraction})",
        f"- long_tail items (bottom {t.long_tail_fraction:.0%} by training popularity, "
        f"popularity <= {t.long_tail_max_popularity}): {stats.long_tail_items:,}",
        f"- rows read: {stats.rows_read}; rejected: {stats.rows_rejected or 'none'}; "
        f"filtered: {stats.rows_filtered}",
        f"- teacher labels joined: {stats.labels.joined_teacher_rows:,} teacher rows, "
        f"{stats.labels.joined_probe_rows:,} probe rows",
        "",
        "Features are described in `schema.json`; statistics come from the training split only.",
    ]
    return "\n".join(lines) + "\n"


STAGING_SUFFIX = ".incomplete"
# What a prepare job writes into --output, besides the split shards; nothing else there is touched.
OWNED_NAMES = (prepared.ITEMS_FILE, prepared.STATS_FILE, prepared.DATASET_CARD,
               schema.SCHEMA_FILE, PREPARE_CONFIG_FILE)
OWNED_FOLDERS = (os.path.dirname(prepared.ITEMS_VOCAB), prepared.DEAD_LETTER_DIR, item_embeddings.DIR)


def resolve(argv: Optional[list[str]] = None) -> tuple[PrepareConfig, str, PipelineOptions]:
    """The job's :class:`PrepareConfig` (``--data-dir`` resolved), its ``--output`` and its Beam options."""
    labels_path, argv = labels_arg(argv)
    options = PipelineOptions(argv)
    o = options.view_as(PrepareOptions)
    std = options.view_as(StandardOptions)
    if not std.runner:
        std.runner = "DirectRunner"  # Never let Beam pick (it would try to download Prism).
    options.view_as(SetupOptions).save_main_session = False
    if not o.dataset or not o.output:
        raise PrepareError("--dataset and --output are required (see tfrs-selreg prepare --help)")
    data_dir = o.data_dir
    if data_dir is None:
        if o.dataset == "ml-latest-small":
            data_dir = readers.bundled_data_dir()
        elif o.dataset == "tfds":
            data_dir = o.tfds_data_dir or ""
        else:
            raise PrepareError(f"--data-dir is required for --dataset {o.dataset}")
    values = {name: getattr(o, name) for name in DEFAULTS if name not in ("data_dir", "labels")}
    try:
        config = PrepareConfig(**values, data_dir=data_dir, labels=labels_path)
    except ConfigError as e:  # the flags' ranges are checked while parsing; this is a joint rule
        raise PrepareError(str(e)) from None
    return config, o.output.rstrip("/"), options


def resolve_config(argv: list[str]) -> dict:
    """The ``prepare_config.json`` that ``argv`` would write (a cached stage compares it with the saved one)."""
    return resolve(argv)[0].to_json()


def run(argv: Optional[list[str]] = None) -> PrepareStats:
    """Runs the prepare job; returns the statistics written to ``stats.json``."""
    config, output, options = resolve(argv)
    reader_options = {}
    if config.dataset == "tfds":
        reader_options = {"tfds_name": config.tfds_name, "tfds_data_dir": config.tfds_data_dir}
    reader = readers.get_reader(config.dataset, **reader_options)
    data_dir, labels_path = config.data_dir or "", config.labels
    reader.check(data_dir)
    if config.split == splitting.SPLIT_TEMPORAL and not reader.has_timestamps:
        raise PrepareError(f"--split temporal needs timestamps, and {config.dataset} data has none; "
                           "use --split leave_last_out")
    label_files: list[str] = []
    if labels_path:
        label_files = list_label_files(labels_path)
        if not label_files:
            raise PrepareError(f"--labels {labels_path}: no *.jsonl, *.jsonl.gz, *.tfrecord or "
                               "*.tfrecord.gz files found there")

    _refuse_inputs_inside(output, data_dir, labels_path, label_files)
    # Everything is written to a staging folder first and moved into --output only when the job and its
    # checks succeeded: a failed job leaves a previous good output as it was.
    staging = output + STAGING_SUFFIX
    if FileSystems.exists(staging):
        FileSystems.delete([staging])
    for sub in ("", os.path.dirname(prepared.ITEMS_VOCAB), prepared.DEAD_LETTER_DIR):
        FileSystems.mkdirs(os.path.join(staging, sub))
    try:
        stats = _run_into(options, config, staging, reader, label_files)
    except PrepareError:
        raise  # the staging folder stays: its dead_letter/ holds the rejected rows the message names
    except BaseException:
        FileSystems.delete([staging])
        raise
    _publish(staging, output)
    return stats


def _run_into(options: PipelineOptions, config: PrepareConfig, output: str, reader: readers.DatasetReader,
              label_files: list[str]) -> PrepareStats:
    """Runs the pipeline into ``output`` (the staging folder) and checks the result; returns the stats."""
    schema_obj = schema.build_schema(config.history_length, config.teacher_pairs, config.probe_pairs)
    start = time.time()
    logging.info("prepare: reading %s from %s", config.dataset, config.data_dir)
    with beam.Pipeline(options=options) as p:
        build_pipeline(p, config, output, reader, label_files,
                       range_bytes=options.view_as(PrepareOptions).read_range_bytes)
    seconds = time.time() - start

    counts_path = os.path.join(output, "counts.json")
    with FileSystems.open(counts_path) as f:
        counts = json.loads(f.read().decode("utf-8"))
    FileSystems.delete([counts_path])
    stats = _stats(counts, config, reader, label_files, seconds)
    write_text(os.path.join(output, prepared.STATS_FILE), [stats.to_text()])
    _check_error_fraction(stats, config, output)
    check_conservation(stats)
    if stats.users == 0 or stats.interactions["train"] == 0:
        raise PrepareError(f"no training interactions left from {config.data_dir} (read "
                           f"{stats.rows_read}, filtered {stats.rows_filtered}); check "
                           "--min-rating and the input files")
    joined = stats.labels.joined_teacher_rows + stats.labels.joined_probe_rows
    if label_files and joined == 0:
        lines = "\n  ".join(_first_bad_lines(output, "labels")) or "(no label row was read)"
        raise PrepareError(
                f"--labels {config.labels}: none of its {stats.rows_read['labels']:,} rows could be joined "
                f"(rejected: {stats.labels.rejected}). First rejected rows:\n  {lines}\n"
                f"All of them: {os.path.join(output, prepared.DEAD_LETTER_DIR)}. Were the labels scored on "
                "this prepared folder (same dataset, split and seed)?")
    # Beam's file system rather than Schema.save (tf.io.gfile): the launcher need not import TensorFlow.
    with FileSystems.create(os.path.join(output, schema.SCHEMA_FILE)) as f:
        f.write(schema_obj.dumps().encode("utf-8"))
    with FileSystems.create(os.path.join(output, PREPARE_CONFIG_FILE)) as f:
        f.write(config.to_text().encode("utf-8"))
    write_text(os.path.join(output, prepared.DATASET_CARD), [_dataset_card(stats)])
    if config.labels:
        _copy_item_embeddings(config.labels, output)
    return stats


def _inside(path: str, folder: str) -> bool:
    path, folder = (p if "://" in p else os.path.abspath(p) for p in (path, folder))
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _refuse_inputs_inside(output: str, data_dir: str, labels_path: Optional[str], label_files: list[str]) -> None:
    """An --output that holds an input would be overwritten by the job that reads it."""
    inputs = [("--data-dir", data_dir)] + [("--labels", f) for f in label_files]
    inputs += [("--labels", labels_path)] if labels_path else []
    for flag, path in inputs:
        if _inside(path, output) or _inside(output, path):
            raise PrepareError(f"{flag} {path} and --output {output} overlap: the job would overwrite its own "
                               "input. Write the prepared folder somewhere else.")


def _owned(folder: str) -> list[str]:
    """The paths in ``folder`` that a prepare job writes (and only those: other files are left alone)."""
    patterns = [os.path.join(folder, f"{split}-[0-9]*-of-[0-9]*.tfrecord") for split in schema.SPLITS]
    patterns += [prepared.users_pattern(folder), os.path.join(folder, "users.jsonl")]  # and an older layout's
    patterns += [os.path.join(folder, name) for name in OWNED_NAMES]
    return sorted(m.path for result in FileSystems.match(patterns) for m in result.metadata_list)


def _publish(staging: str, output: str) -> None:
    """Moves the finished ``staging`` folder's files into ``output``, replacing only a previous job's.

    File by file (object stores have no folders to rename); a new local ``output`` is the renamed staging
    folder.
    """
    if "://" not in output and not FileSystems.exists(output):
        FileSystems.rename([staging], [output])
        return
    folders = [os.path.join(output, n) for n in OWNED_FOLDERS]
    old = _owned(output) + [f for f in folders if FileSystems.exists(f)]
    if old:
        FileSystems.delete(old)
    sources = sorted(m.path for m in FileSystems.match([FileSystems.join(staging, "**")])[0].metadata_list)
    targets = [FileSystems.join(output, os.path.relpath(path, staging)) for path in sources]
    empty = [os.path.join(output, n) for n in OWNED_FOLDERS if FileSystems.exists(os.path.join(staging, n))]
    for folder in sorted({os.path.dirname(t) for t in targets} | set(empty)):
        if not FileSystems.exists(folder):
            FileSystems.mkdirs(folder)
    FileSystems.rename(sources, targets)
    FileSystems.delete([staging])


def _copy_item_embeddings(labels_path: str, output: str) -> None:
    """``LABELS/item_embeddings/`` (the teacher's item text embeddings, when it wrote them) into ``output``."""
    source = item_embeddings.folder(labels_path.rstrip("/"))
    target = item_embeddings.folder(output)
    if FileSystems.exists(target):
        FileSystems.delete([target])
    if not FileSystems.exists(os.path.join(source, item_embeddings.INFO_FILE)):
        return
    files = [m.path for m in FileSystems.match([os.path.join(source, "*")])[0].metadata_list]
    FileSystems.mkdirs(target)
    FileSystems.copy(files, [os.path.join(target, os.path.basename(f)) for f in files])


def main(argv: Optional[list[str]] = None) -> int:
    """``tfrs-selreg prepare``: runs the job and prints the dataset card."""
    if argv is not None and ({"-h", "--help"} & set(argv)):
        print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("apache_beam", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        stats = run(argv)
    except (PrepareError, FileNotFoundError, ValueError) as e:
        print(f"tfrs-selreg prepare: error: {e}", file=sys.stderr)
        return 1
    print(_dataset_card(stats), end="")
    return 0
