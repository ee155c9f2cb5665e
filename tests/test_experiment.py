"""``tfrs-selreg experiment``: the aggregation (hand-computed values), the config, and the command end to end.

The end-to-end test runs the real stages (Beam prepare/score/join, train, evaluate) on a tiny CSV dataset
with the ``random`` teacher, then runs the command again (nothing is recomputed) and once more after one
method's ``train_args`` changed (only that method's runs are recomputed).
"""

import csv
import dataclasses
import json
import math
import os

import numpy as np
import pytest
import yaml
from scipy import stats

from tfrs_selreg import cli
from tfrs_selreg.experiment import config as config_lib
from tfrs_selreg.experiment import results, tables
from tfrs_selreg.experiment import run as run_lib
from tfrs_selreg.experiment.stages import Stage, StageRunner, flags
from tfrs_selreg.experiment.workflow import Experiment as _Experiment


def Experiment(config, **kwargs):  # noqa: N802  (the planner, with the CLI's dispatch)
    return _Experiment(config, cli.run_command, **kwargs)

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tfrs_selreg", "configs")

# --- aggregation on hand-made runs --------------------------------------------------------------------

# overall AUC by seed; hand-computed below.
AUC = {"none": {0: 0.70, 1: 0.72, 2: 0.74}, "reliability": {0: 0.73, 1: 0.74, 2: 0.78}, "paper": {0: 0.69}}
GATE_WEIGHT = {0: 0.4, 1: 0.5, 2: 0.6}


def _metrics(method, seed):
    segment = {"auc": AUC[method][seed], "recall@10": 0.1, "recall@20": 0.2, "ndcg@10": 0.05, "ndcg@20": 0.06,
               "users": 100, "items": 100}
    gate = None if method == "none" else {s: {"mean_weight": GATE_WEIGHT[seed], "pairs": 10}
                                          for s in results.SEGMENTS}
    return {"overall": segment, "cold_start": {**segment, "users": 20, "auc": None},
            "long_tail": {**segment, "users": 30}, "diagnostics": {"gate": gate, "probe_accuracy": None}}


def _write_run(run_dir, method, seed, per_user=None):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump(_metrics(method, seed), f)
    if per_user is not None:
        np.savez(os.path.join(run_dir, "per_user-test.npz"), **per_user)
    return run_dir


@pytest.fixture
def hand_made(tmp_path):
    """Runs of none x 3 seeds, reliability x 3 seeds, paper x 1 seed, read back from their files."""
    outputs = []
    for method, seeds in AUC.items():
        for seed in seeds:
            run_dir = _write_run(str(tmp_path / f"two_tower-{method}-seed{seed}"), method, seed)
            outputs.append(results.load_run(run_dir, "two_tower", method, seed))
    rows = results.aggregate(outputs, dataset="toy", baseline="none",
                             gates={"none": "none", "reliability": "reliability", "paper": "paper"})
    return {(r.method, r.segment, r.metric): r for r in rows}


def test_mean_std_and_difference_to_the_baseline(hand_made):
    none, rel = hand_made[("none", "overall", "auc")], hand_made[("reliability", "overall", "auc")]
    assert none.seeds == (0, 1, 2) and none.values == (0.70, 0.72, 0.74) and none.users == 100
    assert none.mean == pytest.approx(0.72) and none.std == pytest.approx(0.02)  # sqrt((.02^2 + 0 + .02^2) / 2)
    assert math.isnan(none.diff) and none.paired_seeds == 0  # the baseline is not compared with itself
    assert rel.mean == pytest.approx(0.75)
    assert rel.std == pytest.approx(math.sqrt((0.02 ** 2 + 0.01 ** 2 + 0.03 ** 2) / 2))
    assert rel.baseline_mean == pytest.approx(0.72)
    assert rel.diff == pytest.approx(0.03) and rel.rel_diff == pytest.approx(0.03 / 0.72)


def test_paired_t_test_over_seeds_by_hand(hand_made):
    rel = hand_made[("reliability", "overall", "auc")]
    # Differences 0.03, 0.02, 0.04: mean 0.03, sd 0.01, t = 0.03 / (0.01 / sqrt(3)) = 3 sqrt(3) with 2 df,
    # whose CDF is 1/2 + t / (2 sqrt(2 + t^2)): two-sided p = 1 - t / sqrt(2 + t^2) = 1 - sqrt(27/29).
    t = 3 * math.sqrt(3)
    assert rel.paired_seeds == 3
    assert rel.t_stat == pytest.approx(t)
    assert rel.t_pvalue == pytest.approx(1 - t / math.sqrt(2 + t ** 2))
    assert rel.t_pvalue == pytest.approx(0.0350983, abs=1e-6)


def test_one_seed_gives_no_std_nor_t_test(hand_made):
    paper = hand_made[("paper", "overall", "auc")]
    assert paper.mean == pytest.approx(0.69) and math.isnan(paper.std)
    assert paper.diff == pytest.approx(0.69 - 0.72) and paper.paired_seeds == 1
    assert math.isnan(paper.t_stat) and math.isnan(paper.t_pvalue)
    t, p, n = results.paired_t_test({0: 1.0, 1: 2.0}, {0: 0.5, 2: 0.2})
    assert math.isnan(t) and math.isnan(p) and n == 1


def test_gate_weight_rows_and_missing_values(hand_made):
    weight = hand_made[("reliability", "overall", results.GATE_WEIGHT)]
    assert weight.mean == pytest.approx(0.5) and weight.std == pytest.approx(0.1)
    assert math.isnan(weight.diff)  # the ungated baseline has no gate weight
    assert ("none", "overall", results.GATE_WEIGHT) not in hand_made
    cold = hand_made[("none", "cold_start", "auc")]  # null in metrics.json (a segment without users)
    assert math.isnan(cold.mean) and cold.users == 20


def test_users_matched_by_id_within_each_seed_and_pooled():
    method = {0: (np.array(["a", "b", "c"]), np.array([1.0, 2.0, 3.0])),
              1: (np.array(["a", "b"]), np.array([5.0, np.nan])),
              2: (np.array(["a"]), np.array([9.0]))}  # no baseline run for seed 2
    baseline = {0: (np.array(["b", "a", "d"]), np.array([20.0, 10.0, 40.0])),
                1: (np.array(["b", "a"]), np.array([6.0, 7.0]))}
    x, y = results.matched_users(method, baseline)
    # seed 0: a (1 vs 10), b (2 vs 20); c and d are in one run only. seed 1: a (5 vs 7); b is NaN.
    np.testing.assert_array_equal(x, [1.0, 2.0, 5.0])
    np.testing.assert_array_equal(y, [10.0, 20.0, 7.0])


def test_wilcoxon_on_a_known_tiny_case():
    x = np.array([1.0, 0.0, 3.0, 4.0, 5.0])
    y = np.zeros(5)
    y[1] = 2.0  # differences 1, -2, 3, 4, 5
    stat, p, n = results.wilcoxon_test(x, y)
    expected = stats.wilcoxon(x, y, alternative="two-sided")
    assert (stat, p, n) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue), 5)
    # By hand: the negative rank sum is 2; exactly 3 of the 32 sign patterns have a rank sum <= 2
    # ({}, {1}, {2}), so the exact two-sided p is 2 * 3 / 32.
    assert stat == 2 and p == pytest.approx(2 * 3 / 32)
    nan_stat, nan_p, pairs = results.wilcoxon_test(np.ones(3), np.ones(3))
    assert math.isnan(nan_stat) and math.isnan(nan_p) and pairs == 3


def test_per_user_test_in_the_rows(tmp_path):
    users = np.array(["u1", "u2", "u3", "u4", "u5", "u6"])
    auc = {(method, seed): np.linspace(0.5, 0.9, 6) + shift * np.array([1, 2, 3, -1, 5, 6]) + 0.01 * seed
           for method, shift in (("none", 0.0), ("reliability", 0.1)) for seed in (0, 1)}
    outputs = []
    for (method, seed), values in auc.items():
        per_user = {f"{s}/user_id": users for s in results.SEGMENTS}
        per_user.update({f"{s}/auc": values for s in results.SEGMENTS})
        order = np.arange(6)[::-1] if method == "none" else np.arange(6)  # same users, another order
        per_user["overall/user_id"], per_user["overall/auc"] = users[order], values[order]
        run_dir = _write_run(str(tmp_path / f"{method}{seed}"), method, seed, per_user)
        outputs.append(results.load_run(run_dir, "dcn", method, seed))
    rows = results.aggregate(outputs, dataset="toy", baseline="none",
                             gates={"none": "none", "reliability": "reliability"}, metrics=("auc",))
    row = next(r for r in rows if r.method == "reliability" and r.segment == "overall" and r.metric == "auc")
    expected = stats.wilcoxon(np.concatenate([auc["reliability", 0], auc["reliability", 1]]),
                              np.concatenate([auc["none", 0], auc["none", 1]]))
    assert row.user_pairs == 12
    assert row.wilcoxon_stat == pytest.approx(expected.statistic)
    assert row.wilcoxon_pvalue == pytest.approx(expected.pvalue)
    assert {r.metric for r in rows} == {"auc", results.GATE_WEIGHT}  # only the metrics asked for


def test_markdown_and_csv(hand_made, tmp_path):
    rows = list(hand_made.values())
    text = results.to_markdown(rows, ["# toy"])
    assert "## two_tower" in text and "### overall (100 users)" in text
    assert "| none | 0, 1, 2 | 0.7200 ± 0.0200 |" in text
    assert "| paper | 0 | 0.6900 |" in text
    assert "| reliability | AUC | +0.0300 | +4.17% | 0.035 (3 seeds) | - | 0 |" in text
    path = results.write_csv(rows, str(tmp_path / "results.csv"))
    with open(path) as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    row = next(r for r in table if (r["method"], r["segment"], r["metric"]) == ("reliability", "overall", "auc"))
    assert row["seeds"] == "0 1 2" and row["values"] == "0.73 0.74 0.78" and row["users"] == "100"
    assert float(row["mean"]) == pytest.approx(0.75) and float(row["diff"]) == pytest.approx(0.03)
    assert float(row["t_pvalue"]) == pytest.approx(0.0350983, abs=1e-6)
    assert row["wilcoxon_pvalue"] == "" and row["user_pairs"] == "0"


# --- config ---------------------------------------------------------------------------------------------

BASE = {"name": "toy", "dataset": "csv", "data_dir": "raw", "teacher": "random",
        "methods": [{"name": "none", "gate": "none", "seeds": [0, 1]}]}


def _load(tmp_path, values):
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(values))
    return config_lib.load(str(path)), str(path)


@pytest.mark.parametrize("values, message", [
    ({**BASE, "epochs": 3}, "unknown field(s) ['epochs']"),
    ({**BASE, "methods": [{"name": "none", "gate": "none", "seed": [0]}]}, "methods[0]: unknown field(s) ['seed']"),
    ({**BASE, "methods": [{"name": "x", "gate": "sometimes"}]}, "method 'x': gate 'sometimes' is not a gate"),
    ({**BASE, "methods": [{"name": "x", "gate": "global"}]}, "baseline 'none' is not one of the methods ['x']"),
    ({**BASE, "backbones": ["mf"]}, "backbone 'mf' is not one of"),
    ({**BASE, "train_args": {"seed": 3}}, "train_args: ['seed'] are set by the experiment"),
    ({**BASE, "methods": BASE["methods"] + [{"name": "none", "gate": "global"}]}, "repeated method name(s) ['none']"),
    ({**BASE, "methods": BASE["methods"] + [{"name": "r", "gate": "global", "teacher": "oracle"}]},
     "teacher 'oracle' of method 'r' is not one of"),
    ({**BASE, "methods": BASE["methods"] + [{"name": "r", "gate": "global", "backbones": ["dcn"]}]},
     "backbones ['dcn'] are not among"),
    ({**BASE, "methods": [{"name": "none", "gate": "none", "seeds": ["0"]}]}, "seeds[0]: expected int, got '0'"),
    ({**BASE, "backbone_seeds": {"mf": [0]}}, "backbone 'mf' is not one of"),
    ({**BASE, "backbone_seeds": {"dcn": []}}, "backbone_seeds.dcn: expected a non-empty list"),
    ({k: v for k, v in BASE.items() if k != "methods"}, "missing field(s) ['methods']"),
    ({**BASE, "teacher_score_args": {"llama-cpp": {"max-users": 5}}}, "teacher_score_args: ['llama-cpp'] are not"),
    ({**BASE, "split": "train"}, "split 'train' is not one of ('val', 'test')"),
    ({**BASE, "methods": [{"name": "f", "fusion_of": "none"}] + BASE["methods"]},
     "fusion_of 'none' is not a trained method listed before it ([])"),
    ({**BASE, "methods": BASE["methods"] + [{"name": "f", "fusion_of": "none", "seeds": [2]}]},
     "and only seeds of 'none' [0, 1]"),
])
def test_config_errors_name_the_file_and_field(tmp_path, values, message):
    with pytest.raises(config_lib.ConfigError) as e:
        _load(tmp_path, values)
    assert str(tmp_path / "experiment.yaml") in str(e.value) and message in str(e.value)


def test_command_reports_config_errors(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, "epochs": 3}))
    assert cli.main(["experiment", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "'epochs'" in err


def test_train_args_merge_into_repeated_flags_and_teachers_get_their_own_folders(tmp_path):
    config, _ = _load(tmp_path, {
        **BASE, "runs_dir": str(tmp_path / "runs"), "backbones": ["two_tower", "dcn"],
        "train_args": {"epochs": 1, "set": ["model.embedding_dim=8"]},
        "backbone_train_args": {"dcn": {"set": ["model.dcn.num_negatives=2"]}},
        "backbone_seeds": {"dcn": [0]},
        "methods": BASE["methods"] + [
            {"name": "ctrl", "gate": "reliability", "seeds": [0], "teacher": "embedding", "backbones": ["dcn"],
             "train_args": {"epochs": 2, "teacher-lambda": 0.5}}]})
    assert flags({"set": ["a=1", "b=2"], "epochs": 1, "x": True, "y": None}) == [
        "--set", "a=1", "--set", "b=2", "--epochs", "1", "--x"]
    experiment = Experiment(config)
    root = config.root
    assert [(r.backbone, r.method.name, r.seed) for r in experiment.runs] == [
        ("two_tower", "none", 0), ("two_tower", "none", 1), ("dcn", "none", 0), ("dcn", "ctrl", 0)]
    ctrl = experiment.runs[-1]
    assert ctrl.run_dir == os.path.join(root, "train", "dcn-ctrl-seed0")
    assert ctrl.train.argv == [
        "--prepared", os.path.join(root, "prepared-embedding"), "--backbone", "dcn", "--gate", "reliability",
        "--seed", "0", "--output", ctrl.run_dir, "--epochs", "2", "--set", "model.embedding_dim=8",
        "--set", "model.dcn.num_negatives=2", "--teacher-lambda", "0.5"]
    assert experiment.runs[0].train.argv[-4:] == ["--epochs", "1", "--set", "model.embedding_dim=8"]
    assert [s.title for s in experiment.data_stages] == [
        "prepare", "score", "join labels", "score (embedding)", "join labels (embedding)"]
    score_other = experiment.data_stages[3]
    assert score_other.argv[:6] == ["--prepared", os.path.join(root, "prepared-base"), "--teacher", "embedding",
                                    "--output", os.path.join(root, "labels-embedding")]
    assert ctrl.train.after == [experiment.data_stages[4]]


def test_teacher_score_args_override_score_args_for_that_teacher_only(tmp_path):
    config, _ = _load(tmp_path, {
        **BASE, "runs_dir": str(tmp_path / "runs"), "score_args": {"pairs-per-user": 6, "seed": 1},
        "teacher_score_args": {"embedding": {"max-users": 50, "pairs-per-user": 4}},
        "methods": BASE["methods"] + [{"name": "ctrl", "gate": "reliability", "teacher": "embedding"}]})
    stages = {s.title: s.argv for s in Experiment(config).data_stages}
    assert stages["score"][6:] == ["--pairs-per-user", "6", "--seed", "1", "--runner", "DirectRunner"]
    assert stages["score (embedding)"][6:] == ["--pairs-per-user", "4", "--seed", "1", "--max-users", "50",
                                            "--runner", "DirectRunner"]


def test_a_validation_sweep_evaluates_and_aggregates_the_val_split_only(tmp_path):
    config, _ = _load(tmp_path, {**BASE, "runs_dir": str(tmp_path / "runs"), "split": "val"})
    experiment = Experiment(config)
    run = experiment.runs[0]
    assert run.evaluate.argv == ["--run", run.run_dir, "--split", "val"]
    assert run.evaluate.done_file == os.path.join(run.run_dir, "metrics-val.json")
    # Its own record: a test config on the same runs does not see its evaluation as a changed command.
    assert run.evaluate.record_path == os.path.join(run.run_dir, "stage-evaluate-val.json")
    for r in experiment.runs:
        os.makedirs(r.run_dir)
        with open(os.path.join(r.run_dir, "metrics-val.json"), "w") as f:
            json.dump(_metrics("none", r.seed), f)
    _write_run(experiment.runs[0].run_dir, "reliability", 0)  # a test-split file the sweep must not read
    text = tables.aggregate(experiment, "cmd")
    assert "evaluated on the `val` split" in text and "not evaluated yet" not in text
    overall = [row for row in csv.DictReader(open(os.path.join(config.root, "results.csv")))
               if row["segment"] == "overall" and row["metric"] == "auc"]
    assert [float(row["mean"]) for row in overall] == [pytest.approx(0.71)]  # seeds 0, 1 of `none`: .70, .72
    assert os.path.exists(os.path.join(config.root, "plots", "two_tower-val_metrics_by_segment.png"))


def test_a_fusion_reference_ranks_the_runs_of_its_method_without_training(tmp_path):
    config, _ = _load(tmp_path, {**BASE, "runs_dir": str(tmp_path / "runs"), "split": "val", "methods": [
        *BASE["methods"], {"name": "fusion", "fusion_of": "none", "seeds": [1]}]})
    experiment = Experiment(config)
    of, fused = experiment.runs[1], experiment.runs[2]
    assert (of.method.name, of.seed, fused.method.name, fused.seed, fused.train) == ("none", 1, "fusion", 1, None)
    assert fused.evaluate.argv == ["--reference", "fusion", "--run", of.run_dir, "--output", fused.run_dir,
                                   "--split", "val"]
    assert list(fused.evaluate.after) == [of.train] and fused.method.gate == "none"
    assert len(experiment.stages) == len(experiment.data_stages) + 2 * 2 + 1


def test_ml_1m_experiment_uses_the_stage_folders_and_commands_of_run(tmp_path):
    """So that `tfrs-selreg experiment` re-uses what `tfrs-selreg run --config ml-1m.yaml` made."""
    runs_dir = str(tmp_path / "runs")
    experiment = Experiment(config_lib.load(os.path.join(CONFIGS, "experiment-ml-1m.yaml"), runs_dir=runs_dir))
    run_config = run_lib.load_config(os.path.join(CONFIGS, "ml-1m.yaml"), {"runs_dir": runs_dir})
    flow = run_lib.plan(dataclasses.replace(run_config, seeds=(0, 1, 2)), cli.run_command)
    planned = flow.stages
    assert [s.argv for s in planned[:3]] == [s.argv for s in experiment.data_stages[:3]]
    run_trains = {s.argv[s.argv.index("--output") + 1]: s.argv for s in planned if s.command == "train"}
    assert len(run_trains) == 9
    for r in experiment.runs:
        if r.backbone == "two_tower" and r.method.name in run_config.gates:
            argv = run_trains.pop(r.run_dir)
            k = argv.index("--epochs") + 1
            assert argv[k] == "3" and r.train.argv[k] == "2"  # ml-1m.yaml trains 3 epochs, the experiment 2
            assert argv[:k] + argv[k + 1:] == r.train.argv[:k] + r.train.argv[k + 1:]
    assert not run_trains
    export = planned[-1]
    assert (export.command, list(export.after)) == ("export", [flow.runs[[r.method.gate for r in flow.runs].index(
        run_config.export_gate)].train])
    small = config_lib.load(os.path.join(CONFIGS, "experiment-ml-latest-small.yaml"))
    assert [m.name for m in small.methods] == ["none", "global", "reliability", "random-teacher", "pointwise", "paper"]


# --- stage records ------------------------------------------------------------------------------------


def test_stage_runner_redoes_a_changed_command_and_its_downstream(tmp_path, capsys):
    calls = []

    def writer(name):
        def fn(argv):
            calls.append((name, tuple(argv)))
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / "done").write_text(" ".join(argv))
            return 0
        return fn

    def plan(a_argv):
        up = Stage("up", "prepare", a_argv, str(tmp_path / "up" / "done"), writer("up"))
        down = Stage("down", "train", ["--x"], str(tmp_path / "down" / "done"), writer("down"), after=[up])
        return up, down

    for a_argv, expected in ((["1"], ["up", "down"]), (["1"], []), (["2"], ["up", "down"])):
        calls.clear()
        runner = StageRunner()
        for stage in plan(a_argv):
            runner.run(stage)
        assert [c[0] for c in calls] == expected
    out = capsys.readouterr().out
    assert "[run] up: redo: command changed (was: tfrs-selreg prepare 1)" in out
    assert "[run] down: redo: input redone since" in out
    # A stage that failed leaves a running record: the next run redoes it even with the same argv.
    (tmp_path / "down" / "stage-train.json").write_text(json.dumps({"status": "running", "argv": ["--x"]}))
    calls.clear()
    runner = StageRunner()
    for stage in plan(["2"]):
        runner.run(stage)
    assert [c[0] for c in calls] == ["down"]


def test_outputs_without_a_stage_record_are_made_again(tmp_path, capsys):
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "done").write_text("made by hand")
    calls = []

    def fn(argv):
        calls.append(argv)
        (tmp_path / "up" / "done").write_text("made")
        return 0

    assert StageRunner().run(Stage("up", "prepare", ["1"], str(tmp_path / "up" / "done"), fn))
    assert calls == [["1"]] and "redo: no stage record" in capsys.readouterr().out


# --- the command end to end ---------------------------------------------------------------------------


def _write_dataset(directory, n_users=24, n_items=30):
    """A small CSV dataset: each user rates 4 to 11 items of a preferred block, in time order."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(os.path.join(directory, "items.csv"), "w") as f:
        f.write("item_id,title,categories\n")
        f.writelines(f"i{k},Item {k} block{k % 3},G{k % 3}\n" for k in range(n_items))
    with open(os.path.join(directory, "interactions.csv"), "w") as f:
        f.write("user_id,item_id,timestamp,rating\n")
        for u in range(n_users):
            block = [k for k in range(n_items) if k % 3 == u % 3]
            others = [k for k in range(n_items) if k % 3 != u % 3]
            n = int(rng.integers(4, 12))
            items = list(rng.choice(block, size=min(n, len(block)) - 1, replace=False)) + [int(rng.choice(others))]
            rng.shuffle(items)
            f.writelines(f"u{u},i{k},{1000 + 10 * t},4\n" for t, k in enumerate(items))
    return str(directory)


def _ran(out):
    """Titles of the stages that ran ("finished in" lines)."""
    return [line.split(": ")[0].split(" ", 2)[2] for line in out.splitlines()
            if line.startswith("[run] ") and ": finished in " in line]


def test_experiment_command_end_to_end_and_cached(tmp_path, capsys):
    raw = _write_dataset(tmp_path / "raw")
    values = {
        "name": "toy", "dataset": "csv", "data_dir": raw, "teacher": "random",
        "prepare_args": {"history-length": 3, "teacher-pairs": 2, "probe-pairs": 1, "num-shards": 1},
        "score_args": {"num-candidates": 6, "pairs-per-user": 3, "popular-pool": 10},
        "backbones": ["two_tower"],
        "train_args": {"epochs": 1, "batch-size": 16, "embedding-dim": 8, "verbose": 0},
        "baseline": "none",
        "methods": [{"name": "none", "gate": "none", "seeds": [0, 1]},
                    {"name": "reliability", "gate": "reliability", "seeds": [0, 1]}],
        "beam_args": ["--runner", "DirectRunner"],
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    argv = ["experiment", "--config", str(path), "--runs-dir", str(tmp_path / "runs")]
    root = tmp_path / "runs" / "toy"

    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    runs = [f"two_tower {m} seed {s}" for m in ("none", "reliability") for s in (0, 1)]
    assert _ran(out) == ["prepare", "score", "join labels"] + [
        f"{verb} {r}" for r in runs for verb in ("train", "evaluate")]
    assert "[run] 1/11 prepare: tfrs-selreg prepare --dataset csv" in out
    text = (root / "results.md").read_text()
    assert text in out
    assert "made by: `tfrs-selreg experiment --config" in text and "## two_tower" in text
    assert "| reliability | AUC |" in text and "### cold_start" in text
    for plot in ("two_tower-test_metrics_by_segment.png", "two_tower-gate_weight_by_bins.png"):
        assert f"](plots/{plot})" in text and (root / "plots" / plot).stat().st_size > 10_000
    with open(root / "results.csv") as f:
        table = list(csv.DictReader(f))
    # (3 metrics x none) + (3 metrics + gate weight) x reliability, per segment
    assert len(table) == 3 * (3 + 4)
    rel = next(r for r in table if (r["method"], r["segment"], r["metric"]) == ("reliability", "overall", "auc"))
    assert rel["seeds"] == "0 1" and rel["paired_seeds"] == "2" and int(rel["user_pairs"]) > 0
    with open(root / "train" / "two_tower-reliability-seed1" / "metrics.json") as f:
        assert float(rel["values"].split()[1]) == pytest.approx(json.load(f)["overall"]["auc"])

    assert cli.main(argv) == 0  # nothing changed: nothing is recomputed
    out = capsys.readouterr().out
    assert _ran(out) == [] and out.count("done already") == 11
    # Defaults written out change the argv of prepare, the join and every train stage, not their configs:
    # only the method whose learning rate really changed is recomputed.
    values["prepare_args"]["seed"] = 0
    values["train_args"]["learning-rate"] = 0.001
    values["methods"][1]["train_args"] = {"learning-rate": 0.01}
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    stamp = json.loads((root / "train" / "two_tower-none-seed0" / "stage-train.json").read_text())["stamp"]
    assert cli.main(argv) == 0  # one method changed: only its runs are recomputed
    out = capsys.readouterr().out
    assert _ran(out) == [f"{verb} two_tower reliability seed {s}" for s in (0, 1) for verb in ("train", "evaluate")]
    assert "redo: config changed: learning_rate (config.json)" in out
    assert json.loads((root / "train" / "two_tower-none-seed0" / "stage-train.json").read_text())["stamp"] == stamp
    assert "learning-rate 0.01" in (root / "results.md").read_text()

    assert cli.main(argv + ["--only-aggregate"]) == 0
    assert _ran(capsys.readouterr().out) == []



def test_run_command_end_to_end_with_export_and_cached(tmp_path, capsys):
    """`tfrs-selreg run`: the experiment's stages for one backbone, then the export and report.md."""
    raw = _write_dataset(tmp_path / "raw", n_items=120)  # the export's top-100 needs more than 100 items
    values = {
        "name": "toyrun", "dataset": "csv", "data_dir": raw, "teacher": "random",
        "prepare_args": {"history-length": 3, "teacher-pairs": 2, "probe-pairs": 1, "num-shards": 1},
        "score_args": {"num-candidates": 6, "pairs-per-user": 3, "popular-pool": 10},
        "gates": ["reliability"], "seeds": [0],
        "train_args": {"epochs": 1, "batch-size": 16, "embedding-dim": 8, "verbose": 0},
        "export_gate": "reliability", "model_name": "toy", "saved_models": str(tmp_path / "saved_models"),
        "runs_dir": str(tmp_path / "runs"), "beam_args": ["--runner", "DirectRunner"],
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    assert cli.main(["run", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert _ran(out) == ["prepare", "score", "join labels", "train two_tower reliability seed 0",
                         "evaluate two_tower reliability seed 0", "export reliability"]
    root = tmp_path / "runs" / "toyrun"
    exported = json.loads((root / "train" / "two_tower-reliability-seed0" / "exported.json").read_text())
    assert exported["path"] == str(tmp_path / "saved_models" / "toy" / "1")
    assert os.path.exists(os.path.join(exported["path"], "saved_model.pb"))
    report = (root / "report.md").read_text()
    assert "tfrs-selreg export --run" in report and "reliability" in report
    assert cli.main(["run", "--config", str(path)]) == 0  # nothing changed: nothing is recomputed
    out = capsys.readouterr().out
    assert _ran(out) == [] and out.count("done already") == 6
