"""The streaming evaluator against the in-memory one on the bundled data: same users, same values."""

import numpy as np
import pytest
import tensorflow as tf

from tfrs_selreg.data import schema
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.evaluation import reference, streaming
from tfrs_selreg.evaluation.ranking import SEGMENTS, RankingEvaluator
from tfrs_selreg.models import ModelConfig, build_model
from tfrs_selreg.regularizer import RegularizerConfig


class _Spy(RankingEvaluator):
    sizes: list[int] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _Spy.sizes.append(self.num_users)


@pytest.mark.parametrize("ranker", ["two_tower", "popularity"])
def test_streamed_evaluation_equals_the_in_memory_one(bundled_prepared, ranker, monkeypatch):
    data = PreparedData(bundled_prepared)
    assert len(data.users_files) == 2
    length = schema.Schema.load(bundled_prepared).history_length
    if ranker == "popularity":
        model = reference.ranker(reference.POPULARITY, data)
    else:
        tf.keras.utils.set_random_seed(3)
        model = build_model(ModelConfig(embedding_dim=16), data, RegularizerConfig())
    expected = RankingEvaluator(data, "test", length).evaluate(model, batch_users=64)
    _Spy.sizes = []
    monkeypatch.setattr(streaming, "RankingEvaluator", _Spy)
    got = streaming.evaluate_stream(data, "test", length, model, batch_users=64, chunk_users=97)
    assert max(_Spy.sizes) <= 97 and sum(_Spy.sizes) == expected["overall"].user_ids.size == 610
    for name in SEGMENTS:
        np.testing.assert_array_equal(got[name].user_ids, expected[name].user_ids)
        assert got[name].items == expected[name].items
        assert got[name].values.keys() == expected[name].values.keys()
        for metric, values in expected[name].values.items():
            np.testing.assert_allclose(got[name].values[metric], values, rtol=0, atol=1e-6, err_msg=metric)
    assert expected["cold_start"].user_ids.size > 80 and expected["long_tail"].user_ids.size > 0
