"""Fault tolerance with real processes: a training process is killed (SIGKILL) after some epochs, and
the same command started again resumes from ``BackupAndRestore``'s backup instead of epoch 0.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from tests.synthetic import make_prepared
from tests.training.processes import REPO, TRAIN, epochs
from tests.training.processes import env as train_env
from tfrs_selreg.runs import folder as run_lib


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(str(tmp_path_factory.mktemp("prepared")), n_users=40, n_items=60, seed=4)


def test_killed_run_resumes_from_its_backup(prepared, tmp_path):
    run_dir = tmp_path / "run"
    args = TRAIN + ["--prepared", prepared, "--output", str(run_dir), "--backbone", "two_tower", "--gate", "none",
                    "--epochs", "10", "--steps-per-epoch", "15", "--batch-size", "32", "--embedding-dim", "8",
                    "--early-stopping-patience", "100", "--verbose", "2"]
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(args, env=train_env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while len(epochs(run_dir / run_lib.HISTORY_FILE)) < 2:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "the first run did not finish two epochs in time"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed_after = epochs(run_dir / run_lib.HISTORY_FILE)
    assert len(killed_after) < 10, "the first run finished before it was killed; slow it down"
    assert os.listdir(run_dir / run_lib.BACKUP_DIR)

    second = subprocess.run(args, check=False, env=train_env(), cwd=REPO, capture_output=True, timeout=300)
    assert second.returncode == 0, second.stderr.decode()[-3000:]
    with open(run_dir / run_lib.RUN_FILE) as f:
        result = json.load(f)
    assert result["first_epoch"] >= len(killed_after) + 1 > 1
    assert f"Epoch {result['first_epoch']}/10" in second.stdout.decode()
    assert "Epoch 1/10" not in second.stdout.decode()
    assert epochs(run_dir / run_lib.HISTORY_FILE) == list(range(1, 11))
    assert result["epochs_completed"] == 10
