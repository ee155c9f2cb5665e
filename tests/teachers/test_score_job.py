"""The scoring job end to end (DirectRunner), its flags, and its contract checks on teacher output."""

import glob
import json
import os
import re

import numpy as np
import pytest
from apache_beam.ml.inference.base import PredictionResult

from beam_pipelines import score as score_job
from tests.conftest import MOVIELENS_SCORE_ARGS
from tfrs_selreg.data import item_embeddings, labels, schema
from tfrs_selreg.data.labels import LabelRow
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.teachers import candidates
from tfrs_selreg.teachers.base import PairSpec, ScoringRequest, ScoringResult, Teacher, register
from tfrs_selreg.teachers.embedding_teacher import EmbeddingTeacher


def _label_rows(output) -> list[LabelRow]:
    rows = []
    for path in sorted(glob.glob(os.path.join(output, "labels-*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            rows += [labels.parse_json(line) for line in f]
    return rows


def test_embedding_job_on_bundled_movielens_slice(movielens_prepared, movielens_scored, tmp_path):
    out, result = movielens_scored
    argv = ["--prepared", movielens_prepared, "--output", out, *MOVIELENS_SCORE_ARGS]

    data = PreparedData(movielens_prepared)
    users = {u.user_id: u for u in data.users()}
    plans = candidates.plan_prompts(data.items(), data.users(), candidates.CandidateConfig(
        seed=5, long_tail_users_per_item=1, probes_per_user=4))
    counts = result["counts"]
    assert counts["users"] == len(users) == 12
    assert counts["prompts"] == len(plans) == counts["prompts_scored"] == counts["model_calls"]
    assert counts["prompts_by_segment"] == {
        s: sum(1 for p in plans if p.segment == s) for s in ("long_tail", "popular", "probe")}
    assert counts["teacher_pairs"] == counts["teacher_pairs_planned"] == \
        candidates.pair_count(plans, schema.KIND_TEACHER)
    assert counts["probes"] == counts["probes_planned"] == 48
    assert counts["cache_hits"] == 0 and counts["failures"] == {}
    assert result["teacher"] == "embedding" and result["template_sha256"]
    assert result["seed"] == 5 and result["tokens"] is None

    rows = _label_rows(out)
    assert len(rows) == counts["teacher_pairs"] + counts["probes"]
    for row in rows:
        assert labels.check_values(row) is None and row.teacher == "embedding"
        held_out = set(users[row.user_id].val_items) | set(users[row.user_id].test_items)
        assert not {row.item_i, row.item_j} & held_out
    probe_rows = [r for r in rows if r.kind == schema.KIND_PROBE]
    accuracy = sum((r.pref > 0.5) == (r.truth == 1) for r in probe_rows) / len(probe_rows)
    assert result["probe_accuracy"]["overall"]["accuracy"] == pytest.approx(accuracy)
    print(f"\nembedding teacher, 12 ml-latest-small users: probe accuracy {accuracy:.3f} "
          f"(n={len(probe_rows)}), long-tail {result['probe_accuracy']['long_tail']}")
    assert accuracy > 0.6
    with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
        assert json.load(f)["counts"] == counts
    # The teacher's item text embeddings, one per catalog item, for training without the teacher.
    by_id = {it.item_id: it for it in data.items()}
    vocabulary = data.item_vocabulary()
    vectors = item_embeddings.load(out, vocabulary)
    np.testing.assert_allclose(vectors, EmbeddingTeacher().item_vectors([by_id[i] for i in vocabulary]), atol=1e-5)
    assert item_embeddings.info(out) == {"teacher": "embedding", "model": "sentence-transformers/all-MiniLM-L6-v2",
                                         "dim": 384, "items": len(vocabulary)}

    # Rerun: all cached, no model loaded or called, the same labels.
    again = score_job.run(argv, save_main_session=False)
    assert again["counts"]["cache_hits"] == counts["prompts"]
    assert again["counts"]["model_calls"] == 0
    assert sorted(r.to_json() for r in _label_rows(out)) == sorted(r.to_json() for r in rows)
    np.testing.assert_allclose(item_embeddings.load(out, vocabulary), vectors, atol=1e-5)  # rewritten, not appended


def test_a_killed_runs_beam_temp_folders_are_removed(synthetic_prepared, tmp_path, popularity_teacher):
    out = tmp_path / "o"
    stale = out / "beam-temp-labels-0123abcd"
    stale.mkdir(parents=True)
    (stale / "partial.jsonl").write_text('{"user_id": "u1", "item_i"')
    (out / "dead_letter" / "beam-temp-x").mkdir(parents=True)
    assert score_job.main(["--prepared", synthetic_prepared, "--output", str(out), "--teacher", "popularity",
                           "--max-users", "4"]) == 0
    assert not list(out.rglob("beam-temp-*"))


def test_prompts_dropped_by_the_runner_fail_the_job_before_its_manifest(synthetic_prepared, tmp_path,
                                                                         popularity_teacher):
    from beam_pipelines.score.launcher import check_every_prompt_observed
    out = tmp_path / "o"
    # A whole job passes the check (it runs before the manifest is written).
    assert score_job.main(["--prepared", synthetic_prepared, "--output", str(out), "--teacher", "popularity",
                           "--max-users", "4"]) == 0
    assert (out / "manifest.json").exists()
    with pytest.raises(score_job.ScoreError, match="2 of 9 planned prompts never reached the end"):
        check_every_prompt_observed({"prompts": 7}, 9)
    with pytest.raises(score_job.ScoreError, match="prompts_planned 9, prompts_keyed 7"):
        check_every_prompt_observed({"prompts": 7}, 9, {"prompts_planned": 9, "prompts_keyed": 7})


@pytest.mark.parametrize("max_users", [None, 5])
def test_planning_in_the_workers_gives_the_in_memory_plans(synthetic_prepared, tmp_path, popularity_teacher,
                                                           max_users):
    """Users read from the shards, buckets of 3 users for the long-tail assignment, 2 worker threads:
    the prompts scored are those of ``candidates.plan_prompts`` on the same folder."""
    out = tmp_path / "o"
    sample = ["--max-users", str(max_users)] if max_users else []
    assert score_job.main(["--prepared", synthetic_prepared, "--output", str(out), "--teacher", "popularity",
                           "--long-tail-bucket-users", "3", *sample, "--direct_num_workers", "2",
                           "--direct_running_mode", "multi_threading"]) == 0
    data = PreparedData(synthetic_prepared)
    config = candidates.CandidateConfig(long_tail_bucket_users=3, max_users=max_users)
    plans = candidates.plan_prompts(data.items(), data.users(), config)
    catalog = {it.item_id: it for it in data.items()}
    expected = sorted(candidates.to_request(plan, catalog).content_hash() for plan in plans)
    scored = []
    for path in glob.glob(str(out / "cache" / "shard-*.jsonl")):
        with open(path, encoding="utf-8") as f:
            scored += [json.loads(line)["request_hash"] for line in f]
    assert sorted(scored) == expected and len(set(expected)) == len(plans)
    with open(out / "manifest.json", encoding="utf-8") as f:
        counts = json.load(f)["counts"]
    assert counts["users"] == (max_users or len({p.user_id for p in plans}))
    assert counts["teacher_pairs_planned"] == candidates.pair_count(plans, schema.KIND_TEACHER)
    assert counts["prompts_by_segment"]["long_tail"] == sum(p.segment == "long_tail" for p in plans) > 0


def test_main_prints_summary_and_reports_bad_flags(synthetic_prepared, tmp_path, capsys,
                                                   popularity_teacher):
    out = str(tmp_path / "o")
    assert score_job.main(["--prepared", synthetic_prepared, "--output", out, "--teacher",
                           "popularity", "--max-users", "10", "--batch-size", "4"]) == 0
    printed = capsys.readouterr().out
    assert "users 10" in printed and "probe accuracy: overall" in printed
    assert len(set(popularity_teacher.scored)) == 10

    base = ["--prepared", synthetic_prepared, "--output", out]
    bad = [
        ([], "--prepared and --output are required"),
        (base + ["--teacher-option", "novalue"], "KEY=VALUE"),
        (base + ["--teacher", "popularity", "--mode", "pairwise"], "does not take"),
        (base + ["--teacher", "gpt-17"], "unknown teacher"),
        (["--prepared", str(tmp_path / "nothing"), "--output", out], "is not a folder written"),
    ]
    for argv, message in bad:
        assert score_job.main(argv) == 1
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # a range is checked while the flags are parsed
        score_job.main(base + ["--num-candidates", "1"])
    assert exit_info.value.code == 2 and "argument --num-candidates: 1 is out of range" in capsys.readouterr().err


def test_teacher_option_values_are_parsed_as_json_or_strings():
    from apache_beam.options.pipeline_options import PipelineOptions
    o = PipelineOptions(["--prepared", "p", "--output", "o", "--teacher-option", "temperature=0.2",
                         "--teacher-option", "model=/m", "--timeout", "3"]).view_as(score_job.ScoreOptions)
    config = score_job.config_from_options(o)
    assert config.teacher_options == {"temperature": 0.2, "model": "/m", "timeout": 3.0}
    assert config.resolved_cache_dir == os.path.join("o", "cache")


def _request() -> ScoringRequest:
    from tfrs_selreg.data.prepared import Item
    return ScoringRequest("u", (Item("c"),), (Item("a"), Item("b")),
                          (PairSpec("a", "b", schema.KIND_PROBE, truth=1),))


def test_rows_that_break_the_label_contract_become_failures():
    request = _request()
    good = ScoringResult("h", [LabelRow("u", "a", "b", 0.8, kind="probe", truth=1)], model_calls=1)
    assert score_job.check_result(request, good) is good
    bad_rows = {
        "answers no requested pair": LabelRow("u", "b", "a", 0.8, kind="probe", truth=0),
        "kind/truth": LabelRow("u", "a", "b", 0.8, kind="probe", truth=0),
        "pref_out_of_range": LabelRow("u", "a", "b", 1.3, kind="probe", truth=1),
    }
    for reason, row in bad_rows.items():
        checked = score_job.check_result(request, ScoringResult("h", [row], model_calls=1))
        assert checked.failure == "schema_violation" and checked.rows == [] and reason in checked.raw
        assert checked.model_calls == 1


@register("broken")
class BrokenTeacher(Teacher):
    """Raises on every batch, like a teacher with an unhandled network error."""

    name = "broken"

    @property
    def model(self) -> str:
        return "none"

    def score_batch(self, requests):
        raise ConnectionError("connection reset by peer")


def test_model_handler_turns_a_teacher_exception_into_failures():
    handler = score_job.TeacherModelHandler("broken", {}, batch_size=8)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 8}
    teacher = handler.load_model()
    (prediction,) = handler.run_inference([_request()], teacher)
    assert isinstance(prediction, PredictionResult)
    assert prediction.inference.failure == "teacher_exception"
    assert "connection reset" in prediction.inference.raw


def test_openai_teacher_through_the_job_on_loopback(synthetic_prepared, tmp_path, monkeypatch):
    """The job drives the ``openai`` teacher like any other: HTTP 429s become dead letters, are not
    cached and are retried by the rerun; tokens are counted; the API key is written nowhere."""
    fault_server = pytest.importorskip("tests.teachers.fault_server")
    key = "sk-job-test-5a4b3c2d1e"
    monkeypatch.setenv("JOB_TEST_KEY", key)
    state = {"fail": True}

    def responder(n, payload, headers):
        if state["fail"] and n % 4 == 0:
            # A careless server echoing the credentials it got.
            return fault_server.error(429, body=json.dumps({"error": headers.get("Authorization", "")}))
        ids = re.findall(r'item_id "([^"]+)"', payload["messages"][-1]["content"])
        return fault_server.completion(json.dumps(
            {"ranking": [{"item_id": i, "score": (k % 10) / 10} for k, i in enumerate(ids)]}))

    out = str(tmp_path / "openai")
    with fault_server.FaultServer(responder) as server:
        argv = ["--prepared", synthetic_prepared, "--output", out, "--teacher", "openai",
                "--base-url", server.base_url, "--model", "scripted", "--mode", "listwise",
                "--api-key-env", "JOB_TEST_KEY", "--concurrency", "1", "--timeout", "5",
                "--teacher-option", "max_retries=0", "--teacher-option", "response_format=json_object",
                "--max-users", "6", "--long-tail-users-per-item", "0"]
        first = score_job.run(argv, save_main_session=False)
        c = first["counts"]
        assert c["failures"] == {"http_429": (c["prompts"] + 3) // 4} and c["model_calls"] == c["prompts"]
        assert first["tokens"] == {"in": 11 * (c["prompts"] - c["failed_prompts"]),
                                   "out": 7 * (c["prompts"] - c["failed_prompts"])}
        assert all(server.received[n].headers["Authorization"] == f"Bearer {key}" for n in range(3))
        state["fail"] = False
        second = score_job.run(argv, save_main_session=False)
    assert second["counts"]["model_calls"] == c["failed_prompts"]
    assert second["counts"]["cache_hits"] == c["prompts"] - c["failed_prompts"]
    assert second["counts"]["failures"] == {}
    assert len(_label_rows(out)) == second["counts"]["teacher_pairs"] + second["counts"]["probes"] > 0
    for path in glob.glob(os.path.join(out, "**", "*"), recursive=True):
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                assert key not in f.read(), path
