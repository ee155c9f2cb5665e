"""The scoring job with the `openai` teacher against a real llama.cpp server (SmolLM2) on 127.0.0.1.

Checks labels and manifest in both modes, and that a job whose server is killed mid-run records the
lost prompts as failures and, restarted against a new server, resumes from the cache.
"""

import glob
import json
import os
import threading
import time

import pytest

from beam_pipelines import score as score_job
from tests.teachers import llama_server
from tfrs_selreg.data import labels, schema
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.teachers import smollm2

pytest.importorskip("llama_cpp")


def _argv(prepared, out, url, mode, max_users, *extra):
    options = ["max_retries=0", "timeout=120"]
    if mode == "listwise":
        options += ["response_format=json_object_schema", "max_tokens=120"]
    argv = ["--prepared", prepared, "--output", out, "--teacher", "openai", "--base-url", url,
            "--model", "smollm2", "--mode", mode, "--max-users", str(max_users), "--context-length", "3",
            "--num-candidates", "3" if mode == "listwise" else "2", "--pairs-per-user", "1",
            "--probes-per-user", "1", "--long-tail-users-per-item", "0", "--concurrency", "1",
            "--runner", "DirectRunner", *extra]
    for option in options:
        argv += ["--teacher-option", option]
    return argv


def _rows(out):
    rows = []
    for path in sorted(glob.glob(os.path.join(out, "labels-*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            rows += [labels.parse_json(line) for line in f]
    return rows


def _dead_letters(out):
    lines = []
    for path in glob.glob(os.path.join(out, "dead_letter", "*.jsonl")):
        with open(path, encoding="utf-8") as f:
            lines += [json.loads(line) for line in f]
    return lines


def _check_labels(prepared, out, manifest):
    users = {u.user_id: u for u in PreparedData(prepared).users()}
    rows = _rows(out)
    for row in rows:
        assert labels.check_values(row) is None and row.teacher == "openai"
        held_out = set(users[row.user_id].val_items) | set(users[row.user_id].test_items)
        assert not {row.item_i, row.item_j} & held_out
    counts = manifest["counts"]
    assert counts["prompts"] == counts["cache_hits"] + counts["prompts_scored"]
    assert counts["failed_prompts"] == sum(counts["failures"].values()) == len(_dead_letters(out))
    assert counts["teacher_pairs"] == sum(1 for r in rows if r.kind == schema.KIND_TEACHER)
    assert counts["probes"] == sum(1 for r in rows if r.kind == schema.KIND_PROBE)
    return rows


@pytest.mark.parametrize("mode", ["listwise", "pairwise"])
def test_openai_teacher_job_against_llama_cpp_server(movielens_prepared, tmp_path, mode):
    out = str(tmp_path / mode)
    with llama_server.llama_server(smollm2.gguf_path()) as url:
        manifest = score_job.run(_argv(movielens_prepared, out, url, mode, 2), save_main_session=False)
    rows = _check_labels(movielens_prepared, out, manifest)
    counts = manifest["counts"]
    assert counts["prompts"] >= 4 and counts["model_calls"] >= counts["prompts"]
    assert manifest["tokens"]["in"] > 0 and manifest["tokens"]["out"] > 0
    if mode == "pairwise":
        # Log-probabilities always give an answer: every prompt yields its rows.
        assert counts["failed_prompts"] == 0 and rows
        assert manifest["probe_accuracy"]["overall"]["probes"] == counts["probes"] > 0


def test_killed_server_then_restarted_job_resumes_from_cache(movielens_prepared, tmp_path):
    out = str(tmp_path / "resume")
    result = {}
    with llama_server.llama_server(smollm2.gguf_path()) as url:
        job = threading.Thread(target=lambda: result.update(first=score_job.run(
            _argv(movielens_prepared, out, url, "pairwise", 4), save_main_session=False)))
        job.start()
        deadline = time.monotonic() + 600
        while not any(os.path.getsize(p) for p in glob.glob(os.path.join(out, "cache", "*.jsonl"))):
            assert time.monotonic() < deadline and job.is_alive(), "no prompt finished before the kill"
            time.sleep(0.2)
    # Leaving the block killed the server while the job still had prompts to send.
    job.join(timeout=600)
    first = result["first"]["counts"]
    assert first["failed_prompts"] > 0 and set(first["failures"]) <= {"connection_error", "timeout"}
    finished = first["prompts"] - first["failed_prompts"]
    assert finished >= 1

    with llama_server.llama_server(smollm2.gguf_path()) as url:
        second = score_job.run(_argv(movielens_prepared, out, url, "pairwise", 4), save_main_session=False)
    counts = second["counts"]
    assert counts["prompts"] == first["prompts"]
    assert counts["cache_hits"] == finished
    assert counts["prompts_scored"] == first["failed_prompts"] and counts["failed_prompts"] == 0
    _check_labels(movielens_prepared, out, second)
