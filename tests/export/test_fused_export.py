"""``tfrs-selreg export --fusion``: the served scores are the fusion scores of ``evaluate --reference fusion``.

A tiny two-tower run is trained on a synthetic prepared folder that carries teacher item vectors; the
fused SavedModel is loaded by a fresh TensorFlow-only process, and its ``score_items`` over the whole
catalog and its ``serving_default`` top-k are compared with :class:`tfrs_selreg.evaluation.fusion.Fusion`
on the standardized scores that the fusion evaluation ranks.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.synthetic import make_prepared
from tfrs_selreg.data import item_embeddings
from tfrs_selreg.data.popularity import popularity_buckets
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.evaluation import evaluate, fusion, reference
from tfrs_selreg.evaluation.ranking import RankingEvaluator
from tfrs_selreg.export import exporter
from tfrs_selreg.export import fused as fused_lib
from tfrs_selreg.runs import config as config_lib
from tfrs_selreg.runs import folder as run_lib
from tfrs_selreg.training.train import train

BETAS = [0.1, 0.5, 1.0, 0.3]
K = 10
DIM_TEXT = 12

LOAD_AND_CALL = r"""
import json, sys
import numpy as np
import tensorflow as tf
args = json.load(open(sys.argv[1]))
model = tf.saved_model.load(args["model"])
users = tf.constant(args["user_id"])
history = tf.constant(args["history"])
items = tf.constant([args["items"]] * len(args["user_id"]))
scores = model.signatures["score_items"](user_id=users, history=history, item_ids=items)["scores"]
top = model.signatures["serving_default"](user_id=users, history=history)
np.savez(args["out"], scores=scores.numpy(), top_scores=top["scores"].numpy(),
         top_ids=top["item_ids"].numpy().astype(str))
"""


def _write_item_embeddings(prepared: str, seed: int) -> np.ndarray:
    vocabulary = PreparedData(prepared).item_vocabulary()
    vectors = np.random.default_rng(seed).normal(size=(len(vocabulary), DIM_TEXT)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    item_embeddings.write(prepared, vocabulary, vectors, teacher="test", model="random-unit")
    return vectors


@pytest.fixture(scope="module")
def fused_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fused")
    prepared = make_prepared(str(root / "prepared"), n_users=40, n_items=60, seed=7)
    _write_item_embeddings(prepared, seed=7)
    run = str(root / "run")
    train(config_lib.resolve(overrides={"prepared": prepared, "output": run, "epochs": 2, "batch_size": 32,
                                        "learning_rate": 0.01, "model.embedding_dim": 8, "regularizer.gate": "none",
                                        "validation_max_users": 10}), verbose=0)
    evaluated = str(root / "fusion")
    assert evaluate.main(["--reference", "fusion", "--run", run, "--output", evaluated]) == 0
    # The same file with betas that differ per quartile, so that every part of the index is exercised.
    with open(os.path.join(evaluated, "metrics.json")) as f:
        result = json.load(f)
    result["fusion"]["betas"] = BETAS
    weights = str(root / "weights.json")
    with open(weights, "w") as f:
        json.dump(result, f)
    return root, prepared, run, os.path.join(evaluated, "metrics.json"), weights


def _serve(root, model_dir, evaluator, items):
    request = {"model": model_dir, "user_id": evaluator.user_ids.astype(str).tolist(),
               "history": evaluator.histories.astype(str).tolist(), "items": items, "out": str(root / "served.npz")}
    with open(root / "request.json", "w") as f:
        json.dump(request, f)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    subprocess.run([sys.executable, "-c", LOAD_AND_CALL, str(root / "request.json")], check=True, env=env,
                   cwd=str(root), timeout=300)
    return np.load(root / "served.npz")


def test_fused_export_serves_the_fusion_scores(fused_run):
    root, prepared, run, _, weights = fused_run
    base = str(root / "saved_models")
    assert exporter.main(["--run", run, "--model-name", "fused", "--base", base, "--k", str(K),
                          "--no-exclude-history", "--fusion", weights]) == 0
    model_dir = os.path.join(base, "fused", "1")
    with open(os.path.join(model_dir, "assets.extra", exporter.EXPORT_INFO)) as f:
        assert json.load(f)["fusion"]["betas"] == BETAS

    data = PreparedData(prepared)
    _, model = run_lib.load_run(run)
    evaluator = RankingEvaluator(data, "test", 10)
    z_model = fusion.score_matrix(evaluator, model.all_items_scorer())
    z_text = fusion.score_matrix(evaluator, reference.EmbeddingTeacherRanker(data).score_all)
    bucket = popularity_buckets(model.catalog.popularity[1:])
    assert set(bucket) == {0, 1, 2, 3}
    expected = fusion.Fusion(tuple(BETAS), bucket).scores(z_model, z_text)

    served = _serve(root, model_dir, evaluator, list(model.catalog.item_ids))
    np.testing.assert_allclose(served["scores"], expected, atol=2e-4)
    np.testing.assert_allclose(served["top_scores"], -np.sort(-expected, axis=1)[:, :K], atol=2e-4)
    assert not np.allclose(z_model, expected, atol=1e-2)  # the teacher part changes the scores


def test_fused_export_refuses_weights_of_another_run_and_a_folder_without_text_vectors(fused_run, tmp_path, capsys):
    root, prepared, run, metrics, _ = fused_run
    other = str(tmp_path / "other-run")
    os.symlink(run, other + "-link")  # the same run under another name is fine
    assert fused_lib.load_betas(metrics, other + "-link") == tuple(json.load(open(metrics))["fusion"]["betas"])
    with pytest.raises(fused_lib.FusionFileError, match="fitted for run"):
        fused_lib.load_betas(metrics, str(tmp_path))
    with pytest.raises(fused_lib.FusionFileError, match="no such file"):
        fused_lib.load_betas(str(tmp_path / "missing.json"), run)
    (tmp_path / "bad.json").write_text('{"fused_run": "%s", "fusion": {"betas": [1, -1, 0, 0]}}' % run)
    with pytest.raises(fused_lib.FusionFileError, match="4 finite numbers >= 0"):
        fused_lib.load_betas(str(tmp_path / "bad.json"), run)
    bare = make_prepared(str(tmp_path / "bare"), n_users=40, n_items=60, seed=7)
    assert exporter.main(["--run", run, "--model-name", "f", "--base", str(tmp_path / "sm"), "--prepared", bare,
                          "--fusion", metrics]) == 2
    assert "item_embeddings is missing" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "sm")  # nothing written for a refused export


def test_the_fused_export_needs_a_factorized_backbone(fused_run):
    from tfrs_selreg.models import ModelConfig, build_model
    from tfrs_selreg.regularizer import RegularizerConfig

    _, prepared, _, _, _ = fused_run
    data = PreparedData(prepared)
    dcn = build_model(ModelConfig(backbone="dcn", embedding_dim=8), data, RegularizerConfig(gate="none"))
    with pytest.raises(ValueError, match=r"--fusion needs a factorized backbone \(two_tower\); this run is a dcn"):
        fused_lib.build(dcn, prepared, data.item_vocabulary(), tuple(BETAS))
