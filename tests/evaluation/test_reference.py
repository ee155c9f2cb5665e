"""Untrained reference rankers (popularity, the embedding teacher alone) through `tfrs-selreg evaluate`."""

import json
import os

import numpy as np
import pytest

from tests.synthetic import make_prepared
from tfrs_selreg.data import schema
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.evaluation import evaluate, reference
from tfrs_selreg.teachers.embedding_teacher import EmbeddingTeacher


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(str(tmp_path_factory.mktemp("prepared")), n_users=30, n_items=40, seed=3)


def _features(histories):
    return {schema.USER_ID: np.array(["u"] * len(histories)), schema.HISTORY: np.array(histories)}


def test_popularity_scores_are_log_popularity_in_vocabulary_order(prepared):
    data = PreparedData(prepared)
    popularity = {i.item_id: i.popularity for i in data.items()}
    scores = reference.PopularityRanker(data).score_all(_features([["", "x"], ["a", "b"]])).numpy()
    expected = np.log1p([popularity[i] for i in data.item_vocabulary()])
    assert scores.shape == (2, 1 + len(expected)) and scores[0, 0] == -np.inf
    np.testing.assert_allclose(scores[:, 1:], np.stack([expected, expected]), rtol=1e-6)


def test_embedding_teacher_scores_are_the_teachers_cosines(prepared):
    data = PreparedData(prepared)
    vocabulary = data.item_vocabulary()
    by_id = {i.item_id: i for i in data.items()}
    ranker = reference.EmbeddingTeacherRanker(data)
    histories = [["", "", vocabulary[3], vocabulary[7]], [vocabulary[1]] * 4, ["", "", "", "unknown-item"]]
    scores = ranker.score_all(_features(histories)).numpy()

    vectors = EmbeddingTeacher().item_vectors([by_id[i] for i in vocabulary])
    for row, history in enumerate(histories[:2]):
        context = vectors[[vocabulary.index(h) for h in history if h]].mean(axis=0)
        np.testing.assert_allclose(scores[row, 1:], vectors @ (context / np.linalg.norm(context)), atol=1e-5)
    assert np.all(scores[2, 1:] == 0.0)  # no known history item: no opinion, not NaN


def test_reference_command_writes_run_like_outputs(prepared, tmp_path, capsys):
    out = str(tmp_path / "popularity")
    assert evaluate.main(["--reference", "popularity", "--prepared", prepared, "--output", out]) == 0
    assert "reference popularity" in capsys.readouterr().out
    with open(os.path.join(out, "metrics.json")) as f:
        result = json.load(f)
    users = [u for u in PreparedData(prepared).users() if u.test_items]
    assert result["backbone"] == "reference:popularity" and result["overall"]["users"] == len(users)
    assert 0.0 <= result["overall"]["auc"] <= 1.0
    assert np.load(evaluate.per_user_path(out, "test"))["overall/user_id"].size == len(users)


def test_reference_needs_prepared_and_output(prepared, capsys):
    with pytest.raises(SystemExit):
        evaluate.main(["--reference", "popularity", "--prepared", prepared])
    assert "--reference needs --prepared DIR and --output DIR" in capsys.readouterr().err
