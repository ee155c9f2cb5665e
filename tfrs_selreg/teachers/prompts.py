"""Prompts of the LLM teachers and the rules that turn answers into label rows (versioned).

Two ways to ask an LLM how a user orders items (docs/method.md, section 3):

- **listwise** (the paper's prompt): the user's context items as text and a candidate list with item
  ids; the model returns ``{"ranking": [{"item_id": ..., "score": ...}, ...]}`` with one score per
  candidate in ``[0, score_scale]`` (a bare JSON list of the same entries is accepted too). Scores are
  divided by ``score_scale`` (1 unless the user says otherwise, e.g. 10 for a model prompted on a 0-10
  scale: the scale is part of the prompt and of the template version, never guessed from the answer).
  A requested pair ``(i, j)`` gets ``pref = sigmoid((t_i - t_j) / pref_temperature)``.
- **pairwise**: one prompt per pair and order, "which of A and B will the user choose next?", answered
  by one letter. ``p_A = softmax(logit_A, logit_B)`` over the two letters' log-probabilities, where a
  letter's log-probability is the log-sum-exp over its spellings (``A``, ``a``, with or without a
  leading space). Both orders are asked (``A = item_i``, then ``A = item_j``) and averaged,
  ``pref = (p_A(order 1) + 1 - p_A(order 2)) / 2``, which cancels a constant position bias exactly:
  SmolLM2-135M answers "A" to almost every single-order prompt.

A failed answer yields no rows, only a failure reason (the ``FAIL_*`` constants, the vocabulary of
``ScoringResult.failure``). Changing a prompt or a rule must bump :data:`PROMPT_VERSION`, which is part
of every LLM teacher's ``template_version`` and so of its cache key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence

from tfrs_selreg.data.labels import LabelRow
from tfrs_selreg.data.prepared import Item
from tfrs_selreg.teachers.base import PairSpec, ScoringRequest

PROMPT_VERSION = "1"

MODE_LISTWISE = "listwise"
MODE_PAIRWISE = "pairwise"
MODES = (MODE_LISTWISE, MODE_PAIRWISE)

# Failure reasons of a model answer (the HTTP ones live in openai_teacher).
FAIL_INVALID_JSON = "invalid_json"
FAIL_SCHEMA_VIOLATION = "schema_violation"
FAIL_UNKNOWN_ITEM = "unknown_item"
FAIL_SCORE_OUT_OF_RANGE = "score_out_of_range"
FAIL_INCOMPLETE_RANKING = "incomplete_ranking"
FAIL_NO_ANSWER = "no_answer"

RANKING_KEY = "ranking"
LETTER_A = "A"
LETTER_B = "B"

SYSTEM_PROMPT = (
    "You are a recommender system. From the items a user chose recently, you judge which items "
    "the user is most likely to choose next.")


class ResponseError(ValueError):
    """A model answer that cannot be used; ``reason`` is one of the ``FAIL_*`` constants."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def template_version(mode: str, **rule: object) -> str:
    """The cache-relevant identity of a prompt: ``PROMPT_VERSION``, the mode and the scoring rule.

    >>> template_version("listwise", score_scale=1.0, pref_temperature=0.1)
    'listwise-v1-pref_temperature=0.1-score_scale=1.0'
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return "-".join([mode, f"v{PROMPT_VERSION}"] + [f"{k}={rule[k]}" for k in sorted(rule)])


def _history_text(context: Sequence[Item]) -> str:
    if not context:
        return "The user has no recorded history yet."
    lines = "\n".join(f"- {it.text()}" for it in context)
    return f"Items the user chose recently, oldest first:\n{lines}"


# ---------------------------------------------------------------------------------------------
# Listwise.

def listwise_messages(request: ScoringRequest, *, score_scale: float = 1.0) -> list[dict]:
    """Chat messages of the paper's listwise prompt for one request (all of its candidates)."""
    scale = _format_number(score_scale)
    candidates = "\n".join(f'- item_id "{it.item_id}": {it.text()}' for it in request.candidates)
    user = (
        f"{_history_text(request.context)}\n\n"
        f"Candidate items:\n{candidates}\n\n"
        f"Score every candidate by how likely the user is to choose it next, from 0 (unlikely) to "
        f"{scale} (very likely). Answer with JSON only, in this form:\n"
        f'{{"{RANKING_KEY}": [{{"item_id": "<candidate item_id>", "score": <number from 0 to {scale}>}}, ...]}}\n'
        f"List every candidate exactly once, the most likely first.")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def ranking_schema(candidate_ids: Sequence[str], *, score_scale: float = 1.0) -> dict:
    """JSON schema of a listwise answer: exactly one entry per candidate, ids from the candidates."""
    entry = {
        "type": "object",
        "properties": {
            "item_id": {"type": "string", "enum": list(candidate_ids)},
            "score": {"type": "number", "minimum": 0, "maximum": score_scale},
        },
        "required": ["item_id", "score"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {RANKING_KEY: {"type": "array", "items": entry,
                                     "minItems": len(candidate_ids), "maxItems": len(candidate_ids)}},
        "required": [RANKING_KEY],
        "additionalProperties": False,
    }


def parse_ranking(text: str | None, candidate_ids: Iterable[str], *,
                  score_scale: float = 1.0) -> dict[str, float]:
    """Parses and validates a listwise answer; returns ``{item_id: score / score_scale}``.

    Raises :class:`ResponseError` with reason ``invalid_json`` (not JSON), ``schema_violation`` (not a
    ranking list of ``{item_id, score}`` objects with a numeric score), ``unknown_item`` (an id that is
    not a candidate, or a candidate listed twice) or ``score_out_of_range`` (a score outside
    ``[0, score_scale]``). Candidates the model left out are simply absent from the result.
    """
    try:
        data = json.loads(text or "")
    except json.JSONDecodeError as e:
        raise ResponseError(FAIL_INVALID_JSON, f"the answer is not JSON ({e.msg} at char {e.pos})") from None
    entries = data.get(RANKING_KEY) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ResponseError(FAIL_SCHEMA_VIOLATION, f'expected {{"{RANKING_KEY}": [...]}} or a JSON list')
    known = set(candidate_ids)
    scores: dict[str, float] = {}
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or "item_id" not in entry or "score" not in entry:
            raise ResponseError(FAIL_SCHEMA_VIOLATION, f"entry {n} is not an object with item_id and score")
        item_id, score = entry["item_id"], entry["score"]
        if isinstance(item_id, int) and not isinstance(item_id, bool):
            item_id = str(item_id)  # ids are strings, but "318" and 318 name the same candidate
        if not isinstance(item_id, str):
            raise ResponseError(FAIL_SCHEMA_VIOLATION, f"entry {n}: item_id must be a string")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ResponseError(FAIL_SCHEMA_VIOLATION, f"entry {n}: score must be a finite number")
        if item_id not in known:
            raise ResponseError(FAIL_UNKNOWN_ITEM, f"entry {n}: item_id {item_id!r} is not a candidate")
        if item_id in scores:
            raise ResponseError(FAIL_UNKNOWN_ITEM, f"entry {n}: item_id {item_id!r} is listed twice")
        if not 0.0 <= score <= score_scale:
            raise ResponseError(FAIL_SCORE_OUT_OF_RANGE,
                                f"entry {n}: score {score} is outside [0, {_format_number(score_scale)}]")
        scores[item_id] = float(score) / score_scale
    return scores


def listwise_rows(request: ScoringRequest, scores: Mapping[str, float], *, teacher: str,
                  pref_temperature: float) -> list[LabelRow]:
    """Label rows for the request's pairs whose two items were both scored.

    ``pref = sigmoid((t_i - t_j) / pref_temperature)``; equal scores give 0.5 (no order). Pairs with an
    item the model left out get no row (a missing score is "no opinion", as in the paper).
    """
    rows = []
    for pair in request.pairs:
        if pair.item_i in scores and pair.item_j in scores:
            pref = _sigmoid((scores[pair.item_i] - scores[pair.item_j]) / pref_temperature)
            rows.append(pair_row(request, pair, pref, teacher=teacher))
    return rows


# ---------------------------------------------------------------------------------------------
# Pairwise.

def pairwise_messages(context: Sequence[Item], item_a: Item, item_b: Item) -> list[dict]:
    """Chat messages asking which of two items (shown as A and B) the user chooses next.

    The context comes first so that every prompt of one request shares a prefix (llama.cpp reuses it).
    """
    user = (
        f"{_history_text(context)}\n\n"
        "Which of these two items is the user more likely to choose next?\n"
        f"{LETTER_A}: {item_a.text()}\n"
        f"{LETTER_B}: {item_b.text()}\n"
        f"Answer with one letter, {LETTER_A} or {LETTER_B}.")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def letter_of(token: str) -> str | None:
    """``"A"`` or ``"B"`` when a token spells that answer letter (any case, leading space), else None."""
    letter = token.strip().upper()
    return letter if letter in (LETTER_A, LETTER_B) else None


def letter_spellings(letter: str) -> tuple[str, ...]:
    """The token spellings :func:`letter_of` maps to ``letter``: ``A``, `` A``, ``a``, `` a``."""
    return (letter, " " + letter, letter.lower(), " " + letter.lower())


def p_first(top_logprobs: Iterable[tuple[str, float]]) -> float | None:
    """``p_A = exp(l_A) / (exp(l_A) + exp(l_B))`` from a next-token top-k list of ``(token, logprob)``.

    ``l_A`` is the log-sum-exp over the tokens that spell A (:func:`letter_of`), likewise ``l_B``. A
    letter absent from the list gets the smallest listed log-probability, an upper bound on its true
    value, so ``p`` errs towards 0.5. Returns ``None`` when neither letter is listed.
    """
    by_letter: dict[str, list[float]] = {LETTER_A: [], LETTER_B: []}
    floor = math.inf
    for token, logprob in top_logprobs:
        floor = min(floor, logprob)
        letter = letter_of(token)
        if letter is not None:
            by_letter[letter].append(logprob)
    if not by_letter[LETTER_A] and not by_letter[LETTER_B]:
        return None
    l_a = _logsumexp(by_letter[LETTER_A]) if by_letter[LETTER_A] else floor
    l_b = _logsumexp(by_letter[LETTER_B]) if by_letter[LETTER_B] else floor
    return _sigmoid(l_a - l_b)


def two_order_pref(p_a_order1: float, p_a_order2: float) -> float:
    """``pref = (p_A(order 1) + 1 - p_A(order 2)) / 2``: order 1 shows item_i as A, order 2 as B."""
    return (p_a_order1 + 1.0 - p_a_order2) / 2.0


def vote_pref(letter_order1: str, letter_order2: str) -> float:
    """Fallback when a server gives no log-probabilities: add-one smoothed votes of the two answers.

    ``pref = (votes for item_i + 1) / 4``: 0.75 or 0.25 when the orders agree, 0.5 when they do not
    (always "A" cancels out), so a letter-only label never claims more than ``|2 pref - 1| = 0.5``.
    """
    votes = int(letter_order1 == LETTER_A) + int(letter_order2 == LETTER_B)
    return (votes + 1) / 4.0


def items_by_id(request: ScoringRequest) -> dict[str, Item]:
    """The request's candidates by id; raises ``ValueError`` when a pair item is not a candidate."""
    by_id = {it.item_id: it for it in request.candidates}
    for pair in request.pairs:
        for item_id in (pair.item_i, pair.item_j):
            if item_id not in by_id:
                raise ValueError(f"request of user {request.user_id!r}: pair item {item_id!r} is not one "
                                 "of its candidates; the scoring job must put every pair item in candidates")
    return by_id


def pair_row(request: ScoringRequest, pair: PairSpec, pref: float, *, teacher: str,
             confidence: float | None = None) -> LabelRow:
    """The label row of one requested pair (probe pairs keep their truth)."""
    return LabelRow(user_id=request.user_id, item_i=pair.item_i, item_j=pair.item_j, pref=pref,
                    kind=pair.kind, confidence=confidence, truth=pair.truth, teacher=teacher)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _format_number(x: float) -> str:
    return f"{x:g}"
