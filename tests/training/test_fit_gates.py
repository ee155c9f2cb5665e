"""Every backbone trains with every gate mode: a short model.fit on a synthetic prepared folder."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tests.synthetic import make_prepared
from tfrs_selreg.data import input_fn
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.models import BACKBONES, LOSS_KEYS, ModelConfig, build_model
from tfrs_selreg.regularizer import GATE_MODES, RegularizerConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return PreparedData(make_prepared(str(tmp_path_factory.mktemp("prepared")), n_users=24, n_items=40, seed=1))


@pytest.mark.parametrize("gate", GATE_MODES)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_fit_reports_every_term(backbone, gate, data):
    tf.keras.utils.set_random_seed(0)
    model = build_model(ModelConfig(backbone=backbone, embedding_dim=8), data, RegularizerConfig(gate=gate))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
    before = [w.copy() for w in model.get_weights()]
    ds = input_fn.make_dataset(data.directory, "train", batch_size=32, shuffle=True, seed=0, repeat=True,
                               drop_remainder=True)
    logs = model.fit(ds, epochs=1, steps_per_epoch=4, verbose=0).history
    assert set(LOSS_KEYS) <= set(logs)
    last = {k: v[-1] for k, v in logs.items()}
    assert all(math.isfinite(v) for v in last.values())
    expected_total = last["rec_loss"] + 0.1 * last["teacher_loss"] + last["gate_loss"]
    assert last["total_loss"] == pytest.approx(expected_total, rel=1e-4)
    if gate == "none":
        assert last["teacher_loss"] == 0 and last["pair_weight_mean"] == 0
    else:
        assert last["teacher_pairs_kept"] > 0
    if gate == "global":
        assert last["pair_weight_mean"] == pytest.approx(1.0)
    if gate == "reliability":
        assert last["gate_loss"] > 0 and last["probe_accuracy"] == pytest.approx(1.0)  # oracle teacher
    changed = [not np.allclose(a, b) for a, b in zip(before, model.get_weights())]
    assert sum(changed) >= len(changed) // 2
