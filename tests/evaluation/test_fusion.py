"""Score fusion with the teacher (the headroom reference) and the model/teacher disagreement table."""

import json
import math
import os

import numpy as np
import pytest

from tests.synthetic import make_prepared
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.evaluation import evaluate, fusion
from tfrs_selreg.evaluation.ranking import RankingEvaluator


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    prepared = make_prepared(str(tmp_path_factory.mktemp("prepared")), n_users=40, n_items=60, seed=4)
    return RankingEvaluator(PreparedData(prepared), "val", 10)


def _oracle(evaluator):
    held, _ = evaluator.masks(0, evaluator.num_users)
    return fusion.standardized(held.astype(np.float32))


def test_standardized_rows_and_equal_count_popularity_buckets():
    z = fusion.standardized(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(z[0], [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    np.testing.assert_array_equal(z[1], 0.0)  # a constant row has no opinion
    buckets = fusion.popularity_buckets(np.array([5, 1, 1, 1, 9, 3, 2, 0]))
    np.testing.assert_array_equal(buckets, [3, 0, 1, 1, 3, 2, 2, 0])  # two items per quartile, ties by order


def test_fit_trusts_an_oracle_teacher_and_ignores_an_adversarial_one(val):
    rng = np.random.default_rng(0)
    model = fusion.standardized(rng.standard_normal([val.num_users, val.num_items]))
    bucket = fusion.popularity_buckets(np.arange(val.num_items))
    fitted, trace = fusion.fit(val, model, _oracle(val), bucket)
    assert max(fitted.betas) > 0 and trace[0]["betas"] == [0.0] * fusion.BUCKETS
    assert max(t["ndcg@20"] for t in trace) > trace[0]["ndcg@20"]
    against, _ = fusion.fit(val, model, -_oracle(val), bucket)
    assert against.betas == (0.0,) * fusion.BUCKETS
    np.testing.assert_allclose(fitted.scores(model, model), model * (1 + np.array(fitted.betas)[bucket]), rtol=1e-6)


def test_disagreement_table_counts_pairs_and_wins(val):
    oracle = _oracle(val)
    popularity = np.arange(val.num_items)
    rows = {r["segment"]: r for r in fusion.disagreement_table(val, oracle, -oracle, popularity, negatives=5)}
    held, _ = val.masks(0, val.num_users)
    overall = rows["overall"]
    assert overall["pairs"] == 5 * int(held.sum())
    assert (overall["model_accuracy"], overall["teacher_accuracy"]) == (1.0, 0.0)
    assert overall["disagreements"] == overall["pairs"] and overall["teacher_wins"] == 0.0
    same = {r["segment"]: r for r in fusion.disagreement_table(val, oracle, oracle, popularity, negatives=5)}
    assert same["overall"]["disagreements"] == 0 and math.isnan(same["overall"]["teacher_wins"])
    quartiles = [rows[f"positive in popularity quartile {q} (1 rarest)"]["pairs"] for q in range(1, 5)]
    assert sum(quartiles) == overall["pairs"]
    assert "| overall | " in fusion.format_disagreement(list(rows.values()))


def test_fusion_command_on_a_trained_run(tmp_path, capsys):
    from tfrs_selreg.runs import config as config_lib
    from tfrs_selreg.training.train import train

    prepared = make_prepared(str(tmp_path / "prepared"), n_users=40, n_items=60, seed=6)
    run = str(tmp_path / "run")
    train(config_lib.resolve(overrides={"prepared": prepared, "output": run, "epochs": 1, "batch_size": 32,
                                        "model.embedding_dim": 8, "regularizer.gate": "none"}), verbose=0)
    out = str(tmp_path / "fusion")
    assert evaluate.main(["--reference", "fusion", "--run", run, "--output", out]) == 0
    printed = capsys.readouterr().out
    assert "fused with the embedding teacher" in printed and "| overall |" in printed
    with open(os.path.join(out, "metrics.json")) as f:
        result = json.load(f)
    assert result["gate"] == "fusion:none" and len(result["fusion"]["betas"]) == fusion.BUCKETS
    assert all(b in fusion.BETA_GRID for b in result["fusion"]["betas"])
    assert result["overall"]["users"] == sum(1 for u in PreparedData(prepared).users() if u.test_items)
    assert np.load(evaluate.per_user_path(out, "test"))["overall/user_id"].size == result["overall"]["users"]
    with pytest.raises(SystemExit):
        evaluate.main(["--reference", "fusion", "--output", out])
    assert "--reference fusion needs --run" in capsys.readouterr().err
