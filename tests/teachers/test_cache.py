"""The result cache: whole objects, kill safety, resume, and reruns without model calls."""

import glob
import json
import os

import pytest

from beam_pipelines import score as score_job
from tfrs_selreg.data.labels import LabelRow
from tfrs_selreg.teachers import cache as cache_lib
from tfrs_selreg.teachers.base import ScoringResult


def _result(user: str, pref: float = 0.7) -> ScoringResult:
    rows = [LabelRow(user, "a", "b", pref, teacher="t"),
            LabelRow(user, "c", "d", 0.2, kind="probe", truth=0, confidence=0.6, teacher="t")]
    return ScoringResult("hash-" + user, rows, model_calls=1, tokens_in=5, tokens_out=3)


def test_results_round_trip_through_shards(tmp_path):
    writer = cache_lib.CacheWriter(str(tmp_path))
    writer.put("k1", _result("u1"))
    writer.put("k2", _result("u2"))
    writer.close()
    loaded = cache_lib.ResultCache.load(str(tmp_path))
    assert len(loaded) == 2 and loaded.shards == 1 and loaded.skipped_lines == 0
    assert loaded.get("k1") == _result("u1")
    assert "k2" in loaded and loaded.get("missing") is None


def test_missing_folder_is_an_empty_cache(tmp_path):
    assert len(cache_lib.ResultCache.load(str(tmp_path / "none"))) == 0


def test_failed_results_are_never_cached(tmp_path):
    writer = cache_lib.CacheWriter(str(tmp_path))
    with pytest.raises(ValueError, match="failed result"):
        writer.put("k", ScoringResult("h", [], failure="http_429"))


@pytest.mark.parametrize(("field", "value"), [("pref", 1.7), ("pref", float("nan")), ("item_j", "a"),
                                              ("model_calls", -1), ("tokens_in", "5"), ("tokens_out", True)])
def test_a_tampered_cache_line_is_skipped_not_served(tmp_path, field, value):
    """A cached row is held to the label contract, and usage counts to integers >= 0, like a fresh result."""
    writer = cache_lib.CacheWriter(str(tmp_path))
    writer.put("k1", _result("u1"))
    writer.put("k2", _result("u2"))
    writer.close()
    [shard] = glob.glob(str(tmp_path / "shard-*.jsonl"))
    lines = open(shard).read().splitlines()
    d = json.loads(lines[0])
    if field in ("pref", "item_j"):
        d["rows"][0][field] = value
    else:
        d[field] = value
    with open(shard, "w") as f:
        f.write("\n".join([json.dumps(d), lines[1]]) + "\n")
    loaded = cache_lib.ResultCache.load(str(tmp_path))
    assert loaded.skipped_lines == 1 and "k1" not in loaded and loaded.get("k2") == _result("u2")


def test_line_cut_by_a_kill_is_skipped_and_new_writers_use_new_shards(tmp_path):
    first = cache_lib.CacheWriter(str(tmp_path))
    first.put("k1", _result("u1"))
    first.put("k2", _result("u2"))
    first.close()
    [path] = first.paths
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # A kill during the write of a local object leaves half a line with no newline.
    with open(path, "w", encoding="utf-8") as f:
        f.write(text[:len(text) - len(text.splitlines()[1]) // 2 - 1])
    with open(os.path.join(tmp_path, "shard-other.jsonl"), "w", encoding="utf-8") as f:
        f.write("not json\n")
    second = cache_lib.CacheWriter(str(tmp_path))
    second.put("k2", _result("u2", pref=0.9))
    second.close()
    assert second.paths != first.paths
    loaded = cache_lib.ResultCache.load(str(tmp_path))
    assert loaded.skipped_lines == 2 and loaded.shards == 3
    assert loaded.get("k1") == _result("u1")
    assert loaded.get("k2").rows[0].pref == 0.9


def _run(prepared, output, **teacher_options):
    config = score_job.ScoreConfig(prepared=prepared, output=str(output), teacher="popularity",
                                   teacher_options=teacher_options)
    return score_job.score(config)


def _labels(output) -> list[str]:
    rows = []
    for path in sorted(glob.glob(os.path.join(output, "labels-*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            rows += f.read().splitlines()
    return sorted(rows)


def test_rerun_makes_no_model_call_and_writes_the_same_labels(synthetic_prepared, tmp_path,
                                                              popularity_teacher):
    out = tmp_path / "out"
    first = _run(synthetic_prepared, out)
    prompts = first["counts"]["prompts"]
    assert first["counts"]["model_calls"] == prompts == len(popularity_teacher.scored)
    assert first["counts"]["cache_hits"] == 0
    assert first["tokens"] == {"in": 10 * prompts, "out": 2 * prompts}
    labels = _labels(out)
    popularity_teacher.scored.clear()
    second = _run(synthetic_prepared, out)
    assert popularity_teacher.scored == []
    assert second["counts"]["model_calls"] == 0 and second["counts"]["prompts_scored"] == 0
    assert second["counts"]["cache_hits"] == prompts
    assert second["tokens"] is None
    assert _labels(out) == labels
    assert second["probe_accuracy"] == first["probe_accuracy"]


def test_job_killed_half_way_resumes_without_repeating_finished_prompts(synthetic_prepared, tmp_path,
                                                                        popularity_teacher):
    out = tmp_path / "out"
    full = _run(synthetic_prepared, out)
    labels = _labels(out)
    prompts = full["counts"]["prompts"]
    objects = sorted(glob.glob(os.path.join(out, "cache", "shard-*.jsonl")))
    lines = [line for path in objects for line in open(path, encoding="utf-8")]
    assert len(lines) == prompts
    finished = prompts // 2
    # What a kill during the write of the object after result `finished` leaves on a local disk; the
    # killed run never got to write its labels or manifest.
    for path in objects:
        os.remove(path)
    with open(objects[0], "w", encoding="utf-8") as f:
        f.writelines(lines[:finished])
        f.write(lines[finished][:40])
    for path in glob.glob(os.path.join(out, "labels-*.jsonl")) + [os.path.join(out, "manifest.json")]:
        os.remove(path)
    popularity_teacher.scored.clear()

    resumed = _run(synthetic_prepared, out)
    counts = resumed["counts"]
    assert counts["cache_hits"] == finished
    assert counts["model_calls"] == counts["prompts_scored"] == prompts - finished
    assert len(popularity_teacher.scored) == prompts - finished
    assert counts["cache_lines_skipped"] == 1
    assert _labels(out) == labels
    with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
        assert json.load(f)["counts"] == counts


def test_failures_are_counted_dead_lettered_and_retried_but_keys_never_written(
        synthetic_prepared, tmp_path, popularity_teacher, monkeypatch):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("TEST_TEACHER_KEY", secret)
    out = tmp_path / "out"
    failing = ["u001", "u002"]
    first = _run(synthetic_prepared, out, fail_users=failing, api_key_env="TEST_TEACHER_KEY")
    failed = sum(1 for u in popularity_teacher.scored if u in failing)
    counts = first["counts"]
    assert failed > 0
    assert counts["failures"] == {"http_429": failed} and counts["failed_prompts"] == failed
    assert counts["model_calls"] == counts["prompts"]
    assert not any(json.loads(row)["user_id"] in failing for row in _labels(out))
    dead = []
    for path in glob.glob(os.path.join(out, "dead_letter", "*.jsonl")):
        with open(path, encoding="utf-8") as f:
            dead += [json.loads(line) for line in f]
    assert len(dead) == failed
    assert {d["reason"] for d in dead} == {"http_429"} and {d["user_id"] for d in dead} == set(failing)
    assert all("Bearer ***" in d["raw"] for d in dead)
    assert len(cache_lib.ResultCache.load(str(out / "cache"))) == counts["prompts"] - failed
    for path in glob.glob(os.path.join(out, "**", "*"), recursive=True):
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                assert secret not in f.read(), path

    popularity_teacher.scored.clear()
    retry = _run(synthetic_prepared, out, api_key_env="TEST_TEACHER_KEY")
    assert retry["counts"]["model_calls"] == failed
    assert sorted(set(popularity_teacher.scored)) == failing
    assert retry["counts"]["failures"] == {}
    assert retry["counts"]["cache_hits"] == counts["prompts"] - failed
