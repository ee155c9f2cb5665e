"""``tfrs-selreg run``: the whole flow on one dataset, each stage as the command a user would type.

    prepare -> score (teacher) -> prepare --labels (join) -> train (one run per gate mode and seed)
    -> evaluate -> export (one gate's model) -> report.md

Every stage is called through its own ``main``-level entry with the exact argument list that is also
written to ``report.md`` as a shell command, so the report's commands reproduce the run. A stage
whose output is complete and was made by the same command from the same inputs is skipped (its
``stage-COMMAND.json`` record, see :mod:`tfrs_selreg.experiment.stages`), so re-running a killed ``run``
resumes and a changed config redoes only what it changes; ``--force`` redoes everything. Outputs go
to ``RUNS_DIR/RUN_ID/`` and the export to ``saved_models/MODEL_NAME/VERSION/``. The plan is
:mod:`tfrs_selreg.experiment.run`; the config file holds its :class:`RunConfig` fields.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Optional

import tfrs_selreg  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfrs_selreg.experiment import run as run_lib


def main(argv: Optional[list[str]] = None) -> int:
    from tfrs_selreg.cli import resolve_config, run_command
    from tfrs_selreg.experiment.report import write_report

    p = argparse.ArgumentParser(prog="tfrs-selreg run", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML/JSON file of RunConfig fields (default: ml-latest-small settings)")
    p.add_argument("--name", help="run id (folder under runs_dir)")
    p.add_argument("--runs-dir", dest="runs_dir")
    p.add_argument("--force", action="store_true", help="redo stages whose outputs exist")
    args = p.parse_args(argv)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    try:
        config = run_lib.load_config(args.config, {"name": args.name, "runs_dir": args.runs_dir})
    except (OSError, ValueError, TypeError) as e:
        print(f"tfrs-selreg run: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    flow = run_lib.plan(config, run_command, force=args.force, resolve=resolve_config)
    try:
        flow.run()
    except RuntimeError as e:
        print(f"tfrs-selreg run: {e}", file=sys.stderr)
        return 1
    report = write_report(config, flow.runner.commands, run_lib.outputs(flow))
    print(f"[run] done in {time.perf_counter() - start:.0f} s; report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
