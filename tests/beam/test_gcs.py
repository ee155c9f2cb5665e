"""The Beam jobs with every input and output on ``gs://``, served by a GCS-protocol server on 127.0.0.1.

The storage server is ``gcp-storage-emulator`` (in memory, in this process; Beam's ``gcsio`` reaches it
through ``STORAGE_EMULATOR_HOST``). ``fake-gcs-server`` was tried first: it does not implement the JSON
API's batch requests, which Beam uses to rename and delete. Beam asks ``google.auth`` for credentials,
so the test writes a service-account key whose ``token_uri`` is a token endpoint on loopback (the one
piece that stands in for Google: it hands out a token the storage server never checks).

TensorFlow's own GCS file system cannot be pointed at the local server: ``gcs_file_system.cc`` of
TensorFlow 2.21 has ``https://www.googleapis.com`` built in with no endpoint override (only the token
can be injected, ``GOOGLE_AUTH_TOKEN_FOR_TESTING``), so ``train`` and ``evaluate`` on ``gs://`` are not
run here.
"""

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("apache_beam.io.gcp.gcsio", reason="needs apache-beam[gcp]")
emulator = pytest.importorskip("gcp_storage_emulator.server", reason="needs gcp-storage-emulator")

from apache_beam.io.filesystems import FileSystems  # noqa: E402

from beam_pipelines import prepare  # noqa: E402
from tfrs_selreg.data.prepared import PreparedData  # noqa: E402

BUCKET = "tfrs-selreg-test"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BEAM = ["--runner", "DirectRunner", "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]


class _Token(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"access_token": "loopback", "expires_in": 3600, "token_type": "Bearer"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """``STORAGE_EMULATOR_HOST`` and credentials set for this process and the workers it starts."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    tokens = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Token)
    threading.Thread(target=tokens.serve_forever, daemon=True).start()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    credentials = tmp_path_factory.mktemp("gcs") / "service-account.json"
    credentials.write_text(json.dumps({
        "type": "service_account", "project_id": "test", "private_key_id": "k", "private_key": key,
        "client_email": "test@test.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": f"http://127.0.0.1:{tokens.server_port}/token"}))
    port = _free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}", "GOOGLE_APPLICATION_CREDENTIALS": str(credentials)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()
    tokens.shutdown()


def _write_raw(target: str, n_users: int = 30, n_items: int = 60) -> int:
    """A small ``csv`` dataset on ``target``: users rate items of a preferred block; returns the rows."""
    rng = np.random.default_rng(0)
    rows = ["user_id,item_id,timestamp,rating"]
    for u in range(n_users):
        picks = rng.choice([k for k in range(n_items) if k % 3 == u % 3], size=int(rng.integers(4, 12)), replace=False)
        rows += [f"u{u},i{k},{1000 + 10 * t},4" for t, k in enumerate(picks)]
    kinds = ["Space opera", "Kitchen knife", "Garden hose"]
    files = {"interactions.csv": "\n".join(rows) + "\n",
             "items.csv": "item_id,title,categories\n" + "".join(
                 f"i{k},{kinds[k % 3]} {k},G{k % 3}\n" for k in range(n_items))}
    for name, text in files.items():
        with FileSystems.create(f"{target}/{name}") as f:
            f.write(text.encode("utf-8"))
    return len(rows) - 1


def _objects(pattern: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def _score(argv: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "beam_pipelines.score", *argv], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def test_prepare_score_kill_resume_and_join_on_gs(gcs):
    raw, base, labels, joined = (f"gs://{BUCKET}/{name}" for name in ("raw", "prepared-base", "labels", "prepared"))
    rows = _write_raw(raw)
    data = ["--dataset", "csv", "--data-dir", raw, "--history-length", "3", "--num-shards", "1"]
    stats = prepare.run([*data, "--output", base, "--read-range-bytes", "256", *BEAM])
    assert len(stats.rows_read_by_worker) == 2  # the one interactions file, read by both workers
    assert stats.rows_read["interactions"] == rows and stats.interactions["test"] == 30
    assert len(PreparedData(base).users()) == 30

    # Killed on 2 worker processes, resumed on 1: either way no finished prompt is scored again.
    score = ["--prepared", base, "--teacher", "embedding", "--output", labels, "--num-candidates", "6",
             "--popular-pool", "30", "--long-tail-users-per-item", "0", "--batch-size", "4", *BEAM]
    killed = _score(score, gcs)
    deadline = time.time() + 240
    while not _objects(f"{labels}/cache/shard-*.jsonl") and killed.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    cached = sum(FileSystems.open(p).read().count(b"\n") for p in _objects(f"{labels}/cache/shard-*.jsonl"))
    assert cached > 0 and not FileSystems.exists(f"{labels}/manifest.json")  # killed before it finished

    resumed = _score(score[:-4], gcs)  # on one worker: the cache is the job's, whatever the workers
    assert resumed.wait(timeout=600) == 0
    with FileSystems.open(f"{labels}/manifest.json") as f:
        counts = json.loads(f.read())["counts"]
    assert counts["cache_hits"] == cached and counts["prompts_scored"] == counts["prompts"] - cached
    assert counts["model_calls"] == counts["prompts_scored"]  # one call per prompt: none repeated

    joined_stats = prepare.run([*data, "--output", joined, "--labels", labels, *BEAM])
    assert joined_stats.labels.joined_teacher_rows > 0 and joined_stats.labels.rejected == {}
    assert FileSystems.exists(f"{joined}/item_embeddings/info.json")
