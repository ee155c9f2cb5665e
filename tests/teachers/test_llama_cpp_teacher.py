"""The ``llama-cpp`` teacher: SmolLM2-135M-Instruct in-process on a few bundled MovieLens requests."""

import dataclasses
import os
import pickle

import pytest

from tests.teachers import llama_server
from tfrs_selreg.data import labels
from tfrs_selreg.teachers import base, prompts, smollm2
from tfrs_selreg.teachers.llama_cpp_teacher import LlamaCppConfig, LlamaCppTeacher


@pytest.fixture(scope="module")
def teacher():
    teacher = base.create("llama-cpp", n_threads=2)
    teacher.setup()
    return teacher


def test_smollm2_gguf_ships_in_the_package():
    path = smollm2.gguf_path()
    assert path.endswith(".gguf") and os.path.getsize(path) > 50_000_000


def test_rows_for_every_pair_in_both_orders(teacher):
    requests = llama_server.movielens_requests(2, n_candidates=3, context_length=5)
    results = teacher.score_batch(requests)
    for request, result in zip(requests, results):
        assert result.failure is None and result.request_hash == request.content_hash()
        assert result.model_calls == 2 * len(request.pairs) and result.tokens_in > 100
        assert [(r.item_i, r.item_j, r.kind, r.truth) for r in result.rows] == [
            (p.item_i, p.item_j, p.kind, p.truth) for p in request.pairs]
        for row in result.rows:
            assert labels.check_values(row) is None and 0.0 < row.pref < 1.0
            assert (row.user_id, row.teacher) == (request.user_id, "llama-cpp")
            assert labels.parse_json(row.to_json()) == row


def test_prefs_are_antisymmetric_and_depend_on_the_request_alone(teacher):
    """pref(i, j) = 1 - pref(j, i) to rounding, although the swapped request is scored in another state.

    ``swapped`` asks the same two prompts as ``request`` but is scored right after it, with the context
    already in llama.cpp's KV cache, while ``request`` follows a different user's prompts.
    """
    other, request = (dataclasses.replace(r, pairs=r.pairs[:1]) for r in
                      llama_server.movielens_requests(2, n_candidates=3, context_length=5, seed=2))
    swapped = dataclasses.replace(request, pairs=tuple(
        dataclasses.replace(p, item_i=p.item_j, item_j=p.item_i) for p in request.pairs))
    _, forward, backward = teacher.score_batch([other, request, swapped])
    assert [r.pref for r in forward.rows] == pytest.approx([1 - r.pref for r in backward.rows], abs=1e-12)


def test_identity_and_pickling(teacher):
    assert teacher.model.startswith("SmolLM2-135M-Instruct.Q4_1.gguf@sha256:")
    assert teacher.template_version == f"pairwise-v{prompts.PROMPT_VERSION}"
    clone = pickle.loads(pickle.dumps(teacher))
    assert clone._llm is None and clone.model_path == teacher.model_path
    with pytest.raises(FileNotFoundError, match="not a file"):
        LlamaCppTeacher(LlamaCppConfig(model_path="/nonexistent/model.gguf"))
