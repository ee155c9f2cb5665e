"""SelectiveLLMRegularization: the same terms as SelectiveRegularizer for both backbones, and a ranking model
of the test's own, fed by TeacherPairs, trained with fit."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tests.synthetic import make_prepared
from tests.tasks.test_teacher_pairs import joined  # noqa: F401  (a fixture)
from tfrs_selreg.data import input_fn, schema
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.models import BACKBONES, ModelConfig, build_model
from tfrs_selreg.regularizer import GATE_LOSS, OUTPUT_KEYS, TEACHER_LOSS, RegularizerConfig, SelectiveRegularizer
from tfrs_selreg.tasks import SelectiveLLMRegularization, TeacherPairs, with_item_gradient


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return PreparedData(make_prepared(str(tmp_path_factory.mktemp("prepared")), n_users=24, n_items=40, seed=5))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_the_task_gives_the_regularizers_terms(data, backbone):
    batch = next(iter(input_fn.make_dataset(data.directory, "train", batch_size=32, shuffle=True, seed=0)))
    config = RegularizerConfig(gate="reliability").for_backbone(backbone)  # every probe: no random subset
    model = build_model(ModelConfig(backbone=backbone, embedding_dim=8), data, config)
    task = model.regularizer
    assert isinstance(task, SelectiveLLMRegularization)
    task.gate.set_weights([np.linspace(-1, 1, 7).reshape(7, 1).astype(np.float32), np.array([0.3], np.float32)])
    state = model.user_state(batch)
    catalog = model.catalog
    direct = SelectiveRegularizer(config, catalog.popularity, catalog.long_tail,
                                  data.stats().thresholds.cold_start_max_history)

    def scores(rows, item_ids, item_gradient=None):
        index = model.item_index(item_ids)
        gradient = direct.item_gradient(index) if item_gradient is None else item_gradient
        return model.pair_score_state(state, rows, index, item_gradient=gradient)

    tf.random.set_seed(11)
    direct(batch, pair_score_fn=scores, item_index_fn=model.item_index)  # creates the gate's variables
    direct.gate.set_weights(task.gate.get_weights())
    tf.random.set_seed(11)
    expected = direct(batch, pair_score_fn=scores, item_index_fn=model.item_index)
    assert float(expected["teacher_pairs_kept"]) > 0 and float(expected[GATE_LOSS]) > 0
    tf.random.set_seed(11)
    if backbone == "two_tower":
        loss = task(batch, query_embeddings=state,
                    candidate_model=lambda ids: model.item_embedding_from_index(model.item_index(ids)))
    else:
        loss = task(batch, pair_score_fn=lambda rows, ids, item_gradient: model.pair_score_state(
            state, rows, model.item_index(ids), item_gradient=item_gradient))
    want = config.teacher_lambda * float(expected[TEACHER_LOSS]) + float(expected[GATE_LOSS])
    assert float(loss) == pytest.approx(want, rel=1e-5)
    for key in OUTPUT_KEYS:
        assert float(task.trackers[key].result()) == pytest.approx(float(expected[key]), rel=1e-5, abs=1e-7), key
    tf.random.set_seed(11)
    terms = model.loss_terms(batch)  # the backbone's own path goes through the same task
    for key in OUTPUT_KEYS:
        assert float(terms[key]) == pytest.approx(float(expected[key]), rel=1e-5, abs=1e-7), key


def test_item_side_scope_needs_item_gradient(data):
    task = SelectiveLLMRegularization.from_prepared(data.directory)
    batch = next(iter(input_fn.make_dataset(data.directory, "train", batch_size=8, shuffle=False, seed=0)))
    with pytest.raises(TypeError, match="item_gradient"):
        task(batch, pair_score_fn=lambda rows, ids: tf.zeros(tf.shape(rows), tf.float32))
    every = SelectiveLLMRegularization.from_prepared(data.directory, teacher_gradient="all", gate="global")
    assert np.isfinite(float(every(batch, pair_score_fn=lambda rows, ids: tf.zeros(tf.shape(rows), tf.float32))))
    with pytest.raises(TypeError, match="unknown option"):
        SelectiveLLMRegularization.from_prepared(data.directory, lambda_=0.1)


class _Scorer(tfrs.Model):
    """A ranking model written here: an MLP on (user embedding, item embedding), binary cross-entropy on
    positives and one shuffled negative per row; S-LLMR added through TeacherPairs and the task."""

    def __init__(self, users, items, teacher_pairs, llmr):
        super().__init__()
        self.user_embedding = tf.keras.Sequential([tf.keras.layers.StringLookup(vocabulary=users),
                                                   tf.keras.layers.Embedding(len(users) + 1, 8)])
        self.item_embedding = tf.keras.Sequential([tf.keras.layers.StringLookup(vocabulary=items),
                                                   tf.keras.layers.Embedding(len(items) + 1, 8)])
        self.mlp = tf.keras.Sequential([tf.keras.layers.Dense(16, activation="relu"), tf.keras.layers.Dense(1)])
        self.task = tfrs.tasks.Ranking(loss=tf.keras.losses.BinaryCrossentropy(from_logits=True))
        self.teacher_pairs, self.llmr = teacher_pairs, llmr

    def score(self, users, items):
        return tf.squeeze(self.mlp(tf.concat([users, items], axis=-1)), -1)

    def compute_loss(self, features, training=False):
        users = self.user_embedding(features["user_id"])
        positives = self.item_embedding(features["item_id"])
        negatives = tf.random.shuffle(positives)
        logits = tf.concat([self.score(users, positives), self.score(users, negatives)], 0)
        labels = tf.concat([tf.ones_like(logits[: tf.shape(users)[0]]), tf.zeros_like(logits[tf.shape(users)[0]:])], 0)
        loss = self.task(labels=labels, predictions=logits)

        def pair_score_fn(rows, item_ids, item_gradient):
            items = with_item_gradient(self.item_embedding(item_ids), item_gradient)
            return self.score(tf.gather(users, rows), items)

        pairs = self.teacher_pairs(features["user_id"], training=training)
        return loss + self.llmr(pairs, pair_score_fn=pair_score_fn, training=training)


def test_a_ranking_model_of_its_own_trains_with_the_task(joined):  # noqa: F811
    labels, out, _ = joined
    data = PreparedData(out)
    teacher_pairs = TeacherPairs.from_folders(labels, out, item_index=True)  # the task maps indices back to ids
    llmr = SelectiveLLMRegularization.from_prepared(out, gate="reliability", budget=16)
    model = _Scorer(data.user_vocabulary(), data.item_vocabulary(), teacher_pairs, llmr)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    dataset = input_fn.make_dataset(out, "train", batch_size=4, shuffle=True, seed=0, include_training_only=False).map(
        lambda f: {"user_id": f[schema.USER_ID], "item_id": f[schema.ITEM_ID]}).repeat(5)
    history = model.fit(dataset, epochs=2, verbose=0).history
    assert {"teacher_loss", "gate_loss", "teacher_pairs_kept", "probe_accuracy"} <= set(history)
    assert history["teacher_pairs_kept"][-1] > 0 and all(np.isfinite(history["loss"]))
    assert int(teacher_pairs.step.numpy()) > 0
