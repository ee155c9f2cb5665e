"""The embedding teacher: the cosine rule, calibration of pref, reuse of embeddings, failures."""

import math

import numpy as np
import pytest

from tfrs_selreg.data import labels, schema
from tfrs_selreg.data.prepared import Item
from tfrs_selreg.teachers import candidates, registry
from tfrs_selreg.teachers.base import PairSpec, ScoringRequest
from tfrs_selreg.teachers.embedding_teacher import DEFAULT_MODEL, EmbeddingTeacher

pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def teacher():
    t = registry.create("embedding")
    t.setup()
    return t


def _item(item_id: str, title: str, genre: str = "") -> Item:
    return Item(item_id, title=title, categories=(genre,) if genre else ())


def test_pref_is_the_sigmoid_of_the_cosine_gap(teacher):
    context = (_item("c1", "Apollo moon landing", "Space"), _item("c2", "Rocket launch", "Space"))
    cands = (_item("a", "Astronaut on the space station", "Space"),
             _item("b", "Chocolate cake recipe", "Cooking"))
    request = ScoringRequest("u", context, cands, (PairSpec("a", "b", schema.KIND_TEACHER),
                                                   PairSpec("b", "a", schema.KIND_TEACHER)))
    (result,) = teacher.score_batch([request])
    assert result.failure is None and result.model_calls == 1
    ab, ba = result.rows
    e = teacher.item_vectors((*context, *cands))
    mean = e[:2].mean(axis=0)
    mean /= np.linalg.norm(mean)
    gap = float(e[2] @ mean - e[3] @ mean)
    assert ab.pref == pytest.approx(1.0 / (1.0 + math.exp(-gap / teacher.temperature)), abs=1e-6)
    assert ab.pref > 0.9  # the space candidate is preferred
    assert ba.pref == pytest.approx(1.0 - ab.pref, abs=1e-6)
    assert ab.confidence == pytest.approx(abs(2 * ab.pref - 1), abs=1e-9)
    assert ab.teacher == "embedding" and ab.user_id == "u" and labels.check_values(ab) is None


def test_probes_on_themed_users_are_answered_and_embeddings_are_reused(teacher, synthetic):
    items, users = synthetic
    catalog = {it.item_id: it for it in items}
    plans = candidates.plan_prompts(items, users, candidates.CandidateConfig(num_candidates=8))
    requests = [candidates.to_request(p, catalog) for p in plans]
    results = teacher.score_batch(requests)
    probes = [row for r in results for row in r.rows if row.kind == schema.KIND_PROBE]
    assert len(probes) > 50
    accuracy = np.mean([(row.pref > 0.5) == (row.truth == 1) for row in probes])
    assert accuracy > 0.8, accuracy
    for request, result in zip(requests, results):
        assert [(r.item_i, r.item_j, r.kind, r.truth) for r in result.rows] == \
            [(p.item_i, p.item_j, p.kind, p.truth) for p in request.pairs]
    embedded = teacher.num_embedded
    assert teacher.score_batch(requests) == results
    assert teacher.num_embedded == embedded
    # Another instance of the same model in this process reuses the encodings: it never loads the encoder.
    other = EmbeddingTeacher(model=teacher._model_path)
    np.testing.assert_array_equal(other.item_vectors(items[:5]), teacher.item_vectors(items[:5]))
    assert other._encoder is None


def test_empty_context_and_unknown_pair_items_fail_without_rows(teacher):
    cands = (_item("a", "Alpha"), _item("b", "Beta"))
    empty = ScoringRequest("u", (), cands, (PairSpec("a", "b", schema.KIND_TEACHER),))
    unknown = ScoringRequest("u", (_item("c", "Gamma"),), cands,
                             (PairSpec("a", "zzz", schema.KIND_TEACHER),))
    r_empty, r_unknown = teacher.score_batch([empty, unknown])
    assert (r_empty.failure, r_empty.rows) == ("empty_context", [])
    assert (r_unknown.failure, r_unknown.rows) == ("unknown_item", [])
    assert teacher.score_batch([]) == []


def test_identity_keys_the_cache_and_temperature_changes_it():
    request = ScoringRequest("u", (_item("c", "Gamma"),), (_item("a", "A"), _item("b", "B")),
                             (PairSpec("a", "b", schema.KIND_TEACHER),))
    default, hotter = EmbeddingTeacher(), EmbeddingTeacher(temperature=0.5)
    assert default.model == DEFAULT_MODEL
    assert default.describe()["template_version"] != hotter.describe()["template_version"]
    assert default.cache_key(request) != hotter.cache_key(request)
    assert default.cache_key(request) == EmbeddingTeacher().cache_key(request)
    with pytest.raises(ValueError, match="temperature"):
        EmbeddingTeacher(temperature=0)


def test_missing_model_folder_and_unknown_option_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EmbeddingTeacher(model=str(tmp_path / "nope")).setup()
    with pytest.raises(ValueError, match="does not take"):
        registry.create("embedding", mode="pairwise")
    with pytest.raises(ValueError, match="unknown teacher"):
        registry.create("gpt-17")
