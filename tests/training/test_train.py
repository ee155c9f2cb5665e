"""train(): the run folder, early stopping on validation Recall@20 and the restored best weights."""

import json
import os

import numpy as np
import pytest

from tests.synthetic import make_prepared
from tfrs_selreg.data import prepared as prepared_lib
from tfrs_selreg.data import schema
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.evaluation.ranking import OVERALL, RankingEvaluator
from tfrs_selreg.runs import config as config_lib
from tfrs_selreg.runs import folder as run_lib
from tfrs_selreg.training.train import main, train


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(str(tmp_path_factory.mktemp("prepared")), n_users=40, n_items=60, seed=2)


def test_early_stopping_follows_validation_and_keeps_the_best_epoch(prepared, tmp_path):
    # A large learning rate on tiny data overfits within a few epochs, so validation Recall@20 drops.
    config = config_lib.resolve(overrides={
        "prepared": prepared, "output": str(tmp_path / "run"), "epochs": 8, "batch_size": 32,
        "learning_rate": 0.05, "early_stopping_patience": 1, "model.embedding_dim": 8, "regularizer.gate": "none"})
    result = train(config, verbose=0)

    with open(tmp_path / "run" / run_lib.HISTORY_FILE) as f:
        history = json.load(f)
    recalls = [e["val_recall@20"] for e in history]
    assert [e["epoch"] for e in history] == list(range(1, len(history) + 1))
    assert result.best_epoch == 1 + int(np.argmax(recalls))
    assert result.stopped_early and len(history) == result.best_epoch + config.early_stopping_patience < config.epochs
    assert result.best_validation["val_recall@20"] == pytest.approx(max(recalls))
    assert all(k in history[0] for k in ("rec_loss", "teacher_loss", "gate_loss", "pair_weight_mean", "total_loss"))

    # The saved model is the best epoch's, not the last one's.
    loaded_config, model = run_lib.load_run(str(tmp_path / "run"))
    assert loaded_config == config
    evaluator = RankingEvaluator(PreparedData(prepared), "val", schema.Schema.load(prepared).history_length)
    recall = evaluator.evaluate(model, ks=(20,), segments=(OVERALL,))[OVERALL].summary()["recall@20"]
    assert recall == pytest.approx(max(recalls))

    for path in (run_lib.CONFIG_FILE, run_lib.RUN_FILE, run_lib.WEIGHTS + ".index", run_lib.LOGS_DIR,
                 os.path.join(run_lib.CHECKPOINTS_DIR, "epoch-001.index")):
        assert os.path.exists(tmp_path / "run" / path), path
    assert os.listdir(tmp_path / "run" / run_lib.LOGS_DIR / "train")
    assert not os.listdir(tmp_path / "run" / run_lib.BACKUP_DIR)  # deleted when training ends


def test_cli_trains_dcn_with_a_config_file(prepared, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("model: {embedding_dim: 8, dcn: {num_negatives: 2, deep_layers: [16]}}\n"
                                     "regularizer: {teacher_lambda: 0.2}\n")
    code = main(["--prepared", prepared, "--output", str(tmp_path / "run"), "--backbone", "dcn",
                 "--gate", "reliability", "--config", str(tmp_path / "c.yaml"), "--epochs", "1",
                 "--steps-per-epoch", "3", "--validation-max-users", "10", "--verbose", "0"])
    assert code == 0 and "best epoch 1 of 1" in capsys.readouterr().out
    config = config_lib.load(str(tmp_path / "run" / run_lib.CONFIG_FILE))
    assert (config.model.backbone, config.regularizer.gate) == ("dcn", "reliability")
    assert config.regularizer.teacher_lambda == 0.2
    assert config.model.dcn.deep_layers == (16,)


def test_cli_reports_a_bad_config(tmp_path, capsys):
    assert main(["--prepared", "P", "--output", str(tmp_path), "--set", "model.backbone=mlp"]) == 2
    assert "ModelConfig.backbone: 'mlp'" in capsys.readouterr().err


def test_mirrored_strategy_trains(prepared, tmp_path):
    config = config_lib.resolve(overrides={
        "prepared": prepared, "output": str(tmp_path / "run"), "epochs": 1, "steps_per_epoch": 2,
        "batch_size": 16, "model.embedding_dim": 8, "regularizer.gate": "global", "strategy": "mirrored"})
    result = train(config, verbose=0)
    assert result.epochs_completed == 1 and os.path.exists(tmp_path / "run" / (run_lib.WEIGHTS + ".index"))


def test_a_gate_without_teacher_pairs_is_refused_before_anything_is_written(tmp_path, capsys):
    """Never labelled, or labelled without probes: ``--gate`` other than none would train the plain backbone."""
    from beam_pipelines import prepare
    from tests.beam.test_prepare import _labels, _write_csv

    raw = _write_csv(tmp_path / "raw")
    bare = str(tmp_path / "bare")
    prepare.run(["--dataset", "csv", "--data-dir", raw, "--output", bare, "--runner", "DirectRunner"])
    out = tmp_path / "run"
    assert main(["--prepared", bare, "--output", str(out), "--gate", "global"]) == 2
    assert "--gate global needs teacher pairs" in capsys.readouterr().err and not out.exists()
    labels = _labels(tmp_path / "labels.jsonl", [{"user_id": "u1", "item_i": "i7", "item_j": "i8", "pref": 0.9}])
    joined = str(tmp_path / "joined")
    prepare.run(["--dataset", "csv", "--data-dir", raw, "--output", joined, "--labels", labels,
                 "--runner", "DirectRunner"])
    assert main(["--prepared", joined, "--output", str(out), "--gate", "reliability"]) == 2
    assert "trains its gate on probe pairs" in capsys.readouterr().err and not out.exists()


def test_a_finished_run_is_replaced_only_with_overwrite_and_a_resume_needs_the_same_config(prepared, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--prepared", prepared, "--output", str(out), "--epochs", "1", "--batch-size", "32",
            "--embedding-dim", "8", "--gate", "none", "--validation-max-users", "10", "--verbose", "0"]
    assert main(argv) == 0
    (out / "metrics.json").write_text("{}")  # an evaluation of this run
    (out / "notes.txt").write_text("mine")
    before = (out / run_lib.CONFIG_FILE).read_text()
    assert main([*argv, "--gate", "global"]) == 2
    assert "holds a finished run" in capsys.readouterr().err
    assert (out / run_lib.CONFIG_FILE).read_text() == before  # refused before anything was written
    assert main([*argv, "--gate", "global", "--overwrite"]) == 0
    assert config_lib.load(str(out / run_lib.CONFIG_FILE)).regularizer.gate == "global"
    assert not (out / "metrics.json").exists() and (out / "notes.txt").read_text() == "mine"
    # A killed run (no run.json yet) of another configuration is not resumed with this one.
    os.remove(out / run_lib.RUN_FILE)
    assert main(argv) == 2
    assert "a killed run of another configuration" in capsys.readouterr().err


def test_a_batch_larger_than_the_training_split_is_refused(prepared, tmp_path, capsys):
    examples = sum(len(u.train_items) for u in PreparedData(prepared).users())
    out = tmp_path / "run"
    assert main(["--prepared", prepared, "--output", str(out), "--gate", "none", "--batch-size", str(examples + 1),
                 "--set", "in_memory_max_mb=0"]) == 2
    assert f"--batch-size {examples + 1} is larger than the {examples:,} training examples" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--config", "{dir}/broken.yaml"], "broken.yaml is not valid YAML"),
    (["--config", "{dir}/broken.json"], "broken.json is not valid JSON"),
    (["--set", "model.item_init=[teacher"], "the value is not valid YAML"),
])
def test_broken_config_files_and_set_values_are_clear_errors(tmp_path, capsys, extra, message):
    (tmp_path / "broken.yaml").write_text("epochs: [1, 2\nseed: 3\n")
    (tmp_path / "broken.json").write_text('{"epochs": 3,')
    argv = ["--prepared", "P", "--output", str(tmp_path / "run")] + [a.format(dir=tmp_path) for a in extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_truncated_users_file_names_its_line(prepared, tmp_path, capsys):
    import shutil

    damaged = shutil.copytree(prepared, tmp_path / "damaged")
    users = damaged / prepared_lib.users_shard_name(0, 1)
    lines = users.read_text().splitlines()
    users.write_text("\n".join(lines[:5] + [lines[5][:20]]) + "\n")
    assert main(["--prepared", str(damaged), "--output", str(tmp_path / "run"), "--gate", "none"]) == 2
    assert f"{users}:6: not a JSON row" in capsys.readouterr().err


def test_a_folder_without_a_validation_split_is_refused_and_evaluate_says_why(tmp_path, capsys):
    from beam_pipelines import prepare
    from tests.beam.test_prepare import _write_csv
    from tfrs_selreg.evaluation import evaluate

    folder = str(tmp_path / "prepared")
    prepare.run(["--dataset", "csv", "--data-dir", _write_csv(tmp_path / "raw"), "--output", folder, "--split",
                 "temporal", "--temporal-val-fraction", "0", "--temporal-test-fraction", "0.2",
                 "--runner", "DirectRunner"])
    out = tmp_path / "run"
    assert main(["--prepared", folder, "--output", str(out), "--gate", "none", "--batch-size", "2"]) == 2
    assert "has no validation items" in capsys.readouterr().err and not out.exists()
    assert evaluate.main(["--reference", "popularity", "--prepared", folder, "--output", str(tmp_path / "e"),
                          "--split", "val"]) == 2
    assert "no user has a 'val' item" in capsys.readouterr().err
