"""``tfrs-selreg experiment``: backbones x methods x seeds on one dataset, then paper-style tables.

    tfrs-selreg experiment --config FILE.yaml [--runs-dir DIR] [--only-aggregate] [--force]

Runs, as the commands a user would type (each printed as a ``[run]`` line), one shared ``prepare``,
a ``score`` and a join (``prepare --labels``) per teacher, and a ``train`` + ``evaluate`` per backbone x
method x seed under ``RUNS_DIR/NAME/train/BACKBONE-METHOD-seedSEED/``. Each stage records its command
next to its outputs and is skipped when it is done for the same command and inputs, so a re-run computes
only what changed (a method's new ``train_args`` redo that method's runs, a new ``prepare_args`` redo
everything). Then it writes ``RUNS_DIR/NAME/results.md`` (tables by backbone and segment: mean ± std
over seeds of AUC, Recall@20, NDCG@20 and the gate's mean pair weight; the difference to the baseline
method with a paired t-test over seeds and a per-user Wilcoxon test) and ``results.csv`` (every number,
one row per backbone, method, segment and metric), and prints the markdown.

The config format is in :mod:`tfrs_selreg.experiment.config`; examples in ``tfrs_selreg/configs/experiment-*.yaml``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from typing import Optional

import tfrs_selreg  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfrs_selreg.experiment import config as config_lib
from tfrs_selreg.experiment.tables import aggregate
from tfrs_selreg.experiment.workflow import Experiment


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="tfrs-selreg experiment", description=__doc__.split("\n\n")[0],
                                epilog="The config format: see tfrs_selreg/experiment/config.py and "
                                       "tfrs_selreg/configs/experiment-*.yaml.")
    p.add_argument("--config", required=True, help="YAML/JSON file of ExperimentConfig fields")
    p.add_argument("--runs-dir", dest="runs_dir", help="folder of experiments (default: the config's runs_dir)")
    p.add_argument("--only-aggregate", action="store_true",
                   help="run no stage: rebuild results.md/csv from the runs evaluated so far")
    p.add_argument("--force", action="store_true", help="redo every stage, whatever its record says")
    args = p.parse_args(argv)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    try:
        config = config_lib.load(args.config, runs_dir=args.runs_dir)
    except (OSError, ValueError) as e:
        print(f"tfrs-selreg experiment: {e}", file=sys.stderr)
        return 2
    # The tables do not depend on these flags: the recorded command is the one that reproduces them.
    command = shlex.join(["tfrs-selreg", "experiment", *(a for a in argv if a not in ("--only-aggregate", "--force"))])
    start = time.perf_counter()
    from tfrs_selreg.cli import resolve_config, run_command

    experiment = Experiment(config, run_command, force=args.force, resolve=resolve_config)
    if not args.only_aggregate:
        print(f"[run] experiment {config.name}: {len(experiment.runs)} runs, {len(experiment.stages)} stages "
              f"under {config.root}", flush=True)
        try:
            experiment.run()
        except RuntimeError as e:
            print(f"tfrs-selreg experiment: {e}", file=sys.stderr)
            return 1
    text = aggregate(experiment, command)
    print(text, end="")
    ran = experiment.runner.ran
    print(f"[run] done in {time.perf_counter() - start:.0f} s ({len(ran)} stage(s) ran, "
          f"{len(experiment.runner.skipped)} skipped); tables: {os.path.join(config.root, 'results.md')}, "
          f"{os.path.join(config.root, 'results.csv')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
