"""``tf.distribute`` strategies by name, and which worker this process is.

- ``default``: one device (``tf.distribute.get_strategy()``).
- ``mirrored``: synchronous data parallelism over the local GPUs (``MirroredStrategy``).
- ``multi_worker``: synchronous data parallelism over processes (``MultiWorkerMirroredStrategy``),
  configured by the ``TF_CONFIG`` environment variable. It must be created before any other TensorFlow
  op runs in the process.

Every worker runs the same ``fit``; gradients are all-reduced, so all workers hold the same weights.
Files each worker writes on its own (config, logs, final weights) go to the run folder for the chief
and to ``RUN_DIR/worker-N`` for the others; the backup and checkpoints are shared and Keras lets only
the chief write them.
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf

from tfrs_selreg.runs.config import STRATEGIES


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    task_type: str
    task_id: int
    is_chief: bool


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multi_worker needs the TF_CONFIG environment variable "
                             '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                             '"task": {"type": "worker", "index": 0}}).')
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; use one of {STRATEGIES}.")


def worker_info(strategy: tf.distribute.Strategy) -> WorkerInfo:
    """This process's role; without a cluster it is the chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return WorkerInfo("chief", 0, True)
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    has_chief = "chief" in json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
    return WorkerInfo(task_type, task_id, is_chief)


def worker_output(output: str, worker: WorkerInfo) -> str:
    """Where this worker writes its own files: the run folder for the chief, ``worker-N`` below it otherwise."""
    return output if worker.is_chief else os.path.join(output, f"{worker.task_type}-{worker.task_id}")
