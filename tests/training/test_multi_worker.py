"""``MultiWorkerMirroredStrategy`` on two local worker processes (``TF_CONFIG`` on 127.0.0.1, free ports):
both workers train on their share of the batches and end with identical weights.
"""

import json
import socket
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from tests.synthetic import make_prepared
from tests.training.processes import REPO, TRAIN, epochs
from tests.training.processes import env as train_env
from tfrs_selreg.runs import folder as run_lib


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(str(tmp_path_factory.mktemp("prepared")), n_users=40, n_items=60, seed=4)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _weights(prefix):
    reader = tf.train.load_checkpoint(prefix)
    names = sorted(n for n in reader.get_variable_to_shape_map()
                   if "OPTIMIZER_SLOT" not in n and "save_counter" not in n)
    return {n: reader.get_tensor(n) for n in names}


def test_multi_worker_mirrored_workers_agree(prepared, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    run_dir = tmp_path / "run"
    args = TRAIN + ["--prepared", prepared, "--output", str(run_dir), "--backbone", "two_tower",
                    "--gate", "reliability", "--strategy", "multi_worker", "--epochs", "2", "--steps-per-epoch", "3",
                    "--batch-size", "32", "--embedding-dim", "8", "--verbose", "0"]
    workers = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=train_env(
        TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))) for i in range(2)]
    try:
        outputs = [w.communicate(timeout=300) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, (_, err) in zip(workers, outputs):
        assert w.returncode == 0, err.decode()[-3000:]

    chief = _weights(str(run_dir / run_lib.WEIGHTS))
    other = _weights(str(run_dir / "worker-1" / run_lib.WEIGHTS))
    assert chief.keys() == other.keys() and len(chief) > 5
    for name in chief:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    assert epochs(run_dir / run_lib.HISTORY_FILE) == epochs(run_dir / "worker-1" / run_lib.HISTORY_FILE) == [1, 2]
