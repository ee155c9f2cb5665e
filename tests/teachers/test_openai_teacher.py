"""The ``openai`` teacher against a scripted loopback server (faults) and a real llama_cpp.server."""

import dataclasses
import json
import logging
import math
import pickle
import random
import time

import pytest

from tests.teachers import fault_server, llama_server
from tests.teachers.fault_server import FaultServer, completion, error
from tfrs_selreg.data import labels, schema
from tfrs_selreg.data.prepared import Item
from tfrs_selreg.teachers import base, openai_teacher, prompts, smollm2
from tfrs_selreg.teachers.base import PairSpec, ScoringRequest
from tfrs_selreg.teachers.openai_teacher import OpenAIConfig, OpenAITeacher

FAKE_KEY = "sk-fake-7c1e0b9d-never-log-me"

ITEMS = tuple(Item(item_id=f"m{k}", title=f"Movie {k} (199{k})", categories=("Drama",)) for k in range(1, 5))
REQUEST = ScoringRequest(
    user_id="u1", context=(Item("h1", "Heat (1995)", ("Action",)),), candidates=ITEMS,
    pairs=(PairSpec("m1", "m2", schema.KIND_TEACHER), PairSpec("m3", "m4", schema.KIND_PROBE, truth=1)))
SCORES = {"m1": 0.9, "m2": 0.3, "m3": 0.2, "m4": 0.6}


def ranking(scores: dict) -> str:
    return json.dumps({"ranking": [{"item_id": k, "score": v} for k, v in scores.items()]})


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)


def make_teacher(server: FaultServer, **options) -> OpenAITeacher:
    config = {"base_url": server.base_url, "model": "scripted", "max_retries": 2, "backoff_base": 0.01,
              "backoff_max": 0.05, "timeout": 1.0, "concurrency": 2}
    return OpenAITeacher(OpenAIConfig(**{**config, **options}))


def assert_failed(result: base.ScoringResult, reason: str, calls: int):
    assert (result.failure, result.rows, result.model_calls) == (reason, [], calls)


def test_listwise_rows_follow_the_score_gap_rule():
    with FaultServer([completion(ranking(SCORES))]) as server:
        teacher = make_teacher(server)
        [result] = teacher.score_batch([REQUEST])
    assert result.failure is None
    assert (result.model_calls, result.tokens_in, result.tokens_out) == (1, 11, 7)
    assert result.request_hash == REQUEST.content_hash()
    assert [(r.item_i, r.item_j, r.kind, r.truth) for r in result.rows] == [
        ("m1", "m2", "teacher", None), ("m3", "m4", "probe", 1)]
    assert [r.pref for r in result.rows] == pytest.approx([sigmoid((0.9 - 0.3) / 0.1), sigmoid((0.2 - 0.6) / 0.1)])
    for row in result.rows:
        assert labels.check_values(row) is None
        assert labels.parse_json(row.to_json()) == row
        assert (row.user_id, row.teacher) == ("u1", "openai")
    [received] = server.received
    assert received.path == "/v1/chat/completions"
    assert received.headers["Authorization"] == f"Bearer {FAKE_KEY}"
    schema_sent = received.payload["response_format"]["json_schema"]["schema"]
    assert schema_sent["properties"]["ranking"]["items"]["properties"]["item_id"]["enum"] == ["m1", "m2", "m3", "m4"]


def test_json_object_schema_is_the_llama_cpp_python_form():
    with FaultServer([completion(ranking(SCORES))]) as server:
        make_teacher(server, response_format="json_object_schema").score_batch([REQUEST])
    response_format = server.received[0].payload["response_format"]
    assert response_format["type"] == "json_object"
    assert response_format["schema"] == prompts.ranking_schema(["m1", "m2", "m3", "m4"])


@pytest.mark.parametrize("first", [
    error(429), error(429, retry_after="0"), error(500), error(503),
    completion(ranking(SCORES), delay=1.0),  # longer than the 0.3 s timeout
], ids=["429", "429-retry-after", "500", "503", "timeout"])
def test_transient_fault_then_success(first):
    with FaultServer([first, completion(ranking(SCORES))]) as server:
        teacher = make_teacher(server, timeout=0.3)
        [result] = teacher.score_batch([REQUEST])
    assert result.failure is None and len(result.rows) == 2
    assert result.model_calls == 2 and len(server.received) == 2
    assert (result.tokens_in, teacher.stats["retries"]) == (11, 1)


def test_retry_after_is_honoured():
    with FaultServer([error(429, retry_after="1"), completion(ranking(SCORES))]) as server:
        teacher = make_teacher(server, backoff_max=5.0)
        start = time.monotonic()
        [result] = teacher.score_batch([REQUEST])
    assert result.failure is None and result.model_calls == 2
    assert time.monotonic() - start >= 1.0


@pytest.mark.parametrize("reply,reason,calls", [
    (error(500), "http_5xx", 3),
    (error(429), "http_429", 3),
    (completion(ranking(SCORES), delay=1.0), "timeout", 3),
    (error(401, body='{"error": "bad key"}'), "http_4xx", 1),
    (fault_server.Reply(status=200, body="<html>proxy</html>"), "invalid_response", 1),
], ids=["500-forever", "429-forever", "timeout-forever", "401", "not-json-body"])
def test_persistent_fault_fails_after_max_retries(reply, reason, calls):
    with FaultServer([reply]) as server:
        [result] = make_teacher(server, timeout=0.3).score_batch([REQUEST])
    assert_failed(result, reason, calls)
    assert len(server.received) == calls
    assert result.raw


@pytest.mark.parametrize("body", ["", "x" * 200], ids=["trickled-headers", "trickled-body"])
def test_timeout_is_a_deadline_for_the_whole_request(body):
    """A server sending one byte every 0.1 s never leaves a read silent for --timeout; the deadline still holds."""
    reply = fault_server.Reply(body=body or json.dumps({"choices": []}), trickle=0.1)
    with FaultServer([reply]) as server:
        start = time.monotonic()
        [result] = make_teacher(server, timeout=1.0, max_retries=1).score_batch([REQUEST])
        elapsed = time.monotonic() - start
    assert_failed(result, "timeout", 2)
    assert elapsed < 2 * 1.0 + 1.5  # two attempts of at most 1 s each, plus backoff and slack


@pytest.mark.parametrize("usage", [{"prompt_tokens": -5}, {"completion_tokens": "7"}, {"prompt_tokens": 1.5}])
def test_usage_counts_that_are_not_counts_make_the_answer_invalid(usage):
    body = json.loads(completion(ranking(SCORES)).body)
    body["usage"] = usage
    with FaultServer([fault_server.Reply(body=json.dumps(body))]) as server:
        [result] = make_teacher(server).score_batch([REQUEST])
    assert_failed(result, "invalid_response", 1)


def test_connection_error_after_max_retries():
    url = f"http://127.0.0.1:{llama_server.free_port()}/v1"  # nobody listens there
    teacher = OpenAITeacher(OpenAIConfig(base_url=url, max_retries=1, backoff_base=0.01, timeout=1.0))
    [result] = teacher.score_batch([REQUEST])
    assert_failed(result, "connection_error", 2)


@pytest.mark.parametrize("content,reason", [
    ('{"ranking": [{"item_id": "m1", "score": 0.9}, {"item_id": "m2", "sc', "invalid_json"),
    ("", "invalid_json"),
    ('{"ranking": [{"item_id": "m1"}]}', "schema_violation"),
    ('{"items": [{"item_id": "m1", "score": 0.5}]}', "schema_violation"),
    ('{"ranking": [{"item_id": "m1", "score": "high"}]}', "schema_violation"),
    (ranking({"m1": 0.9, "m9": 0.3}), "unknown_item"),
    ('{"ranking": [{"item_id": "m1", "score": 0.9}, {"item_id": "m1", "score": 0.2}]}', "unknown_item"),
    (ranking({"m1": 7, "m2": 3, "m3": 1, "m4": 0}), "score_out_of_range"),
    (ranking({"m1": -0.1, "m2": 0.3, "m3": 0.2, "m4": 0.6}), "score_out_of_range"),
    (ranking({"m2": 0.3, "m3": 0.2}), "incomplete_ranking"),
], ids=["truncated", "empty", "no-score", "wrong-key", "text-score", "unknown-id", "duplicate-id",
        "0-10-scale", "negative", "no-pair-scored"])
def test_bad_answer_is_a_failure_without_rows_or_retry(content, reason):
    with FaultServer([completion(content)]) as server:
        [result] = make_teacher(server).score_batch([REQUEST])
    assert_failed(result, reason, 1)
    assert result.raw == content and result.tokens_in == 11


def test_explicit_score_scale_rescales_a_0_to_10_answer():
    scores10 = {k: 10 * v for k, v in SCORES.items()}
    with FaultServer([completion(ranking(scores10))]) as server:
        teacher = make_teacher(server, score_scale=10)
        [result] = teacher.score_batch([REQUEST])
    assert [r.pref for r in result.rows] == pytest.approx([sigmoid(6.0), sigmoid(-4.0)])
    assert "from 0 (unlikely) to 10 (very likely)" in server.received[0].payload["messages"][1]["content"]
    assert "score_scale=10" in teacher.template_version


def test_pairs_with_an_omitted_item_get_no_row_and_are_counted():
    with FaultServer([completion(ranking({"m1": 0.9, "m2": 0.3, "m3": 0.2}))]) as server:
        teacher = make_teacher(server)
        [result] = teacher.score_batch([REQUEST])
    assert result.failure is None
    assert [(r.item_i, r.item_j) for r in result.rows] == [("m1", "m2")]
    assert teacher.stats["pairs_unscored"] == 1


def pairwise_responder(logprobs_by_order):
    """Answers a pairwise prompt by which item is shown as A: ``{(item_a_title, order): logprobs}``."""
    def respond(n, payload, headers):
        prompt = payload["messages"][1]["content"]
        first = prompt.split("\nA: ")[1].split(" (")[0]
        logprobs = logprobs_by_order[first]
        return completion(logprobs[0][0].strip() if logprobs else "A", logprobs=logprobs or None,
                          prompt_tokens=100, completion_tokens=1)
    return respond


def test_pairwise_two_orders_from_logprobs():
    request = ScoringRequest(user_id="u1", context=REQUEST.context, candidates=ITEMS[:2],
                             pairs=(PairSpec("m1", "m2", schema.KIND_PROBE, truth=1),))
    # Order 1 shows m1 as A, order 2 shows m2 as A; leading spaces, lower case and duplicates of the
    # chosen token all count for their letter.
    by_first = {"Movie 1": [(" A", -0.2), ("a", -2.5), ("B", -1.9), ("The", -3.0)],
                "Movie 2": [("A", -0.4), (" B", -1.2), ("b", -3.1)]}
    with FaultServer(pairwise_responder(by_first)) as server:
        teacher = make_teacher(server, mode="pairwise", top_logprobs=5)
        [result] = teacher.score_batch([request])
    p1 = sigmoid(math.log(math.exp(-0.2) + math.exp(-2.5)) - (-1.9))
    p2 = sigmoid(-0.4 - math.log(math.exp(-1.2) + math.exp(-3.1)))
    [row] = result.rows
    assert row.pref == pytest.approx((p1 + 1 - p2) / 2)
    assert (row.kind, row.truth, row.confidence) == ("probe", 1, None)
    assert (result.model_calls, result.tokens_in, result.tokens_out) == (2, 200, 2)
    sent = server.received[0].payload
    assert (sent["logprobs"], sent["top_logprobs"], sent["max_tokens"]) == (True, 5, 1)
    assert "template_version" in teacher.describe() and teacher.template_version == "pairwise-v1"


@pytest.mark.parametrize("answers,pref", [(("A", "A"), 0.5), (("A", "B"), 0.75), (("B", "A"), 0.25)])
def test_pairwise_without_logprobs_falls_back_to_smoothed_votes(answers, pref):
    request = ScoringRequest(user_id="u1", context=(), candidates=ITEMS[:2],
                             pairs=(PairSpec("m1", "m2", schema.KIND_TEACHER),))
    with FaultServer([completion(answers[0]), completion(answers[1])]) as server:
        [result] = make_teacher(server, mode="pairwise", concurrency=1).score_batch([request])
    [row] = result.rows
    assert (row.pref, row.confidence) == (pref, abs(2 * pref - 1))


def test_pairwise_fails_as_a_whole():
    with FaultServer([completion("Maybe")]) as server:
        [result] = make_teacher(server, mode="pairwise").score_batch([REQUEST])
    assert_failed(result, "no_answer", 4)

    def one_order_down(n, payload, headers):
        prompt = payload["messages"][1]["content"]
        return error(500) if "A: Movie 4" in prompt else completion("A", logprobs=[("A", -0.1), ("B", -2.0)])
    with FaultServer(one_order_down) as server:
        [result] = make_teacher(server, mode="pairwise", max_retries=1).score_batch([REQUEST])
    assert_failed(result, "http_5xx", 5)  # 3 answered calls + 2 attempts of the failing one


def test_batches_keep_request_order_under_concurrency():
    batch = [dataclasses.replace(REQUEST, user_id=f"u{k}") for k in range(6)]

    def answer(n, payload, headers):
        rng = random.Random(n)
        return completion(ranking({k: rng.random() for k in SCORES}), delay=0.05 * (n % 3))
    with FaultServer(answer) as server:
        results = make_teacher(server, concurrency=3).score_batch(batch)
    assert [r.request_hash for r in results] == [r.content_hash() for r in batch]
    assert [r.rows[0].user_id for r in results] == [r.user_id for r in batch]


def test_api_key_never_leaks(caplog):
    def echo_headers(n, payload, headers):
        # A hostile or buggy server that echoes the request headers back in its error bodies.
        status = 500 if n < 3 else 400
        return error(status, body=json.dumps({"error": "echo", "headers": headers}))
    caplog.set_level(logging.DEBUG)
    with FaultServer(echo_headers) as server:
        teacher = make_teacher(server)
        results = teacher.score_batch([REQUEST, REQUEST])
    assert server.received[0].headers["Authorization"] == f"Bearer {FAKE_KEY}"
    assert {r.failure for r in results} <= {"http_5xx", "http_4xx"}
    assert all(openai_teacher.REDACTED in r.raw for r in results)
    written = [repr(results), caplog.text, json.dumps(teacher.describe()), repr(teacher.config),
               pickle.dumps(teacher).decode("latin-1")]
    with pytest.raises(ValueError) as missing:
        OpenAITeacher(OpenAIConfig(base_url="https://api.example.com/v1", api_key_env="NO_SUCH_KEY_VAR"))
    written.append(str(missing.value))
    for text in written:
        assert FAKE_KEY not in text


def test_a_malformed_pairwise_answer_fails_its_prompt_only_and_never_logs_the_key(caplog):
    """5 % of the answers carry a log-probability that is not a number (here: the echoed key)."""
    batch = [dataclasses.replace(REQUEST, user_id=f"u{k}") for k in range(40)]
    bad_users = {"u3", "u17"}

    def answer(n, payload, headers):
        prompt = payload["messages"][-1]["content"]
        logprob = FAKE_KEY if any(f"[{u}]" in prompt for u in bad_users) else -0.1
        body = json.loads(completion("A", logprobs=[("A", -0.1), ("B", -2.0)]).body)
        body["choices"][0]["logprobs"]["content"][0]["top_logprobs"][0]["logprob"] = logprob
        return fault_server.Reply(body=json.dumps(body))

    caplog.set_level(logging.DEBUG)
    with FaultServer(answer) as server:
        teacher = make_teacher(server, mode="pairwise", concurrency=4)
        teacher._pairwise_payload = _tagging(teacher._pairwise_payload)  # the prompt names its user
        results = teacher.score_batch(batch)
    failed = {r.rows[0].user_id if r.rows else b.user_id for r, b in zip(results, batch) if r.failure}
    assert failed == bad_users
    assert all(r.failure == openai_teacher.FAIL_INVALID_RESPONSE for r in results if r.failure)
    assert all(len(r.rows) == 2 for r in results if not r.failure)
    assert sum(r.model_calls for r in results) == len(server.received) == 40 * 4
    for text in (caplog.text, repr(results)):
        assert FAKE_KEY not in text


def _tagging(payload_fn):
    def payload(request, item_a, item_b):
        out = payload_fn(request, item_a, item_b)
        out["messages"][-1]["content"] += f"\n[{request.user_id}]"
        return out
    return payload


def test_an_unexpected_exception_leaves_score_batch_without_the_key(monkeypatch):
    with FaultServer([completion(ranking(SCORES))]) as server:
        teacher = make_teacher(server)

        def boom(*args):
            raise KeyError(f"server said {FAKE_KEY}")
        monkeypatch.setattr(teacher, "_listwise_result", boom)
        with pytest.raises(RuntimeError) as raised:
            teacher.score_batch([REQUEST])
    assert FAKE_KEY not in str(raised.value) and raised.value.__cause__ is None
    assert openai_teacher.REDACTED in str(raised.value)


def test_missing_key_policy(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ValueError, match="OPENAI_API_KEY is not set"):
        OpenAITeacher(OpenAIConfig(base_url="https://api.openai.com/v1"))
    OpenAITeacher(OpenAIConfig(base_url="https://vllm.internal:8000/v1", api_key_env=""))
    with FaultServer([completion(ranking(SCORES))]) as server:  # loopback: no key needed
        [result] = make_teacher(server).score_batch([REQUEST])
    assert result.failure is None
    assert "Authorization" not in server.received[0].headers


def test_registry_and_pickling():
    teacher = base.create("openai", base_url="http://127.0.0.1:9/v1", model="m", mode="pairwise")
    assert isinstance(teacher, OpenAITeacher) and teacher.model == "m"
    assert pickle.loads(pickle.dumps(teacher)).config == teacher.config
    with pytest.raises(ValueError, match="mode must be one of"):
        base.create("openai", mode="pointwise")


def test_backoff_and_retry_after_are_urllib3s_capped_at_backoff_max():
    from urllib3.response import HTTPResponse

    from tfrs_selreg.teachers import http_retry

    retry = http_retry.retry_policy(max_retries=5, backoff_base=1.0, backoff_max=5.0)
    waits = []
    for _ in range(4):
        retry = retry.increment("POST", "/v1/chat/completions", response=HTTPResponse(status=500))
        waits.append(retry.get_backoff_time())
    assert waits[0] == 0 and 2 <= waits[1] <= 3 and 4 <= waits[2] <= 5 and waits[3] == 5
    assert retry.is_exhausted() is False
    assert retry.get_retry_after(HTTPResponse(status=429, headers={"Retry-After": "30"})) == 5.0
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry.get_retry_after(HTTPResponse(status=429, headers={"Retry-After": past})) == 0
    assert retry.get_retry_after(HTTPResponse(status=429, headers={"Retry-After": "2.5"})) is None  # not RFC 9110


# ---------------------------------------------------------------------------------------------
# A real OpenAI-compatible server: llama_cpp.server with SmolLM2-135M-Instruct.

FAILURES = {"invalid_json", "schema_violation", "unknown_item", "score_out_of_range", "incomplete_ranking",
            "no_answer"}


@pytest.fixture(scope="module")
def smollm2_server():
    with llama_server.llama_server(smollm2.gguf_path(), n_threads=2) as url:
        yield url


def check_results(requests, results):
    assert [r.request_hash for r in results] == [q.content_hash() for q in requests]
    for request, result in zip(requests, results):
        assert result.model_calls >= 1 and result.tokens_in > 0
        if result.failure:
            assert result.failure in FAILURES and result.rows == [] and result.raw
            continue
        pairs = {(p.item_i, p.item_j): p for p in request.pairs}
        for row in result.rows:
            assert labels.check_values(row) is None and 0.0 <= row.pref <= 1.0
            assert labels.parse_json(row.to_json()) == row
            assert row.kind == pairs[(row.item_i, row.item_j)].kind
            assert row.truth == pairs[(row.item_i, row.item_j)].truth


def test_real_server_listwise(smollm2_server):
    requests = llama_server.movielens_requests(2, n_candidates=3, context_length=5)
    teacher = OpenAITeacher(OpenAIConfig(
        base_url=smollm2_server, model="smollm2", response_format="json_object_schema", max_tokens=120,
        concurrency=1, timeout=120, max_retries=0))
    results = teacher.score_batch(requests)
    check_results(requests, results)
    assert all(r.model_calls == 1 and r.tokens_out > 0 for r in results)


def test_real_server_pairwise(smollm2_server):
    requests = llama_server.movielens_requests(2, n_candidates=3, context_length=5, seed=1)
    teacher = OpenAITeacher(OpenAIConfig(
        base_url=smollm2_server, model="smollm2", mode="pairwise", concurrency=1, timeout=120, max_retries=0))
    results = teacher.score_batch(requests)
    check_results(requests, results)
    for result in results:
        assert result.failure is None and len(result.rows) == 2 and result.model_calls == 4
        answers = json.loads(result.raw)
        # The server gives log-probabilities, so no row falls back to letter votes.
        assert all(None not in a["p_a"] for a in answers)
        assert all(row.confidence is None for row in result.rows)
