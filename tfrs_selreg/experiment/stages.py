"""Cached stages for ``tfrs-selreg run`` and ``tfrs-selreg experiment``: a re-run computes only what changed.

A stage is one subcommand's ``main(argv)`` with the exact argument list a user would type. Next to its
outputs (in the folder of its *done file*, the file the stage writes last) it leaves a record
``stage-COMMAND.json``::

    {"command": "train", "argv": [...], "status": "running" | "done", "stamp": "<random hex>",
     "inputs": {"<upstream record path>": "<its stamp>", ...}, "produced": <done file mtime>,
     "seconds": <wall time>}

A stage is skipped only when its done file exists, its record says ``done``, the command is the same
and the stamps of the stages it reads from are the same. "The same command" compares configs where the
stage has one: a stage with a ``config_file`` (``prepare_config.json`` of a prepared folder, a run's
``config.json``) is the same when the config its argv resolves to (the ``ConfigResolver``) equals that
file, so a reordered argv, a default written out, a Beam runner flag or an unchanged ``--config`` file
redo nothing, while an edited ``--config`` file does; other stages compare argv. A redone stage (a new
stamp) redoes every stage downstream of it, in this invocation or a later one; a done file without a
record is redone too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import time
import uuid
from typing import Any, Callable, Optional, Sequence

from tfrs_selreg.typed_config import changed_fields

# (command, argv) -> exit code: how a stage runs a ``tfrs-selreg`` subcommand (the CLI passes its dispatch).
CommandRunner = Callable[[str, list[str]], int]
# (command, argv) -> the config the subcommand would write for argv, or None where it has none.
ConfigResolver = Callable[[str, list[str]], Optional[dict]]

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
      on_done: called after the stage ran successfully (e.g. to write a marker that is the done file).
      record: the record's name when one folder holds several stages of the same command (default:
        ``command``), e.g. the evaluations of two splits of one run.
      config_file: the output holding the resolved config the stage ran with (compared instead of argv).
    """

    title: str
    command: str
    argv: list[str]
    done_file: str
    fn: Callable[[list[str]], Any]
    after: Sequence["Stage"] = ()
    on_done: Optional[Callable[[], None]] = None
    record: Optional[str] = None
    config_file: Optional[str] = None

    @property
    def record_path(self) -> str:
        return os.path.join(os.path.dirname(self.done_file), f"{RECORD_PREFIX}{self.record or self.command}.json")

    @property
    def shell(self) -> str:
        """The stage as a shell command."""
        return shlex.join(["tfrs-selreg", self.command, *self.argv])


def _fs():
    """Beam's file systems (records sit next to outputs that may be on gs://); imported when first used,
    so planning stays free of Beam."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def read_record(path: str) -> Optional[dict[str, Any]]:
    """The stage record at ``path``; ``None`` when absent or unreadable (e.g. half written)."""
    try:
        with _fs().open(path) as f:
            record = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_record(path: str, record: dict[str, Any]) -> None:
    fs = _fs()
    tmp = path + ".tmp"
    with fs.create(tmp) as f:  # then renamed over the old one (os.rename locally): never half a record
        f.write((json.dumps(record, indent=1) + "\n").encode("utf-8"))
    fs.rename([tmp], [path])


class StageRunner:
    """Runs stages unless their outputs are done for the same argv and inputs; records every command.

    Args:
      force: run every stage, whatever its record says.
      prefix: the progress line prefix.
      resolve: the configs of stages with a ``config_file`` (``None``: compare argv everywhere).
    """

    def __init__(self, force: bool = False, prefix: str = "[run]", resolve: Optional[ConfigResolver] = None):
        self.force = force
        self.prefix = prefix
        self.resolve = resolve
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
        if not _fs().exists(stage.done_file):
            return "the last attempt did not finish" if read_record(stage.record_path) else NOT_DONE
        record = read_record(stage.record_path)
        if record is None:
            return "no stage record"
        if record.get("status") != STATUS_DONE:
            return "the last attempt did not finish"
        changed = self._config_changes(stage)
        if changed:
            return f"config changed: {', '.join(changed)} ({os.path.basename(stage.config_file or '')})"
        if changed is None and record.get("argv") != list(stage.argv):
            return f"command changed (was: {shlex.join(['tfrs-selreg', stage.command, *record.get('argv', [])])})"
        inputs = self._inputs(stage)
        changed = [path for path, stamp in inputs.items() if record.get("inputs", {}).get(path) != stamp]
        if changed:
            return "input redone since: " + ", ".join(os.path.dirname(p) for p in changed)
        return None

    def _config_changes(self, stage: Stage) -> Optional[list[str]]:
        """The fields where the stage's saved config and the one its argv resolves to differ; ``None``
        when there is nothing to compare (no resolver, no config file, or an argv the command rejects)."""
        if self.resolve is None or stage.config_file is None or not _fs().exists(stage.config_file):
            return None
        try:
            new = self.resolve(stage.command, list(stage.argv))
            with _fs().open(stage.config_file) as f:
                saved = json.loads(f.read().decode("utf-8"))
        except (Exception, SystemExit):  # noqa: BLE001  (argparse exits; the stage will report the error)
            return None
        if new is None or not isinstance(saved, dict):
            return None
        return changed_fields(saved, new)

    def run(self, stage: Stage) -> bool:
        """Runs ``stage`` unless it is done for this argv and inputs; returns whether it ran.

        Raises ``RuntimeError`` when the stage fails (a non-zero exit code).
        """
        self.commands.append(stage.shell)
        reason = self.why_not_done(stage)
        if reason is None:
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
        if not _fs().exists(stage.done_file):
            raise RuntimeError(f"stage {stage.title!r} exited 0 but did not write {stage.done_file}")
        record.update(status=STATUS_DONE, produced=_fs().last_updated(stage.done_file), seconds=round(seconds, 3))
        _write_record(stage.record_path, record)
        self.ran.append(stage.title)
        self._say(stage.title, f"finished in {seconds:.0f} s")
        return True


def flags(args: dict[str, Any]) -> list[str]:
    """``{"epochs": 3, "set": ["a=1", "b=2"]}`` -> ``--epochs 3 --set a=1 --set b=2`` (a list repeats the flag;
    ``True``/``False`` give ``--key``/``--no-key``; ``None`` leaves the flag out)."""
    out: list[str] = []
    for key, value in args.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is None:
                continue
            if isinstance(item, bool):
                out.append(f"--{key}" if item else f"--no-{key}")
            else:
                out += [f"--{key}", str(item)]
    return out
