"""The ``tfrs-selreg`` console script dispatches to the stages."""

import os
import subprocess
import sys

from tests.beam.test_prepare import _write_csv
from tfrs_selreg import cli


def test_console_script_lists_commands():
    script = os.path.join(os.path.dirname(sys.executable), "tfrs-selreg")
    out = subprocess.run([script, "--help"], capture_output=True, text=True, check=True).stdout
    for command in cli.COMMANDS:
        assert command in out


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
