"""Shared test set-up: Keras 2 for TFRS, the shared datasets, and small helpers."""

import os
import pathlib

# Must happen before TensorFlow is first imported anywhere in the test session.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_dataset(name: str) -> pathlib.Path:
    """Path of a dataset under ../shared/data; skips (never in CI) when the folder is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        if os.environ.get("CI"):
            raise FileNotFoundError(f"{path} is missing; CI must have ../shared/data next to the clone")
        pytest.skip(f"{path} is absent: integration tests need ../shared/data next to the repository")
    return path
