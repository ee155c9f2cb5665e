"""The ``random`` control teacher: deterministic, uninformative labels through the real scoring job."""

import glob
import json
import os

import numpy as np
import pytest

from beam_pipelines import score as score_job
from tfrs_selreg.data import labels, schema
from tfrs_selreg.data.prepared import Item
from tfrs_selreg.teachers import registry
from tfrs_selreg.teachers.base import PairSpec, ScoringRequest


def _request(user: str, n: int = 40) -> ScoringRequest:
    items = tuple(Item(str(i), f"item {i}") for i in range(n))
    pairs = tuple(PairSpec(str(i), str(i + 1), schema.KIND_PROBE, truth=1) for i in range(0, n - 1, 2))
    return ScoringRequest(user, items[:3], items, pairs)


def test_labels_are_a_function_of_seed_and_pair():
    first = registry.create("random", seed=3).score_batch([_request("u1"), _request("u2")])
    again = registry.create("random", seed=3).score_batch([_request("u2")])
    other = registry.create("random", seed=4).score_batch([_request("u1")])
    prefs = [row.pref for row in first[0].rows]
    assert [row.pref for row in again[0].rows] == [row.pref for row in first[1].rows]
    assert prefs != [row.pref for row in first[1].rows]
    assert prefs != [row.pref for row in other[0].rows]
    for row in first[0].rows:
        assert 0.0 <= row.pref < 1.0
        assert row.confidence == abs(2 * row.pref - 1)
        assert labels.check_values(row) is None


def test_preferences_are_uniform_and_carry_no_signal():
    rows = [row for r in registry.create("random").score_batch([_request(f"u{k}") for k in range(200)])
            for row in r.rows]
    prefs = np.array([row.pref for row in rows])
    assert len(prefs) == 200 * 20
    # Uniform(0, 1): mean 1/2, variance 1/12; 4,000 draws put both well inside these bounds.
    assert abs(prefs.mean() - 0.5) < 0.02
    assert abs(prefs.var() - 1 / 12) < 0.01
    # Every probe's truth is item_i, so the accuracy is the share of pref > 0.5: chance.
    assert abs((prefs > 0.5).mean() - 0.5) < 0.03


def test_score_job_with_the_random_teacher(movielens_prepared, tmp_path):
    out = str(tmp_path / "scored")
    score_job.run(["--prepared", movielens_prepared, "--output", out, "--teacher", "random",
                   "--teacher-option", "seed=7", "--runner", "DirectRunner"], save_main_session=False)
    with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    assert manifest["teacher"] == "random"
    assert manifest["random_seed"] == 7
    rows = [labels.parse_json(line) for path in glob.glob(os.path.join(out, "labels-*.jsonl"))
            for line in open(path, encoding="utf-8")]
    assert rows and all(row.teacher == "random" for row in rows)
    probes = manifest["probe_accuracy"]["overall"]
    assert probes["probes"] > 0
    assert 0.3 < probes["accuracy"] < 0.7


@pytest.mark.parametrize(("options", "message"), [
    ({"bogus": 1}, r"teacher 'random' does not take an option it was given \(\['bogus'\]\)"),
    ({"seed": "abc"}, r"teacher 'random': a bad option value \(seed='abc'\)"),
])
def test_bad_teacher_options_name_the_teacher_and_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        registry.create("random", **options)
