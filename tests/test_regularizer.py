"""SelectiveRegularizer: gate modes, gradient isolation and gate behaviour on synthetic teachers.

The synthetic world: users with fixed (or trainable) embeddings, a third of them cold-start, items with
Zipf popularity (bottom 20% long-tail), and probe pairs with a known positive. Teachers label pairs:

- ``oracle``: orders every pair as the truth does, with a random confidence;
- ``random``: coin-flip preferences (the control of docs/method.md, 5);
- ``cold_oracle``: the oracle on cold-start users, the random teacher elsewhere.

The reliability gate is trained on the backbone's total loss and must learn what each teacher is worth.
"""

import dataclasses
import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfrs_selreg.data import schema
from tfrs_selreg.losses import budget_mask, pointwise_teacher_mse, selective_pairwise_hinge
from tfrs_selreg.regularizer import (
    GATE_LOSS,
    GATE_MEAN,
    GATE_MODES,
    OUTPUT_KEYS,
    PAIR_WEIGHT_MEAN,
    PAPER_FEATURES,
    PROBE_ACCURACY,
    RELIABILITY_FEATURES,
    TEACHER_LOSS,
    TEACHER_PAIRS_KEPT,
    RegularizerConfig,
    SelectiveRegularizer,
)

N_ITEMS = 300
N_USERS = 200
DIM = 8
COLD_START_MAX_HISTORY = 3
TEACHERS = ("oracle", "random", "cold_oracle")


@dataclasses.dataclass
class World:
    item_ids: np.ndarray
    popularity: list  # aligned with the lookup index: 0 is the OOV slot
    long_tail: list
    history_length: np.ndarray
    lookup: tf.keras.layers.StringLookup

    @property
    def cold(self):
        return self.history_length <= COLD_START_MAX_HISTORY


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    item_ids = np.array([f"item{k}" for k in range(N_ITEMS)])
    popularity = np.maximum(1, (2000.0 / (1 + np.arange(N_ITEMS)) ** 1.1).astype(int))
    long_tail = (popularity <= np.quantile(popularity, 0.2)).astype(int)
    history_length = np.where(rng.uniform(size=N_USERS) < 1 / 3, rng.integers(1, 4, N_USERS),
                              rng.integers(5, 400, N_USERS))
    lookup = tf.keras.layers.StringLookup(vocabulary=list(item_ids), num_oov_indices=1)
    return World(item_ids, [0] + popularity.tolist(), [0] + long_tail.tolist(), history_length, lookup)


def _prefs(teacher, truth, cold, rng):
    """Teacher preferences for pairs whose truth is ``truth`` (1: item_i is the positive)."""
    gap = rng.uniform(0.1, 0.5, truth.shape)
    oracle = np.where(truth == 1, 0.5 + gap, 0.5 - gap)
    coin = np.where(rng.uniform(size=truth.shape) < 0.5, 0.5 + gap, 0.5 - gap)
    if teacher == "oracle":
        return oracle
    if teacher == "random":
        return coin
    return np.where(cold[:, None], oracle, coin)


def make_batch(world, teacher, rng, batch_size=64, pairs=8, probes=8):
    """A batch of the schema's training-only features (plus user rows and the hidden truth of teacher pairs)."""
    users = rng.integers(0, N_USERS, batch_size)
    cold = world.cold[users]
    batch = {"user": users, schema.HISTORY_LENGTH: world.history_length[users].astype(np.int64),
             schema.COLD_START: cold.astype(np.int64)}
    for prefix, n in (("teacher", pairs), ("probe", probes)):
        items = rng.choice(N_ITEMS, size=(batch_size, n, 2))
        items[..., 1] = (items[..., 0] + rng.integers(1, N_ITEMS, (batch_size, n))) % N_ITEMS
        truth = rng.integers(0, 2, (batch_size, n))
        pref = _prefs(teacher, truth, cold, rng).astype(np.float32)
        batch[f"{prefix}_item_i"] = world.item_ids[items[..., 0]]
        batch[f"{prefix}_item_j"] = world.item_ids[items[..., 1]]
        batch[f"{prefix}_pref"] = pref
        batch[f"{prefix}_confidence"] = np.abs(2 * pref - 1)
        batch[f"{prefix}_mask"] = np.ones((batch_size, n), np.float32)
        batch[f"{prefix}_truth"] = truth.astype(np.float32)
    return {k: tf.constant(v) for k, v in batch.items()}


class Backbone(tf.Module):
    """A tiny matrix-factorization backbone: ``s(u, i) = <e_u, e_i>``."""

    def __init__(self, world, seed, trainable):
        rng = np.random.default_rng(seed)
        self.world = world
        self.users = tf.Variable(rng.normal(0, 0.5, (N_USERS, DIM)).astype(np.float32), trainable=trainable)
        self.items = tf.Variable(rng.normal(0, 0.5, (N_ITEMS + 1, DIM)).astype(np.float32), trainable=trainable)

    def item_index(self, item_ids):
        return self.world.lookup(item_ids)

    def score_fn(self, users):
        """``item_ids [B, n] -> [B, n]``: every slot of the batch's users."""
        user_vectors = tf.gather(self.users, users)

        def score_fn(item_ids):
            return tf.einsum("bd,bnd->bn", user_vectors, tf.gather(self.items, self.item_index(item_ids)))

        return score_fn

    def pair_score_fn(self, users):
        """``(rows [K], item_ids [K]) -> [K]``: the regularizer's view of the backbone."""
        user_vectors = tf.gather(self.users, users)

        def pair_score_fn(rows, item_ids):
            items = tf.gather(self.items, self.item_index(item_ids))
            return tf.reduce_sum(tf.gather(user_vectors, rows) * items, axis=-1)

        return pair_score_fn

    def rec_loss(self, batch):
        """BPR on the probe pairs' known positives (the backbone's own loss)."""
        items = tf.concat([batch[schema.PROBE_ITEM_I], batch[schema.PROBE_ITEM_J]], axis=1)
        s_i, s_j = tf.split(self.score_fn(batch["user"])(items), 2, axis=1)
        sign = 2.0 * batch[schema.PROBE_TRUTH] - 1.0
        return tf.reduce_mean(tf.nn.softplus(-sign * (s_i - s_j)))


def _regularizer(world, **config):
    """The regularizer on every teacher pair unless ``pairs`` says otherwise: these tests are about the
    gate and the losses; the pair selection has its own test."""
    config = RegularizerConfig(**{"pairs": "all", "budget": 512, **config})
    return SelectiveRegularizer(config, world.popularity, world.long_tail, COLD_START_MAX_HISTORY)


def train(world, mode, teacher, steps, learning_rate, seed=0, trainable_backbone=True):
    """Trains backbone and gate on ``rec + lambda * teacher_loss + gate_loss``; returns the per-step outputs."""
    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    backbone = Backbone(world, seed, trainable_backbone)
    regularizer = _regularizer(world, gate=mode)
    optimizer = tf.keras.optimizers.Adam(learning_rate)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            out = regularizer(batch, backbone.pair_score_fn(batch["user"]), backbone.item_index)
            total = backbone.rec_loss(batch) + regularizer.teacher_lambda * out[TEACHER_LOSS] + out[GATE_LOSS]
        variables = list(backbone.trainable_variables) + regularizer.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return out

    history = [{k: float(v) for k, v in step(make_batch(world, teacher, rng)).items()} for _ in range(steps)]
    return backbone, regularizer, history


def weights_by_segment(world, backbone, regularizer, teacher, seed=123):
    """Mean pair weight over fresh pairs: all, cold-start users, the others."""
    batch = make_batch(world, teacher, np.random.default_rng(seed), batch_size=512)
    weights = regularizer.pair_weights(batch, backbone.pair_score_fn(batch["user"]), backbone.item_index).numpy()
    cold = batch[schema.COLD_START].numpy() == 1
    return weights.mean(), weights[cold].mean(), weights[~cold].mean()


@pytest.fixture(scope="module")
def trained_reliability(world):
    return {teacher: train(world, "reliability", teacher, steps=300, learning_rate=0.05) for teacher in TEACHERS}


def test_reliability_gate_trusts_an_oracle_teacher(world, trained_reliability):
    backbone, regularizer, history = trained_reliability["oracle"]
    overall, cold, warm = weights_by_segment(world, backbone, regularizer, "oracle")
    print(f"oracle: mean weight {overall:.3f} (cold {cold:.3f}, others {warm:.3f})")
    assert overall > 0.6
    assert history[-1][PROBE_ACCURACY] == 1.0
    assert history[0][PAIR_WEIGHT_MEAN] == 0.0  # initial_gate 0.5: no excess reliability yet


def test_reliability_gate_ignores_a_random_teacher(world, trained_reliability):
    backbone, regularizer, history = trained_reliability["random"]
    overall, cold, warm = weights_by_segment(world, backbone, regularizer, "random")
    late = np.mean([h[PAIR_WEIGHT_MEAN] for h in history[-50:]])
    print(f"random: mean weight {overall:.3f} (cold {cold:.3f}, others {warm:.3f}); last 50 steps {late:.3f}")
    assert overall < 0.1
    assert late < 0.1


def test_reliability_gate_trusts_a_cold_start_oracle_only_on_cold_start_users(world, trained_reliability):
    backbone, regularizer, _ = trained_reliability["cold_oracle"]
    overall, cold, warm = weights_by_segment(world, backbone, regularizer, "cold_oracle")
    print(f"cold_oracle: mean weight {overall:.3f} (cold {cold:.3f}, others {warm:.3f})")
    assert cold > 0.5
    assert cold >= 3 * warm


def test_paper_gate_collapses_under_joint_training(world):
    _, _, history = train(world, "paper", "oracle", steps=300, learning_rate=0.01)
    trajectory = [history[k][GATE_MEAN] for k in range(0, 300, 50)] + [history[-1][GATE_MEAN]]
    print("paper: mean gate every 50 steps", " ".join(f"{g:.3f}" for g in trajectory))
    assert trajectory[0] == pytest.approx(0.5, abs=1e-3)
    assert all(b <= a + 1e-3 for a, b in itertools.pairwise(trajectory))
    assert trajectory[-1] < 0.3


def _tape_gradients(world, mode):
    backbone = Backbone(world, 0, trainable=True)
    regularizer = _regularizer(world, gate=mode)
    batch = make_batch(world, "oracle", np.random.default_rng(0))
    regularizer(batch, backbone.pair_score_fn(batch["user"]), backbone.item_index)  # builds the gate
    with tf.GradientTape(persistent=True) as tape:
        out = regularizer(batch, backbone.pair_score_fn(batch["user"]), backbone.item_index)

    def grad(key, variables):
        grads = tape.gradient(out[key], variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return [tf.convert_to_tensor(g) for g in grads]

    return backbone, regularizer, grad


def test_reliability_gradients_are_isolated(world):
    backbone, regularizer, grad = _tape_gradients(world, "reliability")
    assert regularizer.gate.trainable_variables[0].shape == (len(RELIABILITY_FEATURES), 1)
    assert all(not g.numpy().any() for g in grad(TEACHER_LOSS, regularizer.gate.trainable_variables))
    assert all(not g.numpy().any() for g in grad(GATE_LOSS, backbone.trainable_variables))
    assert any(g.numpy().any() for g in grad(GATE_LOSS, regularizer.gate.trainable_variables))


def test_paper_gate_gradient_can_only_close_the_gate(world):
    backbone, regularizer, grad = _tape_gradients(world, "paper")
    assert regularizer.gate.trainable_variables[0].shape == (len(PAPER_FEATURES), 1)
    _, bias_grad = grad(TEACHER_LOSS, regularizer.gate.trainable_variables)
    assert float(bias_grad[0]) > 0  # dL/da >= 0: descent lowers every gate
    assert any(g.numpy().any() for g in grad(TEACHER_LOSS, backbone.trainable_variables))


def test_none_mode_never_scores(world):
    def never(*args):
        raise AssertionError("mode 'none' must call neither the backbone nor the item index")

    batch = make_batch(world, "oracle", np.random.default_rng(0))
    out = _regularizer(world, gate="none")(batch, never, never)
    assert set(out) == set(OUTPUT_KEYS) and all(float(v) == 0.0 for v in out.values())


@pytest.mark.parametrize("mode", ["global", "pointwise"])
def test_ungated_modes_match_the_pure_losses(world, mode):
    backbone = Backbone(world, 0, trainable=False)
    batch = make_batch(world, "oracle", np.random.default_rng(0), batch_size=8, pairs=4)
    out = _regularizer(world, gate=mode, budget=1000)(batch, backbone.pair_score_fn(batch["user"]),
                                                       backbone.item_index)
    score_fn = backbone.score_fn(batch["user"])
    s_i, s_j = score_fn(batch["teacher_item_i"]), score_fn(batch["teacher_item_j"])
    expected = (selective_pairwise_hinge(s_i, s_j, batch["teacher_pref"]) if mode == "global"
                else pointwise_teacher_mse(s_i, s_j, batch["teacher_pref"]))
    assert float(out[TEACHER_LOSS]) == pytest.approx(float(expected), rel=1e-5)
    assert float(out[PAIR_WEIGHT_MEAN]) == 1.0 and float(out[GATE_LOSS]) == 0.0
    assert float(out[TEACHER_PAIRS_KEPT]) == 32


def test_budget_limits_teacher_pairs_per_batch(world):
    backbone = Backbone(world, 0, trainable=False)
    batch = make_batch(world, "oracle", np.random.default_rng(0), batch_size=8, pairs=4)
    regularizer = _regularizer(world, gate="global", budget=5)
    out = regularizer(batch, backbone.pair_score_fn(batch["user"]), backbone.item_index)
    assert float(out[TEACHER_PAIRS_KEPT]) == 5


@pytest.mark.parametrize("pairs", ["within_group", "tail_over_head"])
def test_pair_selection_keeps_the_pairs_of_its_popularity_rule(world, pairs):
    """``pairs`` restricts the hinge to the pairs of its rule (numpy quartiles of the index popularity)."""
    backbone = Backbone(world, 0, trainable=False)
    batch = make_batch(world, "oracle", np.random.default_rng(0), batch_size=16, pairs=6)
    out = _regularizer(world, gate="global", budget=1000, pairs=pairs)(
            batch, backbone.pair_score_fn(batch["user"]), backbone.item_index)
    popularity = np.asarray(world.popularity)
    order = np.argsort(popularity, kind="stable")
    quartile = np.empty(order.size, np.int64)
    quartile[order] = np.arange(order.size) * 4 // order.size
    b_i, b_j = (quartile[world.lookup(batch[f"teacher_item_{side}"]).numpy()] for side in "ij")
    pref = batch["teacher_pref"].numpy()
    keep = b_i == b_j if pairs == "within_group" else np.where(pref > 0.5, b_i < b_j, b_j < b_i)
    assert 0 < keep.sum() < keep.size
    score_fn = backbone.score_fn(batch["user"])
    s_i, s_j = (score_fn(batch[f"teacher_item_{side}"]).numpy()[keep] for side in "ij")
    sign = np.sign(pref[keep] - 0.5)
    expected = np.maximum(0.0, 1.0 - sign * (s_i - s_j)).mean()
    assert float(out[TEACHER_PAIRS_KEPT]) == keep.sum()
    assert float(out[TEACHER_LOSS]) == pytest.approx(expected, rel=1e-5)
    weights = _regularizer(world, gate="global", pairs=pairs).pair_weights(
            batch, backbone.pair_score_fn(batch["user"]), backbone.item_index).numpy()
    np.testing.assert_array_equal(weights > 0, keep)


def _reference_gate(world, regularizer, batch, prefix, s_i, s_j):
    """The gate of every ``[B, n]`` pair slot, from the formulas of the module docstring in numpy."""
    kernel, bias = (v.numpy() for v in regularizer.gate.trainable_variables)
    sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))
    uncertainty = lambda z: 1.0 - np.abs(2.0 * sigmoid(z) - 1.0)
    history = batch[schema.HISTORY_LENGTH].numpy().astype(np.float64)[:, None] * np.ones_like(s_i)
    cold = (history <= COLD_START_MAX_HISTORY).astype(np.float64)
    popularity = np.asarray(world.popularity, np.float64)
    log_popularity = np.log1p(popularity) / np.log1p(popularity.max())
    index_i, index_j = (world.lookup(batch[f"{prefix}_item_{side}"]).numpy() for side in "ij")
    tail = np.asarray(world.long_tail, np.float64)
    if regularizer.config.gate == "paper":
        gate = lambda index, s: sigmoid(np.stack([cold, tail[index], uncertainty(s)], -1) @ kernel[:, 0] + bias[0])
        return 0.5 * (gate(index_i, s_i) + gate(index_j, s_j))
    pop_i, pop_j = log_popularity[index_i], log_popularity[index_j]
    features = np.stack([cold, np.log1p(history) / np.log1p(1000), 0.5 * (tail[index_i] + tail[index_j]),
                         0.5 * (pop_i + pop_j), np.abs(pop_i - pop_j), uncertainty(s_i - s_j),
                         batch[f"{prefix}_confidence"].numpy()], -1)
    return features @ kernel[:, 0] + bias[0]  # logits: sigmoid gives the gate


def _budget_test_batch(world):
    """A small batch with padding, ties and distinct confidences."""
    batch = dict(make_batch(world, "oracle", np.random.default_rng(3), batch_size=6, pairs=4, probes=5))
    rng = np.random.default_rng(4)
    for prefix in ("teacher", "probe"):
        pref = batch[f"{prefix}_pref"].numpy().copy()
        pref[rng.uniform(size=pref.shape) < 0.2] = 0.5
        mask = (rng.uniform(size=pref.shape) < 0.8).astype(np.float32)
        batch[f"{prefix}_pref"] = tf.constant(pref)
        batch[f"{prefix}_confidence"] = tf.constant(np.abs(2 * pref - 1))
        batch[f"{prefix}_mask"] = tf.constant(mask)
    return batch


@pytest.mark.parametrize("mode", ["global", "pointwise", "paper", "reliability"])
@pytest.mark.parametrize("budget", [1000, 5])
def test_budget_first_equals_scoring_every_pair_then_masking(world, mode, budget):
    """Scoring only the kept pairs gives the loss of scoring every slot and masking the budget afterwards."""
    backbone = Backbone(world, 0, trainable=False)
    batch = _budget_test_batch(world)
    regularizer = _regularizer(world, gate=mode, budget=budget, probe_budget=1000)
    pair_score_fn = backbone.pair_score_fn(batch["user"])
    regularizer(batch, pair_score_fn, backbone.item_index)  # builds the gate
    if regularizer.gate is not None:
        kernel, bias = regularizer.gate.trainable_variables
        kernel.assign(np.random.default_rng(5).normal(0, 2, kernel.shape))
        bias.assign([0.3])
    out = regularizer(batch, pair_score_fn, backbone.item_index)

    score_fn = backbone.score_fn(batch["user"])
    s_i, s_j = (score_fn(batch[f"teacher_item_{side}"]).numpy() for side in "ij")
    pref = batch["teacher_pref"].numpy()
    real = batch["teacher_mask"].numpy() > 0
    candidates = real if mode == "pointwise" else real & (pref != 0.5)
    kept = budget_mask(candidates, batch["teacher_confidence"], budget).numpy()
    weights = np.ones_like(s_i)
    if mode == "paper":
        weights = _reference_gate(world, regularizer, batch, "teacher", s_i, s_j)
    elif mode == "reliability":
        weights = np.maximum(0.0, 2.0 / (1.0 + np.exp(-_reference_gate(world, regularizer, batch, "teacher", s_i,
                                                                          s_j))) - 1.0)
    expected = (pointwise_teacher_mse(s_i, s_j, pref, mask=kept) if mode == "pointwise"
                else selective_pairwise_hinge(s_i, s_j, pref, pair_weights=weights, mask=kept))
    assert float(out[TEACHER_PAIRS_KEPT]) == kept.sum() == min(budget, candidates.sum())
    assert float(out[TEACHER_LOSS]) == pytest.approx(float(expected), rel=1e-5)
    assert float(out[PAIR_WEIGHT_MEAN]) == pytest.approx(weights[kept].mean(), rel=1e-5)
    all_weights = regularizer.pair_weights(batch, pair_score_fn, backbone.item_index).numpy()
    ordered = real & (pref != 0.5)
    np.testing.assert_allclose(all_weights, np.where(ordered, weights, 0.0), rtol=1e-5, atol=1e-6)
    if mode == "reliability":
        p_i, p_j = (score_fn(batch[f"probe_item_{side}"]).numpy() for side in "ij")
        logits = _reference_gate(world, regularizer, batch, "probe", p_i, p_j)
        probe_pref = batch["probe_pref"].numpy()
        probe_ordered = (batch["probe_mask"].numpy() > 0) & (probe_pref != 0.5)
        labels = ((probe_pref > 0.5) == (batch["probe_truth"].numpy() > 0.5)).astype(np.float64)
        cross_entropy = np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))
        assert float(out[GATE_LOSS]) == pytest.approx(cross_entropy[probe_ordered].mean(), rel=1e-5)


@pytest.mark.parametrize("mode", ["global", "pointwise", "paper", "reliability"])
def test_backbone_scores_only_the_kept_teacher_pairs_and_the_probe_budget(world, mode):
    backbone = Backbone(world, 0, trainable=False)
    batch = make_batch(world, "oracle", np.random.default_rng(0), batch_size=16, pairs=4, probes=4)
    calls = []

    def pair_score_fn(rows, item_ids):
        calls.append((rows.shape[0], item_ids.shape[0]))
        return backbone.pair_score_fn(batch["user"])(rows, item_ids)

    out = _regularizer(world, gate=mode, budget=5, probe_budget=3)(batch, pair_score_fn, backbone.item_index)
    # One call: 5 pairs (both sides), then with the reliability gate 3 probes (both sides).
    assert calls == ([(16, 16)] if mode == "reliability" else [(10, 10)])
    assert float(out[TEACHER_PAIRS_KEPT]) == 5


def test_probe_subset_is_random_and_seeded(world):
    """With fewer probes scored than the batch holds, the gate loss is a seeded random estimate."""
    backbone = Backbone(world, 0, trainable=False)
    batch = make_batch(world, "oracle", np.random.default_rng(0), batch_size=16, pairs=4, probes=4)
    regularizer = _regularizer(world, gate="reliability", probe_budget=3)
    regularizer(batch, backbone.pair_score_fn(batch["user"]), backbone.item_index)
    kernel, _ = regularizer.gate.trainable_variables
    kernel.assign(np.random.default_rng(5).normal(0, 2, kernel.shape))

    def gate_losses(seed):
        tf.keras.utils.set_random_seed(seed)
        return [float(regularizer(batch, backbone.pair_score_fn(batch["user"]), backbone.item_index)[GATE_LOSS])
                for _ in range(4)]

    assert gate_losses(1) == gate_losses(1)
    assert len(set(gate_losses(1))) > 1


@pytest.mark.parametrize("mode", GATE_MODES)
@pytest.mark.parametrize("slots", [0, 4])
def test_every_mode_handles_a_batch_without_pairs(world, mode, slots):
    backbone = Backbone(world, 0, trainable=True)
    regularizer = _regularizer(world, gate=mode)
    batch = make_batch(world, "oracle", np.random.default_rng(0), batch_size=4, pairs=slots, probes=slots)
    batch = {k: tf.zeros_like(v) if k.endswith("_mask") else v for k, v in batch.items()}

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            out = regularizer(batch, backbone.pair_score_fn(batch["user"]), backbone.item_index)
            total = out[TEACHER_LOSS] + out[GATE_LOSS]
        variables = list(backbone.trainable_variables) + regularizer.trainable_variables
        return out, tape.gradient(total, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    out, grads = step(batch)
    assert set(out) == set(OUTPUT_KEYS)
    assert all(float(v) == 0.0 for v in out.values()), {k: float(v) for k, v in out.items()}
    for g in grads:
        g = tf.convert_to_tensor(g).numpy()
        assert np.isfinite(g).all() and not g.any()


def test_config_validation():
    with pytest.raises(ValueError, match="gate"):
        RegularizerConfig(gate="selective")
    with pytest.raises(ValueError, match="teacher_lambda"):
        RegularizerConfig(teacher_lambda=-0.1)
    with pytest.raises(ValueError, match="margin"):
        RegularizerConfig(margin=0.0)
    with pytest.raises(ValueError, match="budget"):
        RegularizerConfig(budget=0)
    with pytest.raises(ValueError, match="probe_budget"):
        RegularizerConfig(probe_budget=0)
    with pytest.raises(ValueError, match="item_gradient_min_weight"):
        RegularizerConfig(item_gradient_min_weight=1.5)


def test_constructor_validation():
    with pytest.raises(ValueError, match="same length"):
        SelectiveRegularizer(RegularizerConfig(), [1, 2, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="0/1"):
        SelectiveRegularizer(RegularizerConfig(), [1, 2], [0, 2], 3)
    with pytest.raises(ValueError, match="negative"):
        SelectiveRegularizer(RegularizerConfig(), [1, -2], [0, 1], 3)


def test_the_pair_budget_defaults_by_backbone():
    from tfrs_selreg.runs.config import resolve

    assert RegularizerConfig().budget is None
    with pytest.raises(ValueError, match="budget is None"):
        SelectiveRegularizer(RegularizerConfig(), [1, 2], [0, 1], 3)
    assert RegularizerConfig().for_backbone("two_tower").budget == 512
    assert RegularizerConfig().for_backbone("dcn").budget == 256
    assert RegularizerConfig(budget=64).for_backbone("dcn").budget == 64
    # TrainConfig records the resolved number (config.json), an explicit one wins.
    assert resolve(overrides={"model.backbone": "dcn"}).regularizer.budget == 256
    assert resolve(overrides={"model.backbone": "dcn", "regularizer.budget": 512}).regularizer.budget == 512
    assert resolve().regularizer.budget == 512


def test_get_config_round_trip(world):
    regularizer = _regularizer(world, gate="paper", budget=64, margin=0.5)
    restored = SelectiveRegularizer.from_config(regularizer.get_config())
    assert restored.config == regularizer.config
    assert restored.get_config() == regularizer.get_config()
    assert restored.teacher_lambda == 0.1
