"""tfrs-selreg export: SavedModels that a TensorFlow-only process serves exactly like the trained model.

Tiny two-tower (gates ``none`` and ``reliability``) and DCN (``reliability``, no history exclusion) runs
are trained on a synthetic prepared folder and exported with the command. One fresh Python process
without tfrs_selreg and without ``TF_USE_LEGACY_KERAS`` (``serving_check.py``) loads every export, calls
every signature on known, unknown and empty inputs, replays the warm-up records and the README's REST
bodies, and lists variables and ops; its replies are compared here with the in-process model's.
"""

import base64
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tests.synthetic import make_prepared
from tfrs_selreg.data import schema
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.export import exporter, warmup
from tfrs_selreg.export import signatures as sig
from tfrs_selreg.runs import config as config_lib
from tfrs_selreg.runs import folder as run_lib
from tfrs_selreg.training.train import train

REPO = pathlib.Path(__file__).resolve().parents[2]
SERVING_CHECK = REPO / "tests" / "export" / "serving_check.py"
README = REPO / "saved_models" / "README.md"
MODELS_CONFIG = REPO / "saved_models" / "models.config.example"
K = 10
# (model name, backbone, gate, exclude_history)
EXPORTS = (("two_tower_none", "two_tower", "none", True),
           ("two_tower_reliability", "two_tower", "reliability", True),
           ("dcn_reliability", "dcn", "reliability", False))
# Names of training-only parts that must not appear in a SavedModel.
TRAINING_ONLY_WORDS = ("regularizer", "selective_gate", "teacher", "probe", "gate_loss", "ranking", "retrieval")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``{model name: (in-process model, SavedModel folder, exclude_history)}`` plus the prepared folder."""
    root = tmp_path_factory.mktemp("export")
    prepared = make_prepared(str(root / "prepared"), n_users=40, n_items=60, seed=3)
    base = root / "saved_models"
    out = {}
    for name, backbone, gate, exclude in EXPORTS:
        run_dir = str(root / f"run-{name}")
        train(config_lib.resolve(overrides={
            "prepared": prepared, "output": run_dir, "epochs": 2, "batch_size": 32, "learning_rate": 0.01,
            "model.backbone": backbone, "model.embedding_dim": 8, "model.dcn.deep_layers": [16],
            "regularizer.gate": gate, "validation_max_users": 10}), verbose=0)
        flag = "--exclude-history" if exclude else "--no-exclude-history"
        assert exporter.main(["--run", run_dir, "--model-name", name, "--base", str(base), "--k", str(K), flag]) == 0
        _, model = run_lib.load_run(run_dir)
        out[name] = (model, str(base / name / "1"), exclude)
    return prepared, str(base), out


def _batch(user_ids, history):
    history = np.array(history, dtype=np.bytes_).reshape(len(user_ids), -1 if len(history[0]) else 0)
    return {schema.USER_ID: tf.constant(np.array(user_ids, dtype=np.bytes_)), schema.HISTORY: tf.constant(history)}


def reference_top_k(model, user_ids, history, exclude):
    """The in-process model's top-K: ``score_all`` minus the OOV column, history items masked."""
    scores = model.score_all(_batch(user_ids, history)).numpy()
    if exclude:
        for row, items in enumerate(history):
            for item in items:
                index = int(model.item_index(tf.constant(item)))
                if index > 0:
                    scores[row, index] = sig.MASKED_SCORE
    scores = scores[:, 1:]
    order = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    return {sig.ITEM_IDS: np.array(model.catalog.item_ids)[order].tolist(),
            sig.SCORES: np.take_along_axis(scores, order, axis=1).tolist()}


def reference_scores(model, user_ids, history, item_ids):
    scores = model.score(_batch(user_ids, history), tf.constant(item_ids)).numpy()
    unknown = model.item_index(tf.constant(item_ids)).numpy() == 0
    return {sig.SCORES: np.where(unknown, sig.MASKED_SCORE, scores).tolist()}


def _example(user_id, history=None):
    feature = {schema.USER_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[user_id.encode()]))}
    if history is not None:
        feature[schema.HISTORY] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[h.encode() for h in history]))
    record = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
    return {"b64": base64.b64encode(record).decode()}


def cases(prepared, model, exclude):
    """Signature calls with the in-process model's replies: known, unknown, empty and short inputs."""
    data = PreparedData(prepared)
    L = schema.Schema.load(prepared).history_length
    users = data.users()[:4]
    known_ids = [u.user_id for u in users]
    known_history = [[""] * (L - len(u.train_items[-L:])) + list(u.train_items[-L:]) for u in users]
    items = list(model.catalog.item_ids)
    odd_ids = ["unknown-user", known_ids[0], ""]
    odd_history = [["never-seen"] * (L - 2) + [items[0], ""], [""] * L, [items[3], "never-seen"] + [""] * (L - 2)]
    out = []
    for name, ids, history in (("known", known_ids, known_history), ("unknown_and_empty", odd_ids, odd_history),
                               ("short_history", odd_ids, [h[:3] for h in odd_history]),
                               ("no_history_columns", odd_ids[:2], [[], []])):
        out.append({"name": name, "signature": sig.SERVING_DEFAULT,
                    "inputs": {schema.USER_ID: ids, schema.HISTORY: history},
                    "expected": reference_top_k(model, ids, history, exclude)})
    candidates = [[items[(3 * r + j) % len(items)] for j in range(5)] + ["unknown-item", ""] for r in range(3)]
    out.append({"name": "score_items", "signature": sig.SCORE_ITEMS,
                "inputs": {schema.USER_ID: odd_ids, schema.HISTORY: odd_history, sig.ITEM_IDS: candidates},
                "expected": reference_scores(model, odd_ids, odd_history, candidates)})
    examples = [_example(known_ids[0], known_history[0]), _example("unknown-user"), _example(known_ids[1], [""] * L)]
    parsed = ([known_ids[0], "unknown-user", known_ids[1]], [known_history[0], [""] * L, [""] * L])
    out.append({"name": "tf_example", "signature": sig.SERVING_TF_EXAMPLE, "inputs": {sig.EXAMPLES: examples},
                "expected": reference_top_k(model, *parsed, exclude)})
    return out


def readme_rest_bodies():
    """The JSON blocks of saved_models/README.md that are REST ``:predict`` bodies."""
    blocks = re.findall(r"```json\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    bodies = [json.loads(b) for b in blocks]
    return [b for b in bodies if isinstance(b, dict) and ("instances" in b or "inputs" in b)]


@pytest.fixture(scope="module")
def serving_report(exported, tmp_path_factory):
    """The report of ``serving_check.py`` run once, in a fresh process, over every export."""
    prepared, _, models = exported
    work = tmp_path_factory.mktemp("serving_check")
    spec = {"atol": 1e-5, "models": [
        {"saved_model": path, "cases": cases(prepared, model, exclude), "rest_bodies": readme_rest_bodies()}
        for model, path, exclude in models.values()]}
    (work / "cases.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    proc = subprocess.run([sys.executable, str(SERVING_CHECK), str(work / "cases.json"), str(work / "report.json")],
                          env=env, cwd=str(work), capture_output=True, text=True, timeout=300)
    assert (work / "report.json").exists(), proc.stderr[-3000:]
    report = json.loads((work / "report.json").read_text())
    return proc.returncode, {os.path.relpath(m["saved_model"], exported[1]).split(os.sep)[0]: m
                             for m in report["models"]}, report


def test_a_tensorflow_only_process_serves_every_signature_like_the_model(serving_report):
    returncode, models, report = serving_report
    assert not report["tfrs_selreg_imported"] and report["tf_use_legacy_keras"] is None
    assert {name: m["errors"] for name, m in models.items()} == {name: [] for name, *_ in EXPORTS}
    assert returncode == 0
    for m in models.values():
        assert m["checked"] == 6  # known, unknown/empty, short and 0-column histories, score_items, tf.Example


def test_warmup_records_are_prediction_logs_the_model_answers(serving_report):
    _, models, _ = serving_report
    for m in models.values():
        assert m["warmup_records"] == len(sig.SIGNATURES) * len(warmup.BATCH_SIZES)


def test_readme_rest_bodies_match_the_signatures(serving_report):
    _, models, _ = serving_report
    bodies = readme_rest_bodies()
    assert {b.get("signature_name", sig.SERVING_DEFAULT) for b in bodies} == set(sig.SIGNATURES)
    assert all(m["rest_bodies"] == len(bodies) for m in models.values())


def test_signatures_have_the_documented_inputs_and_outputs(serving_report):
    _, models, _ = serving_report
    user = {"history": ["string", [None, None]], "user_id": ["string", [None]]}
    top_k = {"item_ids": ["string", [None, K]], "scores": ["float32", [None, K]]}
    expected = {
        sig.SERVING_DEFAULT: {"inputs": user, "outputs": top_k},
        sig.SCORE_ITEMS: {"inputs": {**user, "item_ids": ["string", [None, None]]},
                          "outputs": {"scores": ["float32", [None, None]]}},
        sig.SERVING_TF_EXAMPLE: {"inputs": {"examples": ["string", [None]]}, "outputs": top_k},
    }
    for m in models.values():
        assert m["inventory"]["signatures"] == expected


def test_none_and_reliability_exports_hold_the_same_serving_part_and_nothing_of_training(serving_report):
    _, models, _ = serving_report
    none, reliability = (models[name]["inventory"] for name in ("two_tower_none", "two_tower_reliability"))
    assert none["signatures"] == reliability["signatures"]
    assert none["variables"] == reliability["variables"]
    assert none["op_types"] == reliability["op_types"]
    for m in models.values():
        inventory = m["inventory"]
        names = [v[0] for v in inventory["variables"]] + inventory["function_names"] + inventory["op_types"]
        assert [n for n in names if any(w in n.lower() for w in TRAINING_ONLY_WORDS)] == []
        # Loss metrics (Mean's total/count) and optimizer slots stay behind too.
        assert not any(re.search(r"(^|/)(total|count|iteration)s?$", v[0]) for v in inventory["variables"])


def test_saved_model_cli_lists_the_three_signatures(exported):
    _, _, models = exported
    cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
    out = subprocess.run([str(cli), "show", "--all", "--dir", models["dcn_reliability"][1]],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    blocks = dict(re.findall(r"signature_def\['(\w+)'\]:\n(.*?)Method name is: (?:tensorflow/serving/predict)?",
                             out, flags=re.S))
    assert set(sig.SIGNATURES) <= set(blocks)

    def tensors(block, kind):
        found = re.findall(kind + r"\['(\w+)'\] tensor_info:\n\s+dtype: (\w+)\n\s+shape: (\(.*?\))", block)
        return {name: (dtype, shape) for name, dtype, shape in found}

    assert tensors(blocks[sig.SERVING_DEFAULT], "inputs") == {"user_id": ("DT_STRING", "(-1)"),
                                                              "history": ("DT_STRING", "(-1, -1)")}
    assert tensors(blocks[sig.SERVING_DEFAULT], "outputs") == {"item_ids": ("DT_STRING", f"(-1, {K})"),
                                                               "scores": ("DT_FLOAT", f"(-1, {K})")}
    assert tensors(blocks[sig.SCORE_ITEMS], "inputs")["item_ids"] == ("DT_STRING", "(-1, -1)")
    assert tensors(blocks[sig.SCORE_ITEMS], "outputs") == {"scores": ("DT_FLOAT", "(-1, -1)")}
    assert tensors(blocks[sig.SERVING_TF_EXAMPLE], "inputs") == {"examples": ("DT_STRING", "(-1)")}
    assert tensors(blocks[sig.SERVING_TF_EXAMPLE], "outputs") == tensors(blocks[sig.SERVING_DEFAULT], "outputs")


def test_export_layout_versions_and_assets(exported, capsys):
    prepared, base, models = exported
    _, first, _ = models["two_tower_none"]
    for path in ("saved_model.pb", "variables/variables.index", "assets/schema.json", "assets/items.txt",
                 "assets.extra/tf_serving_warmup_requests", "assets.extra/export.json"):
        assert os.path.exists(os.path.join(first, path)), path
    served = schema.Schema.load(os.path.join(first, "assets"))
    assert [f.name for f in served.features] == [schema.USER_ID, schema.HISTORY]
    with open(os.path.join(first, "assets.extra", "export.json")) as f:
        info = json.load(f)
    assert (info["backbone"], info["gate"], info["k"], info["exclude_history"]) == ("two_tower", "none", K, True)

    # A second export of the same run becomes version 2; nothing half-written stays behind.
    run_dir = info["run"]
    assert exporter.main(["--run", run_dir, "--model-name", "two_tower_none", "--base", base, "--k", str(K)]) == 0
    assert "two_tower_none version 2" in capsys.readouterr().out
    assert sorted(os.listdir(os.path.join(base, "two_tower_none"))) == ["1", "2"]
    assert exporter.version_numbers(os.path.join(base, "two_tower_none")) == [1, 2]

    # A bad --k is reported with what to do, and leaves no version and no temporary folder.
    assert exporter.main(["--run", run_dir, "--model-name", "two_tower_none", "--base", base, "--k", "1000"]) == 2
    assert "pass a smaller --k" in capsys.readouterr().err
    assert sorted(os.listdir(os.path.join(base, "two_tower_none"))) == ["1", "2"]


def test_model_names_stay_inside_base_and_a_failed_first_export_leaves_nothing(exported, tmp_path, capsys):
    _, _, models = exported
    with open(os.path.join(models["two_tower_none"][1], "assets.extra", "export.json")) as f:
        run_dir = json.load(f)["run"]
    base = tmp_path / "base"
    for name in ("../../x", "", "a/b", "..", ".", "-flag", "two tower"):
        assert exporter.main(["--run", run_dir, f"--model-name={name}", "--base", str(base)]) == 2
        assert "--model-name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not base.exists()
    assert exporter.main(["--run", run_dir, "--model-name", "fresh", "--base", str(base), "--k", "100000"]) == 2
    assert not (base / "fresh").exists()  # no empty model folder for TF Serving to watch


def test_models_config_example_is_a_model_server_config():
    config = text_format.Parse(MODELS_CONFIG.read_text(encoding="utf-8"), model_server_config_pb2.ModelServerConfig())
    names = [c.name for c in config.model_config_list.config]
    assert names and all(c.model_platform == "tensorflow" for c in config.model_config_list.config)
    assert all(c.base_path.endswith("/" + c.name) for c in config.model_config_list.config)


def test_readme_python_examples_compile():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks
    for block in blocks:
        compile(block, str(README), "exec")


def test_export_never_imports_the_teachers():
    code = ("import sys, tfrs_selreg.export.exporter; "
            "print([m for m in sys.modules if m.startswith(('tfrs_selreg.teachers', 'beam_pipelines'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


SERVE_MANY = r"""
import json, sys
import numpy as np
import tensorflow as tf
args = json.load(open(sys.argv[1]))
model = tf.saved_model.load(args["model"])
users, history = tf.constant(args["user_id"]), tf.constant(args["history"])
items = tf.constant([args["items"]] * len(args["user_id"]))
scores = model.signatures["score_items"](user_id=users, history=history, item_ids=items)["scores"]
top = model.signatures["serving_default"](user_id=users, history=history)
np.savez(args["out"], scores=scores.numpy(), top_scores=top["scores"].numpy(),
         top_ids=top["item_ids"].numpy().astype(str))
"""


def _serve_many(tmp_path, model_dir, user_ids, history, items):
    request = {"model": model_dir, "user_id": user_ids, "history": history, "items": items,
               "out": str(tmp_path / "served.npz")}
    (tmp_path / "request.json").write_text(json.dumps(request))
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    subprocess.run([sys.executable, "-c", SERVE_MANY, str(tmp_path / "request.json")], check=True, env=env,
                   timeout=300)
    return np.load(tmp_path / "served.npz")


def test_dcn_scores_large_batches_in_chunks_exactly(exported, tmp_path):
    """150 users are 3 chunks of USER_CHUNK (the last one padded): same scores as the in-process model."""
    prepared, _, models = exported
    model, path, _ = models["dcn_reliability"]
    users = PreparedData(prepared).users()
    rows = [users[r % len(users)] for r in range(150)]
    user_ids = [u.user_id for u in rows]
    history = [list(u.train_items[-3:]) + [""] * (3 - len(u.train_items[-3:])) for u in rows]
    items = list(model.catalog.item_ids)
    served = _serve_many(tmp_path, path, user_ids, history, items)
    expected = model.score(_batch(user_ids, history), tf.constant([items] * len(rows))).numpy()
    np.testing.assert_allclose(served["scores"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(served["top_scores"], -np.sort(-model.score_all(_batch(user_ids, history))
                                                              .numpy()[:, 1:], axis=1)[:, :K], rtol=1e-5, atol=1e-5)


def test_a_history_that_excludes_almost_everything_leaves_empty_slots_not_excluded_items(exported, tmp_path):
    _, _, models = exported
    model, path, _ = models["two_tower_none"]
    items = list(model.catalog.item_ids)
    history = items[:-3]  # longer than L: all but 3 catalog items are excluded, k = 10
    served = _serve_many(tmp_path, path, ["new-user"], [history], items)
    ids = served["top_ids"][0].tolist()
    assert set(ids[:3]) == set(items[-3:]) and ids[3:] == [""] * (K - 3)
    assert (served["top_scores"][0][3:] == sig.MASKED_SCORE).all()


FAULTS = r"""
import json, sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
d, s, e = (model.signatures[n] for n in ("serving_default", "score_items", "serving_tf_example"))
out = {}

def outcome(name, call):
    try:
        result = call()
        out[name] = {"ok": {k: list(v.shape) for k, v in result.items()}}
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
        out[name] = {"invalid": type(err).__name__ + ": " + err.message[:3000]}

outcome("batch_mismatch", lambda: d(user_id=tf.constant(["1", "2", "3"]), history=tf.constant([["a"], ["b"]])))
outcome("score_items_mismatch", lambda: s(user_id=tf.constant(["1"]), history=tf.constant([[""]]),
                                          item_ids=tf.constant([["a"], ["b"]])))
outcome("empty_batch", lambda: d(user_id=tf.zeros([0], tf.string), history=tf.zeros([0, 4], tf.string)))
outcome("zero_width_history", lambda: d(user_id=tf.constant(["1"]), history=tf.zeros([1, 0], tf.string)))
outcome("long_strings", lambda: s(user_id=tf.constant(["u" * 1_000_000]), history=tf.constant([["i" * 100_000]]),
                                  item_ids=tf.constant([["x" * 100_000, ""]])))
outcome("random_bytes_example", lambda: e(examples=tf.constant([np.random.default_rng(0).bytes(64)])))
outcome("big_batch", lambda: d(user_id=tf.constant(["1"] * 3000), history=tf.constant([[""] * 10] * 3000)))
print(json.dumps(out))
"""


@pytest.mark.parametrize("name", ["two_tower_reliability", "dcn_reliability"])
def test_signatures_under_fault_injection_in_a_tensorflow_only_process(exported, name):
    """Wrong shapes, empty and huge batches, long strings and random bytes: a clear InvalidArgumentError or
    a well-shaped reply, never a crash."""
    _, _, models = exported
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run([sys.executable, "-c", FAULTS, models[name][1]], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "history and user_id must have the same batch size" in out["batch_mismatch"]["invalid"]
    assert "item_ids and user_id must have the same batch size" in out["score_items_mismatch"]["invalid"]
    assert out["empty_batch"]["ok"] == {sig.ITEM_IDS: [0, K], sig.SCORES: [0, K]}
    assert out["zero_width_history"]["ok"][sig.ITEM_IDS] == [1, K]
    assert out["long_strings"]["ok"] == {sig.SCORES: [1, 2]}
    assert "invalid" in out["random_bytes_example"]
    assert out["big_batch"]["ok"][sig.SCORES] == [3000, K]
