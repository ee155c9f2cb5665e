"""Evaluation speed: ``tfrs-selreg evaluate``'s time per user, with and without the pair diagnostics.

    python benchmarks/bench_eval.py --run RUN_DIR [--prepared DIR]       # e.g. a run on ML-1M
    python benchmarks/bench_eval.py --synthetic-items 100000 --work DIR  # a synthetic 100k-item catalog

For the run (or for a small run trained here on a synthetic prepared folder with ``--synthetic-items``
items, ``python -m tests.synthetic``'s generator), it times in this process
:func:`tfrs_selreg.evaluation.evaluate.evaluate` on the test split with the diagnostics that ``train``
saved (the default), without diagnostics, and the diagnostics computed from the training split
(``pair_diagnostics``: what ``train`` pays once, and ``evaluate`` for a run without ``diagnostics.json``),
``--repeats`` times each, interleaved, median; then the whole CLI in a fresh process
(``tfrs-selreg evaluate --run ...``) next to a fresh process that only imports TensorFlow and this
package, so that the CLI's own time is the difference. The 1-minute load average is printed before and
after. Target: the CLI on ML-1M in under 10 s plus the import.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Optional

# isort: off
import tfrs_selreg  # noqa: F401  (first: sets TF_USE_LEGACY_KERAS before TensorFlow loads)
# isort: on

from tfrs_selreg.evaluation.diagnostics import pair_diagnostics
from tfrs_selreg.evaluation.evaluate import evaluate
from tfrs_selreg.runs.config import TrainConfig
from tfrs_selreg.runs.folder import load_run
from tfrs_selreg.training.train import train

TARGET_CLI_SECONDS = 10.0
IMPORT_ONLY = "import tfrs_selreg, tensorflow, tensorflow_recommenders; from tfrs_selreg.evaluation import evaluate"


def _synthetic_run(work: str, items: int, users: int) -> tuple[str, str]:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
    from tests.synthetic import make_prepared

    prepared = make_prepared(os.path.join(work, f"prepared-{items}"), n_users=users, n_items=items, seed=0)
    run_dir = os.path.join(work, f"run-{items}")
    if not os.path.exists(os.path.join(run_dir, "weights.index")):
        train(TrainConfig(prepared=prepared, output=run_dir, epochs=1, steps_per_epoch=5, batch_size=256,
                          validation_max_users=50), verbose=0)
    return run_dir, prepared


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run folder written by `tfrs-selreg train`")
    source.add_argument("--synthetic-items", type=int, help="train a small run on a synthetic catalog of this size")
    p.add_argument("--synthetic-users", type=int, default=2000)
    p.add_argument("--work", default="/tmp/bench_eval", help="folder for the synthetic data and run")
    p.add_argument("--prepared", help="prepared folder, if not the run's")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    run_dir, prepared = args.run, args.prepared
    if args.synthetic_items:
        run_dir, prepared = _synthetic_run(args.work, args.synthetic_items, args.synthetic_users)
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {"with diagnostics": [], "without diagnostics": [],
                                     "diagnostics from the split": []}
    result = {}
    config, model = load_run(run_dir, prepared)
    for _ in range(args.repeats):
        times["with diagnostics"].append(_seconds(
            lambda: result.update(evaluate(run_dir, "test", prepared_dir=prepared))))
        times["without diagnostics"].append(_seconds(
            lambda: evaluate(run_dir, "test", prepared_dir=prepared, with_diagnostics=False)))
        times["diagnostics from the split"].append(_seconds(
            lambda: pair_diagnostics(model, prepared or config.prepared)))
    users = result["overall"]["users"]
    command = [os.path.join(os.path.dirname(sys.executable), "tfrs-selreg"), "evaluate", "--run", run_dir]
    if prepared:
        command += ["--prepared", prepared]
    cli = _seconds(lambda: subprocess.run(command, check=True, capture_output=True))
    import_only = _seconds(lambda: subprocess.run([sys.executable, "-c", IMPORT_ONLY], check=True,
                                                  capture_output=True))
    load_after = os.getloadavg()[0]

    print(f"{run_dir}: {users} test users; load average {load_before:.2f} before, {load_after:.2f} after")
    for name, values in times.items():
        seconds = statistics.median(values)
        what = name if name.startswith("diagnostics") else f"evaluate {name}"
        print(f"{what:<30} {seconds:7.2f} s  {1e3 * seconds / users:8.3f} ms/user  (median of {len(values)})")
    own = cli - import_only
    verdict = ("(the target is for ML-1M)" if args.synthetic_items else
               f"(target on ML-1M < {TARGET_CLI_SECONDS:.0f} s): {'met' if own < TARGET_CLI_SECONDS else 'NOT met'}")
    print(f"CLI `tfrs-selreg evaluate`: {cli:.2f} s in a fresh process; import alone {import_only:.2f} s; "
          f"the command's own time {own:.2f} s {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
