"""report.md of a tfrs-selreg run on tiny synthetic runs: figures, the metrics of metrics.json, a sample top-10.

The runs are real: a synthetic prepared folder (``tests/synthetic.py``), teacher labels scored by the
score job with the cheap ``popularity`` test teacher (for ``manifest.json``), two gates x two seeds
trained for two epochs and evaluated on the test split, then ``write_report`` as ``tfrs-selreg run``
calls it.
"""

import json
import os
import re

import matplotlib.image
import numpy as np
import pytest

import tests.teachers.conftest  # noqa: F401  (registers the `popularity` teacher)
from beam_pipelines import score as score_job
from tests.synthetic import make_prepared
from tfrs_selreg.data import schema
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.evaluation import evaluate, top_k
from tfrs_selreg.evaluation.ranking import SEGMENTS, RankingEvaluator
from tfrs_selreg.experiment.report import REPORT_METRICS, write_report
from tfrs_selreg.experiment.run import RunConfig
from tfrs_selreg.plots import GATE_COLOURS
from tfrs_selreg.regularizer import GATE_MODES
from tfrs_selreg.runs import config as config_lib
from tfrs_selreg.runs import folder as run_lib
from tfrs_selreg.training.train import train

GATES = ("none", "reliability")
SEEDS = (0, 1)
PLOTS = ("test_metrics_by_segment", "teacher_probe_accuracy", "gate_weight_by_bins", "training_curves")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """``(config, outputs, report text)`` of a finished run folder laid out like ``tfrs-selreg run``'s."""
    config = RunConfig(name="tiny", runs_dir=str(tmp_path_factory.mktemp("runs")), dataset="synthetic",
                       teacher="popularity", gates=GATES, seeds=SEEDS, export_gate="reliability")
    prepared = make_prepared(os.path.join(config.root, "prepared"), n_users=40, n_items=60, seed=6)
    labels = os.path.join(config.root, "labels")
    score_job.run(["--prepared", prepared, "--output", labels, "--teacher", "popularity", "--runner", "DirectRunner"],
                  save_main_session=False)
    runs = {}
    for gate in GATES:
        for seed in SEEDS:
            run_dir = os.path.join(config.root, "train", f"two_tower-{gate}-seed{seed}")
            train(config_lib.resolve(overrides={
                "prepared": prepared, "output": run_dir, "epochs": 2, "batch_size": 32, "seed": seed,
                "model.embedding_dim": 8, "regularizer.gate": gate}), verbose=0)
            evaluate.evaluate(run_dir, "test")
            runs[(gate, seed)] = run_dir
    outputs = {"runs": runs, "export_path": None, "prepared": prepared, "labels": labels}
    commands = ["tfrs-selreg train --prepared P --gate none", "tfrs-selreg evaluate --run R"]
    path = write_report(config, commands, outputs)
    assert path == os.path.join(config.root, "report.md")
    with open(path, encoding="utf-8") as f:
        return config, outputs, f.read()


def test_figures_are_valid_pngs_linked_relative_to_the_report(report):
    config, _, text = report
    for name in PLOTS:
        assert f"](plots/{name}.png)" in text, name
        path = os.path.join(config.root, "plots", f"{name}.png")
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300, name
        assert image[..., :3].std() > 0.01, f"{name} is blank"  # something is drawn
    assert "```bash\ntfrs-selreg train --prepared P --gate none\n" in text
    assert set(GATE_COLOURS) == set(GATE_MODES)  # a gate has the same colour in every figure


def test_metrics_in_the_report_are_those_of_metrics_json(report):
    _, outputs, text = report
    for (gate, seed), run_dir in outputs["runs"].items():
        with open(os.path.join(run_dir, "metrics.json")) as f:
            metrics = json.load(f)
        cells = [f"two_tower {gate} seed {seed}"]
        cells += ["-" if metrics[s][m] is None else f"{metrics[s][m]:.4f}" for s in SEGMENTS for m in REPORT_METRICS]
        cells += [f"{metrics[s]['users']}/{metrics[s]['items']}" for s in SEGMENTS]
        assert "| " + " | ".join(cells) + " |" in text
        gate_diag = metrics["diagnostics"]["gate"]
        if gate != "none":
            assert f"`{gate} seed {seed}`: mean pair weight overall {gate_diag['overall']['mean_weight']:.4f}" in text
    with open(os.path.join(outputs["runs"][("none", 0)], "metrics.json")) as f:
        probes = json.load(f)["diagnostics"]["probe_accuracy"]
    assert f"| overall | {probes['overall']['accuracy']:.4f} | {probes['overall']['probes']} |" in text
    # Two seeds per gate: results.md's mean ± s.d. and paired tables; the manifest's teacher is named.
    assert "| reliability | 0, 1 | " in text and "| vs none | metric | Δ |" in text
    assert "#### cold_start" in text and "Teacher `popularity` (model `log-popularity`)" in text


def _top_k_tables(text):
    """``{user id: [(rank, title, item id, held out), ...]}`` from the sample top-10 section."""
    section = text.split("## Sample top-10", 1)[1].split("\n## ", 1)[0]
    out = {}
    for block in section.split("### ")[1:]:
        user_id = re.match(r"[\w -]+ `([^`]+)`", block).group(1)
        rows = re.findall(r"^\| (\d+) \| (.+?) \| (\S+) \| (-?[\d.]+) \| (\*\*yes\*\*|no) \|$", block, re.M)
        out[user_id] = [(int(r[0]), r[1], r[2], r[4] == "**yes**") for r in rows]
    return section, out


def test_sample_top_10_of_a_warm_and_a_cold_user_without_their_training_items(report):
    _, outputs, text = report
    data = PreparedData(outputs["prepared"])
    users = {u.user_id: u for u in data.users()}
    titles = {i.item_id: i.title for i in data.items()}
    test_users = sorted(u for u, user in users.items() if user.test_items)
    first_warm = next(u for u in test_users if not users[u].cold_start)
    first_cold = next(u for u in test_users if users[u].cold_start)

    section, tables = _top_k_tables(text)
    assert "reliability seed 0" in section  # the export gate's first seed
    assert f"### Warm user `{first_warm}`" in section and f"### Cold-start user `{first_cold}`" in section
    assert list(tables) == [first_warm, first_cold]
    for user_id, rows in tables.items():
        user = users[user_id]
        assert [r[0] for r in rows] == list(range(1, 11))
        assert all(title == titles[item] for _, title, item, _ in rows)
        items = [item for _, _, item, _ in rows]
        assert len(set(items)) == 10 and not set(items) & set(user.train_items + user.val_items)
        assert all(held == (item in user.test_items) for _, _, item, held in rows)
        assert f"({user.history_length} training interactions)" in section
        assert titles[user.train_items[-1]] in section


def test_top_k_is_the_models_ranking_of_unseen_items(report):
    _, outputs, _ = report
    run_dir = outputs["runs"][("reliability", 0)]
    samples = top_k.sample_top_k(run_dir, outputs["prepared"], k=10)
    _, model = run_lib.load_run(run_dir, outputs["prepared"])
    data = PreparedData(outputs["prepared"])
    vocabulary = np.array(data.item_vocabulary())
    evaluator = RankingEvaluator(data, "test", schema.Schema.load(outputs["prepared"]).history_length)
    by_id = {u.user_id: u for u in data.users()}
    for sample in samples:
        user = by_id[sample["user_id"]]
        history = [""] * max(0, evaluator.histories.shape[1] - len(user.train_items)) + list(
            user.train_items[-evaluator.histories.shape[1]:])
        scores = model.score_all({schema.USER_ID: np.array([user.user_id]),
                                  schema.HISTORY: np.array([history])}).numpy()[0, 1:]
        scores[np.isin(vocabulary, user.train_items + user.val_items)] = -np.inf
        expected = vocabulary[np.argsort(-scores, kind="stable")[:10]]
        assert [row["item_id"] for row in sample["top"]] == list(expected)
        assert [row["score"] for row in sample["top"]] == pytest.approx(np.sort(scores)[::-1][:10], rel=1e-5)
        assert sample["kind"] == ("cold_start" if user.cold_start else "warm")
