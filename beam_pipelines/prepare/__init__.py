"""Beam job: raw interactions (+ optional teacher labels) -> split TFRecords, vocabularies, statistics.

Run locally::

    python -m beam_pipelines.prepare --dataset ml-1m --data-dir ../shared/data/ml-1m --output OUT \
        --runner DirectRunner --direct_num_workers 2 --direct_running_mode multi_processing

or on Dataflow with ``--runner DataflowRunner --project P --region R --temp_location gs://... \
--setup_file ./setup.py`` and ``gs://`` paths. ``tfrs-selreg prepare`` wraps this job.

Stages (every statistic comes from the training split only):

1. read interactions and the item catalog with the dataset's reader; malformed rows, unknown items and
   duplicate catalog entries go to ``dead_letter/`` with file, line and reason;
2. keep positives (``rating >= --min-rating`` when set), group by user together with the user's
   teacher label rows (one shuffle), dedupe, split (``leave_last_out`` or ``temporal``) and optionally
   simulate cold-start users;
3. training popularity per item -> catalog order, ``long_tail`` items (bottom ``--long-tail-fraction``);
4. group the users' splits by shard (the second and last shuffle); per shard, join each user's labels,
   dropping unknown ids, invalid ``pref`` and leakage into the user's validation/test items (counted,
   dead-lettered), and write one ``tf.train.Example`` per interaction and the users file.
"""

import tfrs_selreg  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from beam_pipelines.prepare.launcher import STAGING_SUFFIX, main, resolve_config, run
from beam_pipelines.prepare.options import PrepareError, PrepareOptions
from beam_pipelines.prepare.pipeline import build_pipeline

__all__ = ["STAGING_SUFFIX", "PrepareError", "PrepareOptions", "build_pipeline", "main", "resolve_config", "run"]
