"""Helpers for tests that train in real subprocesses (resume after kill, multi-worker)."""

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = [sys.executable, "-m", "tfrs_selreg.training.train"]


def env(**extra):
    """The test process's environment for a training subprocess, without any inherited TF_CONFIG."""
    out = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    out.update(PYTHONPATH=REPO, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return out


def epochs(history_path):
    """Epochs recorded in a run's history.json so far ([] while it does not exist or is mid-write)."""
    try:
        with open(history_path) as f:
            return [e["epoch"] for e in json.load(f)]
    except (OSError, ValueError):
        return []
