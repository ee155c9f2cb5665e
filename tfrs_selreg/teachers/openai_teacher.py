"""The ``openai`` teacher: any OpenAI-compatible Chat Completions endpoint.

The paper's teacher is GPT-4o-mini; vLLM, llama.cpp's server and ``python -m llama_cpp.server`` speak
the same API, so one client serves all of them. ``base_url`` is the API root that ends in ``/v1``;
requests go to ``{base_url}/chat/completions``. Two modes (prompts and rules in :mod:`.prompts`):

- ``listwise``: one call per request, asking for ``{"ranking": [{"item_id", "score"}]}`` over all
  candidates, constrained by ``response_format``: ``json_schema`` (OpenAI's structured outputs),
  ``json_object_schema`` (``{"type": "json_object", "schema": ...}``, the form llama-cpp-python's
  server understands: version 0.3.36 answers a ``json_schema`` request with HTTP 500, a validation
  error, which would be retried as ``http_5xx``), ``json_object`` or ``none``.
- ``pairwise``: two one-token calls per pair (both orders) with ``logprobs`` and ``top_logprobs``;
  without log-probabilities in the answer, the answer letters are used as smoothed votes
  (:func:`prompts.vote_pref`).

**API key.** Read from the environment variable named by ``api_key_env`` (``OPENAI_API_KEY``) for each
call and sent only as ``Authorization: Bearer``; the teacher never stores it (so it is never pickled),
and any text this module keeps or logs (raw answers, error bodies, messages) has it replaced by
``[REDACTED]``. A missing key is an error unless ``api_key_env=""`` (a
server that needs none) or ``base_url`` is a loopback address (``localhost``, ``127.0.0.0/8``,
``::1``): then no header is sent.

**Failures.** Each call is retried on HTTP 429, HTTP 5xx, timeouts and connection errors, at most
``max_retries`` times, by ``urllib3.Retry`` with its back-off, honouring ``Retry-After``
(:mod:`.http_retry`); then the request fails with ``http_429``, ``http_5xx``, ``timeout`` or
``connection_error``. Other HTTP errors
(``http_4xx``, e.g. a bad key or model name) and malformed answers are not retried: the answer would
be the same. A request fails as a whole when any of its calls fails, so a failed request has no rows
and can be scored again later; ``raw`` keeps what the server said. ``model_calls`` counts every HTTP
attempt (retries included) and ``tokens_in``/``tokens_out`` add up the ``usage`` of every answered call.
``stats`` counts retries and listwise pairs left without a label because the model omitted an item.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import logging
import math
import os
import urllib.parse
from collections.abc import Sequence

from tfrs_selreg.data import labels
from tfrs_selreg.teachers import base, http_retry, prompts
from tfrs_selreg.teachers.http_retry import (  # noqa: F401  (the failure reasons of this teacher)
    FAIL_CONNECTION_ERROR,
    FAIL_HTTP_4XX,
    FAIL_HTTP_5XX,
    FAIL_HTTP_429,
    FAIL_TIMEOUT,
)

logger = logging.getLogger(__name__)


class _RedactKeys(logging.Filter):
    """Replaces the API keys of live teachers in every record of this module's logger, arguments included."""

    keys: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.keys:
            message = record.getMessage()
            for key in self.keys:
                message = message.replace(key, REDACTED)
            record.msg, record.args = message, ()
        return True


_REDACT = _RedactKeys()
logger.addFilter(_REDACT)

FAIL_INVALID_RESPONSE = "invalid_response"

RESPONSE_FORMATS = ("json_schema", "json_object_schema", "json_object", "none")
REDACTED = "[REDACTED]"
# Raw server bodies kept for dead letters are cut to this many characters.
MAX_RAW_CHARS = 4000


@dataclasses.dataclass(frozen=True)
class OpenAIConfig:
    """Options of the ``openai`` teacher.

    Attributes:
      base_url: API root ending in ``/v1`` (``http://127.0.0.1:8000/v1`` for a local server).
      model: the endpoint's model name; with the prompt version it keys the scoring cache.
      mode: ``listwise`` (the paper's prompt) or ``pairwise`` (A/B with log-probabilities).
      api_key_env: environment variable holding the key; ``""`` for a server that needs none.
      concurrency: calls in flight at once (threads).
      timeout: the deadline of one attempt, in seconds: connecting, sending and reading the whole
        answer (a server that trickles its answer is cut off there, not only a silent one).
      max_retries: retries of one call after a 429, 5xx, timeout or connection error.
      backoff_base: urllib3's back-off factor: waits of ``backoff_base * 2 ** (n - 1)`` from the second
        retry on, plus up to ``backoff_base`` of jitter (:mod:`.http_retry`).
      backoff_max: longest wait between attempts, ``Retry-After`` included.
      temperature: sampling temperature of the model (0: its most likely answer).
      response_format: how the listwise JSON is requested: one of ``RESPONSE_FORMATS``.
      max_tokens: answer budget of a listwise call (pairwise calls ask for 1 token).
      top_logprobs: alternatives per token in a pairwise answer (OpenAI allows up to 20).
      score_scale: the listwise prompt asks for scores in ``[0, score_scale]``; they are divided by it.
      pref_temperature: listwise ``pref = sigmoid((t_i - t_j) / pref_temperature)``.
    """

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    mode: str = prompts.MODE_LISTWISE
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    timeout: float = 60.0
    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    temperature: float = 0.0
    response_format: str = "json_schema"
    max_tokens: int = 1024
    top_logprobs: int = 10
    score_scale: float = 1.0
    pref_temperature: float = 0.1

    def __post_init__(self):
        if self.mode not in prompts.MODES:
            raise ValueError(f"mode must be one of {prompts.MODES}, got {self.mode!r}")
        if self.response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {RESPONSE_FORMATS}, got {self.response_format!r}")
        if urllib.parse.urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        for name in ("concurrency", "timeout", "score_scale", "pref_temperature", "max_tokens", "top_logprobs"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("max_retries", "backoff_base", "backoff_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


@dataclasses.dataclass
class _Reply(http_retry.Reply):
    """One call's outcome after its retries: the first choice of the answer, or a failure."""

    choice: dict | None = None
    tokens_in: int = 0
    tokens_out: int = 0


class OpenAITeacher(base.Teacher):
    """Teacher on an OpenAI-compatible endpoint; see the module docstring for the contract."""

    name = "openai"

    def __init__(self, config: OpenAIConfig = OpenAIConfig()):
        self.config = config
        rule = ({"score_scale": config.score_scale, "pref_temperature": config.pref_temperature}
                if config.mode == prompts.MODE_LISTWISE else {})
        self.template_version = prompts.template_version(config.mode, **rule)
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        if config.api_key_env and not self._api_key() and not http_retry.is_loopback(config.base_url):
            raise ValueError(
                f"environment variable {config.api_key_env} is not set: export the API key of "
                f"{config.base_url} in it, or pass api_key_env='' for a server that needs no key")
        self.stats: collections.Counter = collections.Counter()
        self._http: http_retry.JsonPoster | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def model(self) -> str:
        return self.config.model

    def describe(self) -> dict:
        return {**super().describe(), "base_url": self.config.base_url, "mode": self.config.mode}

    def setup(self) -> None:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.config.concurrency, thread_name_prefix="openai-teacher")

    def close(self) -> None:
        """Stops the worker threads (a later ``score_batch`` starts new ones)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __getstate__(self) -> dict:
        # Threads and connection pools do not pickle; workers create their own when they first send.
        state = dict(self.__dict__)
        state.update(_executor=None, _http=None)
        return state

    def score_batch(self, requests: Sequence[base.ScoringRequest]) -> list[base.ScoringResult]:
        """Sends every call of the batch, ``concurrency`` at a time; one result per request, in order.

        A failure is per request (``ScoringResult.failure``); an unexpected exception leaves with the key
        redacted from its text and without the original exception chained to it.
        """
        try:
            return self._score_batch(requests)
        except Exception as e:
            raise RuntimeError(self._redact(f"openai teacher: {type(e).__name__}: {e}")) from None

    def _score_batch(self, requests: Sequence[base.ScoringRequest]) -> list[base.ScoringResult]:
        self.setup()
        if self.config.mode == prompts.MODE_LISTWISE:
            futures = [self._executor.submit(self._complete, self._listwise_payload(r), r.user_id)
                       for r in requests]
            return [self._listwise_result(r, f.result()) for r, f in zip(requests, futures)]
        orders = []
        for request in requests:
            by_id = prompts.items_by_id(request)
            orders.append([
                [self._executor.submit(self._complete, self._pairwise_payload(request, by_id[a], by_id[b]),
                                       request.user_id)
                 for a, b in ((pair.item_i, pair.item_j), (pair.item_j, pair.item_i))]
                for pair in request.pairs])
        return [self._pairwise_result(r, [[f.result() for f in pair] for pair in futures])
                for r, futures in zip(requests, orders)]

    # -- payloads and answers ------------------------------------------------------------------

    def _listwise_payload(self, request: base.ScoringRequest) -> dict:
        c = self.config
        payload = {"model": c.model, "temperature": c.temperature, "max_tokens": c.max_tokens,
                   "messages": prompts.listwise_messages(request, score_scale=c.score_scale)}
        schema = prompts.ranking_schema([it.item_id for it in request.candidates], score_scale=c.score_scale)
        if c.response_format == "json_schema":
            payload["response_format"] = {"type": "json_schema", "json_schema": {
                "name": prompts.RANKING_KEY, "strict": True, "schema": schema}}
        elif c.response_format == "json_object_schema":
            payload["response_format"] = {"type": "json_object", "schema": schema}
        elif c.response_format == "json_object":
            payload["response_format"] = {"type": "json_object"}
        return payload

    def _pairwise_payload(self, request: base.ScoringRequest, item_a, item_b) -> dict:
        c = self.config
        return {"model": c.model, "temperature": c.temperature, "max_tokens": 1, "logprobs": True,
                "top_logprobs": c.top_logprobs,
                "messages": prompts.pairwise_messages(request.context, item_a, item_b)}

    def _listwise_result(self, request: base.ScoringRequest, reply: _Reply) -> base.ScoringResult:
        result = self._result(request, [reply])
        if reply.failure:
            return self._failed(result, reply.failure, reply.raw)
        content = self._redact(_content(reply.choice))
        result.raw = content
        try:
            scores = prompts.parse_ranking(content, [it.item_id for it in request.candidates],
                                           score_scale=self.config.score_scale)
        except prompts.ResponseError as e:
            return self._failed(result, e.reason, content, detail=e.detail)
        rows = prompts.listwise_rows(request, scores, teacher=self.name,
                                     pref_temperature=self.config.pref_temperature)
        if request.pairs and not rows:
            return self._failed(result, prompts.FAIL_INCOMPLETE_RANKING, content,
                                detail="no requested pair has both items scored")
        self.stats["pairs_unscored"] += len(request.pairs) - len(rows)
        result.rows = rows
        return result

    def _pairwise_result(self, request: base.ScoringRequest,
                         replies: list[list[_Reply]]) -> base.ScoringResult:
        result = self._result(request, [r for pair in replies for r in pair])
        answers = []
        for pair, (order1, order2) in zip(request.pairs, replies):
            for reply in (order1, order2):
                if reply.failure:
                    return self._failed(result, reply.failure, reply.raw)
            try:
                (p1, letter1), (p2, letter2) = _pairwise_answer(order1.choice), _pairwise_answer(order2.choice)
            except (_BadAnswer, AttributeError, TypeError, IndexError) as e:  # one bad answer fails its prompt only
                return self._failed(result, FAIL_INVALID_RESPONSE, order1.raw or order2.raw,
                                    detail=f"{type(e).__name__}: {e}")
            answers.append({"item_i": pair.item_i, "item_j": pair.item_j, "answers": [letter1, letter2],
                            "p_a": [p1, p2]})
            if p1 is not None and p2 is not None:
                pref, confidence = prompts.two_order_pref(p1, p2), None
            elif letter1 and letter2:
                pref = prompts.vote_pref(letter1, letter2)
                confidence = labels.default_confidence(pref)
            else:
                return self._failed(result, prompts.FAIL_NO_ANSWER, json.dumps(answers),
                                    detail="an answer is neither A nor B")
            result.rows.append(prompts.pair_row(request, pair, pref, teacher=self.name,
                                                confidence=confidence))
        result.raw = json.dumps(answers)
        return result

    def _result(self, request: base.ScoringRequest, replies: list[_Reply]) -> base.ScoringResult:
        """An empty result with the calls' counts (run in the caller's thread, so stats need no lock)."""
        self.stats["retries"] += sum(r.attempts - 1 for r in replies)
        return base.ScoringResult(
            request_hash=request.content_hash(), rows=[], model_calls=sum(r.attempts for r in replies),
            tokens_in=sum(r.tokens_in for r in replies), tokens_out=sum(r.tokens_out for r in replies))

    def _failed(self, result: base.ScoringResult, reason: str, raw: str | None,
                detail: str = "") -> base.ScoringResult:
        result.rows, result.failure, result.raw = [], reason, self._redact(raw)
        logger.warning("openai teacher: request %s failed with %s after %d call(s)%s",
                       result.request_hash[:12], reason, result.model_calls,
                       f": {self._redact(detail)}" if detail else "")
        return result

    # -- HTTP ------------------------------------------------------------------------------------

    def _api_key(self) -> str:
        key = os.environ.get(self.config.api_key_env, "") if self.config.api_key_env else ""
        if key:
            _REDACT.keys.add(key)
        return key

    def _redact(self, text: str | None) -> str | None:
        key = self._api_key()
        return text.replace(key, REDACTED) if text and key else text

    def _poster(self) -> http_retry.JsonPoster:
        if self._http is None:
            c = self.config
            self._http = http_retry.JsonPoster(self.url, timeout=c.timeout, max_retries=c.max_retries,
                                               backoff_base=c.backoff_base, backoff_max=c.backoff_max,
                                               concurrency=c.concurrency, max_raw_chars=MAX_RAW_CHARS)
        return self._http

    def _complete(self, payload: dict, user_id: str) -> _Reply:
        """Posts one chat completion with retries (:mod:`.http_retry`); never raises for HTTP or network trouble."""
        key = self._api_key()
        sent = self._poster().post(payload, {"Authorization": f"Bearer {key}"} if key else {})
        reply = _Reply(attempts=sent.attempts, failure=sent.failure, raw=self._redact(sent.raw))
        if sent.attempts > 1:
            logger.info("openai teacher: user %s needed %d attempts (%s)", user_id, sent.attempts,
                        sent.failure or "answered")
        return reply if sent.body is None else _answered(reply, sent.body)


def _answered(reply: _Reply, data: bytes) -> _Reply:
    """Fills ``reply`` from an HTTP 200 answer; a body without ``choices[0]`` is ``invalid_response``."""
    try:
        body = json.loads(data)
        reply.choice = body["choices"][0]
        if not isinstance(reply.choice, dict):
            raise TypeError("choices[0] is not an object")
        usage = body.get("usage") or {}
        tokens = [usage.get(name) or 0 for name in ("prompt_tokens", "completion_tokens")]
        if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in tokens):
            raise TypeError(f"usage token counts must be integers >= 0, got {tokens}")
        reply.tokens_in, reply.tokens_out = tokens
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        reply.choice, reply.failure = None, FAIL_INVALID_RESPONSE
        return reply
    reply.failure = None
    return reply


class _BadAnswer(ValueError):
    """An HTTP 200 answer whose content breaks the reply contract (the message holds no reply text)."""


def _logprob(value) -> float | None:
    """``value`` as a log-probability, or ``None`` when it is not a finite number <= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value > 0:
        return None
    return float(value)


def _content(choice: dict) -> str:
    return ((choice or {}).get("message") or {}).get("content") or ""


def _pairwise_answer(choice: dict) -> tuple[float | None, str | None]:
    """``(p_A, letter)`` of a one-token answer: ``p_A`` from its top log-probabilities, when given."""
    letter = prompts.letter_of(_content(choice))
    tokens = ((choice.get("logprobs") or {}).get("content") or [])
    if not tokens:
        return None, letter
    first = tokens[0] if isinstance(tokens, list) and isinstance(tokens[0], dict) else {}
    top = [(str(t.get("token", "")), _logprob(t.get("logprob"))) for t in first.get("top_logprobs") or []
           if isinstance(t, dict)]
    if "logprob" in first and first.get("token", "") not in {token for token, _ in top}:
        top.append((str(first.get("token", "")), _logprob(first["logprob"])))
    if any(value is None for _, value in top):
        raise _BadAnswer("a log-probability is not a finite number <= 0")
    p = prompts.p_first(top)
    if letter is None and p is not None:
        letter = prompts.LETTER_A if p >= 0.5 else prompts.LETTER_B
    return p, letter


@base.register("openai")
def create_openai_teacher(**options) -> OpenAITeacher:
    """Factory of the registry: ``base.create("openai", base_url=..., model=..., mode="pairwise")``."""
    return OpenAITeacher(OpenAIConfig(**options))
