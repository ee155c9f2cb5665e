"""examples/own_tfrs_model.py end to end on a slice of the bundled data: a real embedding-teacher score, fit
and tf.saved_model.save, with and without S-LLMR; the two SavedModels have the same signatures and variables."""

import importlib.util
import json
import subprocess
import sys

from tests.conftest import REPO_ROOT

DESCRIBE = """
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
out = {}
for path in sys.argv[1:]:
    loaded = tf.saved_model.load(path)
    out[path] = {"signatures": {name: [str(f.structured_input_signature), str(f.structured_outputs)]
                                for name, f in loaded.signatures.items()},
                 "variables": tf.train.list_variables(os.path.join(path, "variables", "variables")),
                 "top": [t.decode() for t in loaded(tf.constant(["3"]))[1][0, :3].numpy()]}
print(json.dumps(out))
"""


def _example():
    spec = importlib.util.spec_from_file_location("own_tfrs_model", REPO_ROOT / "examples" / "own_tfrs_model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # AutoGraph reads a function's module from sys.modules
    spec.loader.exec_module(module)
    return module


def test_the_example_with_and_without_s_llmr(movielens_prepared, movielens_scored, tmp_path, capsys):
    labels, _ = movielens_scored
    example = _example()
    common = ["--max-users", "12", "--epochs", "1", "--batch-size", "256"]
    with_llmr, without = str(tmp_path / "with"), str(tmp_path / "without")
    assert example.main(common + ["--prepared", movielens_prepared, "--labels", labels, "--export", with_llmr]) == 0
    log = capsys.readouterr().out
    assert "teacher_loss" in log and "teacher_pairs_kept" in log  # fit logged the task's metrics
    assert example.main(common + ["--no-llmr", "--export", without]) == 0
    described = json.loads(subprocess.run([sys.executable, "-c", DESCRIBE, with_llmr, without], check=True,
                                          capture_output=True, text=True).stdout)
    a, b = described[with_llmr], described[without]
    assert "serving_default" in a["signatures"]
    assert (a["signatures"], a["variables"]) == (b["signatures"], b["variables"])
    assert not any("gate" in name or "teacher" in name or "regulariz" in name for name, _ in a["variables"])
    assert len(a["top"]) == 3
