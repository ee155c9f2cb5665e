"""The ``tfrs-selreg`` console script dispatches to the stages."""

import os
import subprocess
import sys

import pytest

from tests.beam.test_prepare import _write_csv
from tfrs_selreg import cli

# The README's commands: written out, not read from cli.COMMANDS, so a lost command fails here.
COMMANDS = ("prepare", "score", "train", "evaluate", "export", "run", "experiment")


def test_console_script_lists_commands():
    script = os.path.join(os.path.dirname(sys.executable), "tfrs-selreg")
    out = subprocess.run([script, "--help"], capture_output=True, text=True, check=True).stdout
    listed = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
    assert listed == list(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_reaches_its_own_parser(command, capsys):
    try:
        code = cli.main([command, "--help"])
    except SystemExit as e:  # argparse's --help
        code = e.code
    assert code == 0 and "--help" in capsys.readouterr().out


def test_unknown_command_is_an_error(capsys):
    assert cli.main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


def test_prepare_help_lists_job_flags(capsys):
    assert cli.main(["prepare", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--cold-start-fraction" in out and "--labels" in out


def test_prepare_through_the_cli(tmp_path, capsys):
    raw = _write_csv(tmp_path / "raw")
    assert cli.main(["prepare", "--dataset", "csv", "--data-dir", raw, "--output", str(tmp_path / "out"),
                     "--runner", "DirectRunner"]) == 0
    assert "interactions: train 7, val 2, test 3" in capsys.readouterr().out
    assert cli.main(["prepare", "--dataset", "csv", "--data-dir", str(tmp_path / "missing"),
                     "--output", str(tmp_path / "out2")]) == 1
    assert "interactions.csv" in capsys.readouterr().err


BAD_NUMBERS = [
    ("prepare", "--temporal-val-fraction", "-0.5"), ("prepare", "--temporal-test-fraction", "1"),
    ("prepare", "--long-tail-fraction", "1.5"), ("prepare", "--cold-start-fraction", "-0.1"),
    ("prepare", "--history-length", "0"), ("prepare", "--cold-start-max-history", "-1"),
    ("prepare", "--teacher-pairs", "-2"), ("prepare", "--probe-pairs", "-1"),
    ("prepare", "--max-error-fraction", "2"), ("prepare", "--num-shards", "0"), ("prepare", "--min-rating", "nan"),
    ("score", "--max-users", "0"), ("score", "--context-length", "0"), ("score", "--num-candidates", "1"),
    ("score", "--uniform-mix", "1.1"), ("score", "--pairs-per-user", "-1"), ("score", "--timeout", "0"),
    ("score", "--concurrency", "0"), ("score", "--batch-size", "0"), ("score", "--progress-every", "0"),
    ("train", "--batch-size", "0"), ("train", "--epochs", "0"), ("train", "--learning-rate", "-1e-3"),
    ("train", "--teacher-lambda", "-0.1"), ("train", "--embedding-dim", "0"), ("train", "--steps-per-epoch", "0"),
    ("train", "--validation-max-users", "0"), ("train", "--early-stopping-patience", "-1"),
    ("evaluate", "--batch-users", "0"), ("evaluate", "--max-diagnostic-examples", "0"),
    ("export", "--k", "0"), ("train", "--batch-size", "many"),
]


@pytest.mark.parametrize(("command", "flag", "value"), BAD_NUMBERS)
def test_every_numeric_flag_is_range_checked_before_anything_runs(tmp_path, capsys, command, flag, value):
    """Exit 2 with a message that names the flag; nothing is written to the output folder."""
    out = tmp_path / "out"
    required = {"prepare": ["--dataset", "ml-latest-small", "--output", str(out), "--runner", "DirectRunner"],
                "score": ["--prepared", str(tmp_path), "--output", str(out), "--runner", "DirectRunner"],
                "train": ["--prepared", str(tmp_path), "--output", str(out)],
                "evaluate": ["--run", str(out)], "export": ["--run", str(out), "--model-name", "m"]}[command]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, *required, f"{flag}={value}"])
    assert exit_info.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err
    assert not out.exists()


def test_temporal_fractions_must_leave_a_training_split(tmp_path, capsys):
    raw = _write_csv(tmp_path / "raw")
    assert cli.main(["prepare", "--dataset", "csv", "--data-dir", raw, "--output", str(tmp_path / "out"),
                     "--split", "temporal", "--temporal-val-fraction", "0.5", "--temporal-test-fraction", "0.5",
                     "--runner", "DirectRunner"]) == 1
    assert "must be < 1: the rest is the training split" in capsys.readouterr().err
