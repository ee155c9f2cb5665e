"""Shared test set-up: Keras 2 for TFRS, the shared datasets, and small helpers."""

import os
import pathlib
import shutil
import subprocess
import sys

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


def _copy_of_the_sources(destination: pathlib.Path) -> pathlib.Path:
    """What a clone holds: the repository without virtualenvs, build outputs and caches."""
    ignore = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "build", "dist", "runs", "out", "__pycache__",
                                    ".pytest_cache", "saved_models")
    return pathlib.Path(shutil.copytree(REPO_ROOT, destination, ignore=ignore))


@pytest.fixture(scope="session")
def installed_sdist(tmp_path_factory) -> pathlib.Path:
    """The Python of a fresh virtualenv holding this package's sdist and nothing else of this repository.

    The dependencies come from the test's own environment, added as a plain path: ``.pth`` files there are
    not processed, so the editable install of the repository is not visible.
    """
    root = tmp_path_factory.mktemp("sdist")
    sources = _copy_of_the_sources(root / "src")
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(root / "dist")], cwd=sources,
                   check=True, capture_output=True)
    (sdist,) = (root / "dist").glob("tfrs_selreg-*.tar.gz")
    venv = root / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)],
                   check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    dependencies = [p for p in sys.path if p.endswith("site-packages")]
    pathlib.Path(site, "dependencies.pth").write_text("\n".join(dependencies) + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    str(sdist)], check=True, capture_output=True, cwd=root)
    return python


@pytest.fixture(scope="session")
def bundled_prepared(installed_sdist, tmp_path_factory) -> str:
    """The bundled ml-latest-small with 20 % simulated cold-start users (two shards), prepared by
    ``python -m beam_pipelines.prepare`` of the installed sdist (``tests/test_sdist.py`` checks where from)."""
    root = tmp_path_factory.mktemp("bundled")
    out = str(root / "ml")
    subprocess.run([installed_sdist, "-m", "beam_pipelines.prepare", "--dataset", "ml-latest-small", "--output",
                    out, "--runner", "DirectRunner", "--cold-start-fraction", "0.2"], cwd=root, check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    return out


@pytest.fixture(scope="session")
def movielens_prepared(tmp_path_factory) -> str:
    """The first 12 users of the bundled ml-latest-small and the 1,004 movies they rated."""
    from tests.teachers.conftest import BUNDLED, movielens_slice, write_prepared

    if not (BUNDLED / "ratings.csv").exists():
        pytest.skip(f"{BUNDLED} is absent: the bundled MovieLens copy is not installed")
    items, users = movielens_slice(max_user=12)
    return write_prepared(str(tmp_path_factory.mktemp("ml_slice")), items, users)


MOVIELENS_SCORE_ARGS = ("--teacher", "embedding", "--long-tail-users-per-item", "1", "--probes-per-user", "4",
                        "--seed", "5", "--runner", "DirectRunner")  # 2 worker processes: tests/beam/test_gcs.py


@pytest.fixture(scope="session")
def movielens_scored(movielens_prepared, tmp_path_factory) -> tuple[str, dict]:
    """``(labels folder, manifest)`` of a real embedding-teacher ``score`` of :func:`movielens_prepared`."""
    pytest.importorskip("sentence_transformers")
    from beam_pipelines import score as score_job

    out = str(tmp_path_factory.mktemp("ml_slice_scored") / "scored")
    manifest = score_job.run(["--prepared", movielens_prepared, "--output", out, *MOVIELENS_SCORE_ARGS],
                             save_main_session=False)
    return out, manifest
