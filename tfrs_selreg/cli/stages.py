"""Cached stages for ``tfrs-selreg run`` and ``tfrs-selreg experiment``: a re-run computes only what changed.

A stage is one subcommand's ``main(argv)`` with the exact argument list a user would type. Next to its
outputs (in the folder of its *done file*, the file the stage writes last) it leaves a record
``stage-COMMAND.json``::

    {"command": "train", "argv": [...], "status": "running" | "done", "stamp": "<random hex>",
     "inputs": {"<upstream record path>": "<its stamp>", ...}, "produced": <done file mtime>,
     "seconds": <wall time>}

A stage is skipped only when its done file exists and its record says ``done`` with the same argv and
the same stamps of the stages it reads from. A changed command therefore redoes the stage, and a
redone stage (a new stamp) redoes every stage downstream of it, in this invocation or a later one.

Outputs written before these records existed (a done file but no record) are adopted, without running
the stage again, only when the stage's ``adopt`` check finds that the outputs were made by this argv
(e.g. a run's ``config.json`` equals the config the train argv resolves to) and that they are newer
than the outputs of every upstream stage.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import time
import uuid
from typing import Any, Callable, Optional, Sequence

RECORD_PREFIX = "stage-"
STATUS_RUNNING = "running"
STATUS_DONE = "done"
NOT_DONE = "not done yet"


@dataclasses.dataclass
class Stage:
    """One step: ``fn(argv)`` (a subcommand's ``main``) writes ``done_file`` last when it succeeds.

    Attributes:
      title: progress name, e.g. ``train reliability seed 0``.
      command: the ``tfrs-selreg`` subcommand (names the record file).
      argv: the exact argument list.
      done_file: the stage's last output; its folder holds the record.
      fn: ``main(argv) -> exit code``.
      after: the stages whose outputs this one reads.
      adopt: ``adopt(argv, done_file) -> bool``: whether outputs without a record were made by ``argv``.
      on_done: called after the stage ran successfully (e.g. to write a marker that is the done file).
      record: the record's name when one folder holds several stages of the same command (default:
        ``command``), e.g. the evaluations of two splits of one run.
    """

    title: str
    command: str
    argv: list[str]
    done_file: str
    fn: Callable[[list[str]], Any]
    after: Sequence["Stage"] = ()
    adopt: Optional[Callable[[list[str], str], bool]] = None
    on_done: Optional[Callable[[], None]] = None
    record: Optional[str] = None

    @property
    def record_path(self) -> str:
        return os.path.join(os.path.dirname(self.done_file), f"{RECORD_PREFIX}{self.record or self.command}.json")

    @property
    def shell(self) -> str:
        """The stage as a shell command."""
        return shlex.join(["tfrs-selreg", self.command, *self.argv])


def read_record(path: str) -> Optional[dict[str, Any]]:
    """The stage record at ``path``; ``None`` when absent or unreadable (e.g. half written)."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_record(path: str, record: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


class StageRunner:
    """Runs stages unless their outputs are done for the same argv and inputs; records every command.

    Args:
      force: run every stage, whatever its record says.
      prefix: the progress line prefix.
    """

    def __init__(self, force: bool = False, prefix: str = "[run]"):
        self.force = force
        self.prefix = prefix
        self.commands: list[str] = []
        self.timings: dict[str, float] = {}
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def _say(self, title: str, text: str) -> None:
        print(f"{self.prefix} {title}: {text}", flush=True)

    @staticmethod
    def _inputs(stage: Stage) -> dict[str, Optional[str]]:
        return {up.record_path: (read_record(up.record_path) or {}).get("stamp") for up in stage.after}

    def why_not_done(self, stage: Stage) -> Optional[str]:
        """``None`` when ``stage`` can be skipped, else why it must run."""
        if self.force:
            return "--force"
        if not os.path.exists(stage.done_file):
            return "the last attempt did not finish" if read_record(stage.record_path) else NOT_DONE
        record = read_record(stage.record_path)
        if record is None:
            return "no stage record" if not self._adoptable(stage) else None
        if record.get("status") != STATUS_DONE:
            return "the last attempt did not finish"
        if record.get("argv") != list(stage.argv):
            return f"command changed (was: {shlex.join(['tfrs-selreg', stage.command, *record.get('argv', [])])})"
        inputs = self._inputs(stage)
        changed = [path for path, stamp in inputs.items() if record.get("inputs", {}).get(path) != stamp]
        if changed:
            return "input redone since: " + ", ".join(os.path.dirname(p) for p in changed)
        return None

    def _adoptable(self, stage: Stage) -> bool:
        """Outputs without a record (made before records existed): adopt when they match the argv."""
        if stage.adopt is None:
            return False
        produced = os.path.getmtime(stage.done_file)
        for up in stage.after:
            record = read_record(up.record_path)
            if record is None or record.get("status") != STATUS_DONE or record.get("produced", 0) > produced:
                return False
        try:
            return bool(stage.adopt(list(stage.argv), stage.done_file))
        except Exception:  # an unreadable old output is not adopted: the stage runs again
            return False

    def run(self, stage: Stage) -> bool:
        """Runs ``stage`` unless it is done for this argv and inputs; returns whether it ran.

        Raises ``RuntimeError`` when the stage fails (a non-zero exit code).
        """
        self.commands.append(stage.shell)
        reason = self.why_not_done(stage)
        if reason is None:
            if read_record(stage.record_path) is None:  # adopted legacy outputs
                _write_record(stage.record_path, {
                    "command": stage.command, "argv": list(stage.argv), "status": STATUS_DONE,
                    "stamp": uuid.uuid4().hex, "inputs": self._inputs(stage),
                    "produced": os.path.getmtime(stage.done_file), "seconds": None, "adopted": True})
                self._say(stage.title, f"done already ({stage.done_file}, made by this command before "
                                       "stage records existed), skipped")
            else:
                self._say(stage.title, f"done already ({stage.done_file}), skipped")
            self.skipped.append(stage.title)
            return False
        if reason != NOT_DONE:
            self._say(stage.title, f"redo: {reason}")
        self._say(stage.title, stage.shell)
        record = {"command": stage.command, "argv": list(stage.argv), "status": STATUS_RUNNING,
                  "stamp": uuid.uuid4().hex, "inputs": self._inputs(stage), "started": time.time()}
        _write_record(stage.record_path, record)
        start = time.perf_counter()
        code = stage.fn(list(stage.argv))
        seconds = time.perf_counter() - start
        self.timings[stage.title] = seconds
        if code:
            raise RuntimeError(f"stage {stage.title!r} failed (exit {code}); command: {stage.shell}")
        if stage.on_done is not None:
            stage.on_done()
        if not os.path.exists(stage.done_file):
            raise RuntimeError(f"stage {stage.title!r} exited 0 but did not write {stage.done_file}")
        record.update(status=STATUS_DONE, produced=os.path.getmtime(stage.done_file), seconds=round(seconds, 3))
        _write_record(stage.record_path, record)
        self.ran.append(stage.title)
        self._say(stage.title, f"finished in {seconds:.0f} s")
        return True


# --- adopt checks: do outputs made before stage records match an argv? ---------------------------------


def _same_json(a: Any, b: Any) -> bool:
    return json.loads(json.dumps(a, sort_keys=True)) == json.loads(json.dumps(b, sort_keys=True))


def prepare_outputs_match(argv: list[str], done_file: str) -> bool:
    """``stats.json`` of a prepared folder records the flags that shape it; compare them with ``argv``."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines import prepare

    labels, rest = prepare._labels_arg(argv)  # noqa: SLF001  (same project)
    o = PipelineOptions(rest).view_as(prepare.PrepareOptions)
    with open(os.path.join(os.path.dirname(done_file), "stats.json"), encoding="utf-8") as f:
        stats = json.load(f)
    t = stats.get("thresholds", {})
    expected = {
        "dataset": o.dataset, "seed": o.seed, "split": o.split, "min_rating": o.min_rating,
        "history_length": o.history_length, "teacher_pairs": o.teacher_pairs, "probe_pairs": o.probe_pairs,
        "num_shards": o.num_shards, "cold_start_max_history": o.cold_start_max_history,
        "long_tail_fraction": o.long_tail_fraction, "cold_start_fraction": o.cold_start_fraction,
    }
    actual = {k: t[k] if k in ("cold_start_max_history", "long_tail_fraction", "cold_start_fraction")
              else stats.get(k) for k in expected}
    if actual != expected or (o.data_dir is not None and stats.get("data_dir") != o.data_dir):
        return False
    files = (stats.get("labels") or {}).get("files") or []
    if labels is None:
        return not files
    return bool(files) and all(os.path.normpath(os.path.dirname(p)) == os.path.normpath(labels) for p in files)


def score_outputs_match(argv: list[str], done_file: str) -> bool:
    """``manifest.json`` holds the score job's resolved config; compare it with the one ``argv`` gives."""
    from beam_pipelines import score

    config = score.config_from_options(score.ScoreOptions(argv))
    with open(done_file, encoding="utf-8") as f:
        manifest = json.load(f)
    return _same_json(manifest.get("config"), config.to_json())


def train_main(argv: list[str]) -> int:
    """``tfrs-selreg train`` as a stage: a redone stage replaces the run its folder holds (``--overwrite``,
    not part of the recorded argv; a killed run of the same argv is still resumed)."""
    from tfrs_selreg.training import train

    return train.main([*argv, "--overwrite"])


def train_outputs_match(argv: list[str], done_file: str) -> bool:
    """``config.json`` of a run folder is the resolved TrainConfig; compare it with the one ``argv`` gives."""
    from tfrs_selreg.runs import config as config_lib
    from tfrs_selreg.runs import folder as run_lib
    from tfrs_selreg.training import train

    config = train.config_from_args(train._parser().parse_args(argv))  # noqa: SLF001
    saved = config_lib.load(os.path.join(os.path.dirname(done_file), run_lib.CONFIG_FILE))
    return _same_json(saved.to_json(), config.to_json())


def evaluate_outputs_match(argv: list[str], done_file: str) -> bool:
    """``metrics.json`` names the run folder and split it evaluated."""
    import argparse

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--run")
    p.add_argument("--split", default="test")
    args, _ = p.parse_known_args(argv)
    with open(done_file, encoding="utf-8") as f:
        metrics = json.load(f)
    return metrics.get("run") == args.run and metrics.get("split") == args.split


def marker_matches(argv: list[str], done_file: str) -> bool:
    """A marker file records nothing more; its upstream stages' freshness is checked by the runner."""
    return True
