"""Helpers of the real-model teacher tests: a local ``llama_cpp.server`` and small MovieLens requests.

:func:`llama_server` starts ``python -m llama_cpp.server --model GGUF --host 127.0.0.1 --port PORT``
on a free loopback port, waits until ``GET /v1/models`` answers, yields the ``/v1`` base URL and
stops the process (its log is attached to the error when it does not come up).
:func:`movielens_requests` builds a few :class:`ScoringRequest` objects from the bundled MovieLens
latest-small files: a user's last liked movies as context, the next liked movie as the known positive
of a probe pair and popular unseen movies as negatives and candidates.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import os
import pathlib
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import requests

from tfrs_selreg.data import schema
from tfrs_selreg.data.prepared import Item
from tfrs_selreg.teachers.base import PairSpec, ScoringRequest

BUNDLED = pathlib.Path(__file__).resolve().parents[2] / "tfrs_selreg" / "data" / "bundled" / "ml-latest-small"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(model_path: str, *, n_ctx: int = 2048, n_threads: int = 2,
                 startup_timeout: float = 120.0) -> Iterator[str]:
    """Runs ``llama_cpp.server`` on ``model_path``; yields its base URL ``http://127.0.0.1:PORT/v1``."""
    port = free_port()
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(n_threads),
             "--model_alias", "smollm2"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}:\n{_tail(log)}")
                try:
                    if requests.get(f"{base_url}/models", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server not ready after {startup_timeout} s:\n{_tail(log)}")
                time.sleep(0.2)
            yield base_url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _tail(log, chars: int = 3000) -> str:
    log.seek(0)
    return log.read()[-chars:]


def movielens_items() -> dict[str, Item]:
    """Items of the bundled ``movies.csv``: title (with year) and genres."""
    items = {}
    with open(BUNDLED / "movies.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            genres = () if row["genres"] == "(no genres listed)" else tuple(row["genres"].split("|"))
            items[row["movieId"]] = Item(item_id=row["movieId"], title=row["title"], categories=genres)
    return items


def movielens_requests(n_users: int, *, n_candidates: int = 4, context_length: int = 10,
                       seed: int = 0) -> list[ScoringRequest]:
    """``n_users`` requests, each with one probe pair and one teacher pair.

    Context: the user's ``context_length`` liked movies (rating >= 4) before the last one, oldest
    first. Candidates: the last liked movie (the probe positive, held out of the context) and
    ``n_candidates - 1`` popular movies the user never rated, shuffled. Pairs: the probe
    ``(positive, first negative)`` with truth 1, and a teacher pair of the two first negatives.
    """
    items = movielens_items()
    liked, rated, popularity = collections.defaultdict(list), collections.defaultdict(set), collections.Counter()
    with open(BUNDLED / "ratings.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            popularity[row["movieId"]] += 1
            rated[row["userId"]].add(row["movieId"])
            if float(row["rating"]) >= 4.0:
                liked[row["userId"]].append((int(row["timestamp"]), row["movieId"]))
    popular = [m for m, _ in popularity.most_common(200)]
    rng = random.Random(seed)
    requests_ = []
    for user_id in rng.sample(sorted(u for u in liked if len(liked[u]) > context_length), n_users):
        history = [m for _, m in sorted(liked[user_id])]
        positive, context = history[-1], history[-1 - context_length:-1]
        negatives = rng.sample([m for m in popular if m not in rated[user_id]], n_candidates - 1)
        candidates = [positive] + negatives
        rng.shuffle(candidates)
        requests_.append(ScoringRequest(
            user_id=user_id,
            context=tuple(items[m] for m in context),
            candidates=tuple(items[m] for m in candidates),
            pairs=(PairSpec(positive, negatives[0], schema.KIND_PROBE, truth=1),
                   PairSpec(negatives[0], negatives[1], schema.KIND_TEACHER)),
            segment="probe"))
    return requests_
