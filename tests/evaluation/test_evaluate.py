"""tfrs-selreg evaluate on a short synthetic run: files, counts, a per-user reference, diagnostics."""

import json
import math
import os
import shutil

import numpy as np
import pytest

from tests.synthetic import make_prepared
from tfrs_selreg.data import schema
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.evaluation import diagnostics, evaluate, metrics
from tfrs_selreg.evaluation.ranking import KS, SEGMENTS
from tfrs_selreg.models import ModelConfig, build_model
from tfrs_selreg.regularizer import RegularizerConfig
from tfrs_selreg.runs import config as config_lib
from tfrs_selreg.runs import folder as run_lib
from tfrs_selreg.training.train import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    prepared = make_prepared(str(tmp_path_factory.mktemp("prepared")), n_users=40, n_items=60, seed=6)
    out = str(tmp_path_factory.mktemp("run"))
    train(config_lib.resolve(overrides={"prepared": prepared, "output": out, "epochs": 2, "batch_size": 32,
                                        "model.embedding_dim": 8, "regularizer.gate": "reliability"}), verbose=0)
    return out


def test_metrics_files_and_counts(run_dir, capsys):
    assert evaluate.main(["--run", run_dir]) == 0
    table = capsys.readouterr().out
    assert all(s in table for s in SEGMENTS) and "teacher probe accuracy" in table
    with open(os.path.join(run_dir, "metrics.json")) as f:
        result = json.load(f)
    with open(evaluate.metrics_path(run_dir, "test")) as f:
        assert json.load(f) == result

    data = PreparedData(json.load(open(os.path.join(run_dir, run_lib.CONFIG_FILE)))["prepared"])
    users = [u for u in data.users() if u.test_items]
    tail = {i.item_id for i in data.items() if i.long_tail}
    assert result["overall"]["users"] == len(users)
    assert result["overall"]["items"] == sum(len(u.test_items) for u in users)
    assert result["cold_start"]["users"] == sum(u.cold_start for u in users)
    assert result["long_tail"]["items"] == sum(i in tail for u in users for i in u.test_items)
    for segment in SEGMENTS:
        assert {"auc", "recall@10", "recall@20", "ndcg@10", "ndcg@20"} <= set(result[segment])

    per_user = np.load(evaluate.per_user_path(run_dir, "test"))
    assert per_user["overall/user_id"].size == len(users)
    assert np.nanmean(per_user["overall/recall@20"]) == pytest.approx(result["overall"]["recall@20"])


def test_vectorized_ranking_matches_a_per_user_reference(run_dir):
    """Train and validation items are excluded when ranking test items; batching changes nothing."""
    result = evaluate.evaluate(run_dir, "test", batch_users=7, with_diagnostics=False)
    per_user = np.load(evaluate.per_user_path(run_dir, "test"))
    config, model = run_lib.load_run(run_dir)
    data = PreparedData(config.prepared)
    vocabulary = data.item_vocabulary()
    length = schema.Schema.load(config.prepared).history_length
    by_id = {u.user_id: u for u in data.users()}
    for row, user_id in enumerate(per_user["overall/user_id"]):
        user = by_id[str(user_id)]
        history = [""] * max(0, length - len(user.train_items)) + list(user.train_items[-length:])
        scores = model.score_all({schema.USER_ID: np.array([user.user_id]), schema.HISTORY: np.array([history])})
        scores = scores.numpy()[:, 1:]
        positives = np.isin(vocabulary, user.test_items)[None]
        excluded = np.isin(vocabulary, user.train_items + user.val_items)[None] & ~positives
        expected = metrics.ranking_metrics(scores, positives, excluded, KS)
        for name, values in expected.items():
            got = per_user[f"overall/{name}"][row]
            assert (math.isnan(got) and math.isnan(values[0])) or got == pytest.approx(values[0], abs=1e-9), name
    assert result["overall"]["users"] == per_user["overall/user_id"].size


def test_validation_split_and_gate_diagnostics(run_dir):
    result = evaluate.evaluate(run_dir, "val")
    assert os.path.exists(evaluate.metrics_path(run_dir, "val"))
    gate = result["diagnostics"]["gate"]
    assert gate["mode"] == "reliability"
    assert all(0.0 <= gate[s]["mean_weight"] <= 1.0 for s in SEGMENTS)
    assert sum(b["pairs"] for b in gate["by_history_length"]) == gate["overall"]["pairs"]
    assert sum(b["pairs"] for b in gate["by_popularity"]) == gate["overall"]["pairs"]
    assert result["diagnostics"]["probe_accuracy"]["overall"]["accuracy"] == pytest.approx(1.0)  # oracle teacher


def test_train_saves_the_diagnostics_that_evaluate_reports(run_dir, tmp_path):
    """train's diagnostics (from its in-memory split) equal those computed from the files, and evaluate
    reports the saved ones without reading the training split again."""
    path = os.path.join(run_dir, run_lib.DIAGNOSTICS_FILE)
    saved = diagnostics.load(path)
    config, model = run_lib.load_run(run_dir)
    assert saved == diagnostics.finite(diagnostics.pair_diagnostics(model, config.prepared))
    copy = shutil.copytree(run_dir, tmp_path / "copy")
    marked = json.loads(json.dumps(saved))
    marked["gate"]["overall"]["pairs"] = -1  # a value no computation gives
    diagnostics.save(str(copy / run_lib.DIAGNOSTICS_FILE), marked)
    assert evaluate.evaluate(str(copy), "val")["diagnostics"] == marked
    capped = evaluate.evaluate(str(copy), "val", max_diagnostic_examples=10**6)["diagnostics"]
    assert diagnostics.finite(capped) == saved  # a cap computes them from the split
    (copy / run_lib.DIAGNOSTICS_FILE).write_text('{"gate": ')
    with pytest.raises(run_lib.RunFolderError, match="diagnostics.json is damaged"):
        evaluate.evaluate(str(copy), "val")
    os.remove(copy / run_lib.DIAGNOSTICS_FILE)  # a run trained before the file existed, or on a streamed split
    assert diagnostics.finite(evaluate.evaluate(str(copy), "val")["diagnostics"]) == saved


def test_a_streamed_training_split_is_not_loaded_for_the_diagnostics(tmp_path):
    prepared = make_prepared(str(tmp_path / "p"), n_users=20, n_items=40, seed=2)
    run = str(tmp_path / "run")
    train(config_lib.resolve(overrides={"prepared": prepared, "output": run, "epochs": 1, "batch_size": 32,
                                        "model.embedding_dim": 8, "regularizer.gate": "reliability",
                                        "in_memory_max_mb": 0, "validation_max_users": 10}), verbose=0)
    assert not os.path.exists(os.path.join(run, run_lib.DIAGNOSTICS_FILE))
    assert evaluate.evaluate(run, "val")["diagnostics"]["gate"]["mode"] == "reliability"


def test_random_teacher_probe_accuracy_is_chance(tmp_path):
    data = PreparedData(make_prepared(str(tmp_path / "p"), n_users=40, n_items=60, seed=6, teacher="random"))
    model = build_model(ModelConfig(embedding_dim=8), data, RegularizerConfig(gate="reliability"))
    out = diagnostics.pair_diagnostics(model, data.directory)
    assert 0.35 < out["probe_accuracy"]["overall"]["accuracy"] < 0.65
    # Before training the reliability gate sits at chance, which is weight 0.
    assert out["gate"]["overall"]["mean_weight"] == pytest.approx(0.0, abs=1e-6)


def test_missing_run_is_a_clear_error(tmp_path, capsys):
    assert evaluate.main(["--run", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_empty_segments_print_dashes_and_exit_zero(tmp_path, capsys):
    """No cold-start user and no long-tail item: the metrics are written and the table says ``-``."""
    prepared = make_prepared(str(tmp_path / "p"), n_users=30, n_items=50, seed=1, cold_start_fraction=0.0,
                             long_tail_fraction=0.0)
    run = str(tmp_path / "run")
    train(config_lib.resolve(overrides={"prepared": prepared, "output": run, "epochs": 1, "batch_size": 32,
                                        "model.embedding_dim": 8, "regularizer.gate": "reliability",
                                        "validation_max_users": 10}), verbose=0)
    capsys.readouterr()
    assert evaluate.main(["--run", run]) == 0
    printed = capsys.readouterr().out
    assert "cold_start - (0 pairs)" in printed and "cold_start - (0 probes)" in printed
    with open(os.path.join(run, "metrics.json")) as f:
        result = json.load(f)
    assert result["cold_start"]["users"] == 0 and result["diagnostics"]["gate"]["cold_start"]["mean_weight"] is None


def test_another_preparation_is_refused_by_evaluate_and_export(run_dir, tmp_path, capsys):
    """Same sizes, another vocabulary order: accepting it would silently scramble the item mapping."""
    from tfrs_selreg.export import exporter

    other = make_prepared(str(tmp_path / "other"), n_users=40, n_items=60, seed=7)
    assert PreparedData(other).fingerprint() != PreparedData(config_lib.load(
        os.path.join(run_dir, run_lib.CONFIG_FILE)).prepared).fingerprint()
    assert evaluate.main(["--run", run_dir, "--prepared", other, "--no-diagnostics"]) == 2
    assert "is not the preparation run" in capsys.readouterr().err
    assert exporter.main(["--run", run_dir, "--prepared", other, "--model-name", "m",
                          "--base", str(tmp_path / "sm")]) == 2
    assert "is not the preparation run" in capsys.readouterr().err
    # A copy of the same preparation (a moved folder) is the same preparation.
    copy = shutil.copytree(config_lib.load(os.path.join(run_dir, run_lib.CONFIG_FILE)).prepared, tmp_path / "copy")
    run_lib.check_prepared(run_dir, PreparedData(str(copy)))


def test_a_damaged_run_folder_is_a_clear_error(run_dir, tmp_path, capsys):
    damaged = shutil.copytree(run_dir, tmp_path / "damaged")
    index = damaged / run_lib.WEIGHTS
    data = next(p for p in (damaged / run_lib.MODEL_DIR).iterdir() if ".data-" in p.name)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # truncated weights
    assert evaluate.main(["--run", str(damaged), "--no-diagnostics"]) == 2
    assert f"{index}: the weights cannot be restored" in capsys.readouterr().err
    config = damaged / run_lib.CONFIG_FILE
    config.write_text(config.read_text()[:40])  # truncated config.json
    assert evaluate.main(["--run", str(damaged), "--no-diagnostics"]) == 2
    assert f"{config} cannot be read" in capsys.readouterr().err
