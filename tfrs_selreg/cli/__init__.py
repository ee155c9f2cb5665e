"""The ``tfrs-selreg`` command: one subcommand per stage of the flow.

    prepare   raw data (+ teacher labels) -> TFRecords            (beam_pipelines.prepare)
    score     offline teacher scoring -> pairwise label rows       (beam_pipelines.score)
    train     model.fit of a backbone with a gate mode             (tfrs_selreg.training.train)
    evaluate  sliced full-ranking metrics of a run                 (tfrs_selreg.evaluation.evaluate)
    export    SavedModel for TF Serving                            (tfrs_selreg.export)
    run       the whole flow end to end                            (tfrs_selreg.cli.run)
    experiment  backbones x methods x seeds -> results.md/csv      (tfrs_selreg.cli.experiment)

Each subcommand forwards its arguments to the stage's own ``main(argv)``, so
``tfrs-selreg prepare --help`` and ``python -m beam_pipelines.prepare --help`` show the same flags.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional

import tfrs_selreg  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

# subcommand -> (module, what it does)
COMMANDS = {
    "prepare": ("beam_pipelines.prepare", "raw data (+ teacher labels) -> split TFRecords"),
    "score": ("beam_pipelines.score", "offline teacher scoring -> pairwise label rows"),
    "train": ("tfrs_selreg.training.train", "train a backbone with a gate mode (model.fit)"),
    "evaluate": ("tfrs_selreg.evaluation.evaluate", "full-ranking metrics by segment"),
    "export": ("tfrs_selreg.export.exporter", "SavedModel for TF Serving"),
    "run": ("tfrs_selreg.cli.run", "the whole flow end to end on one dataset"),
    "experiment": ("tfrs_selreg.cli.experiment", "backbones x methods x seeds on one dataset -> tables"),
}


def _usage() -> str:
    lines = ["usage: tfrs-selreg COMMAND [options]   (tfrs-selreg COMMAND --help for its flags)", ""]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"tfrs-selreg: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return run_command(command, rest)


def run_command(command: str, argv: list[str]) -> int:
    """Runs subcommand ``command`` with ``argv``; its exit code (the stages' ``CommandRunner``)."""
    return int(importlib.import_module(COMMANDS[command][0]).main(argv) or 0)


def resolve_config(command: str, argv: list[str]) -> Optional[dict]:
    """The config that subcommand ``command`` would write for ``argv`` (its module's ``resolve_config``), or
    ``None`` for a command without one (the stages' ``ConfigResolver``)."""
    resolve = getattr(importlib.import_module(COMMANDS[command][0]), "resolve_config", None)
    return None if resolve is None else resolve(argv)


if __name__ == "__main__":
    sys.exit(main())
