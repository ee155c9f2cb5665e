"""S-LLMR added to your own TFRS model: the two-tower model of the TFRS retrieval tutorial, plus a few lines.

    tfrs-selreg prepare --dataset ml-latest-small --output out/ml-small --runner DirectRunner
    tfrs-selreg score --prepared out/ml-small --teacher embedding --output out/labels --runner DirectRunner
    python examples/own_tfrs_model.py --prepared out/ml-small --labels out/labels --export out/own-model

The model, its data pipeline and its export are written the way the TFRS tutorial writes them (user id ->
embedding, movie title -> embedding, ``tfrs.tasks.Retrieval``, a ``BruteForce`` index saved with
``tf.saved_model.save``), on the bundled MovieLens ratings read with ``tf.data``. The lines marked
``# S-LLMR`` are all that S-LLMR adds: the teacher's pairs of a batch's users, added in the input
pipeline (``TeacherPairs``, from the labels ``score`` wrote), and the gated teacher loss
(``SelectiveLLMRegularization``). The exported index
holds the user tower and the movie embeddings only; ``--no-llmr`` trains the same model without them.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFRS needs Keras 2

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402

from tfrs_selreg.data.readers import bundled_data_dir  # noqa: E402
from tfrs_selreg.tasks import SelectiveLLMRegularization, TeacherPairs  # noqa: E402  # S-LLMR


def load_movielens(data_dir: str, max_users: int | None = None) -> tuple[tf.data.Dataset, tf.data.Dataset,
                                                                      tf.lookup.StaticHashTable]:
    """``(ratings {user_id, movie_title}, movie titles, movie id -> title)`` from MovieLens csv files."""
    movie_ids, titles = [], []
    for movie_id, title in tf.data.experimental.CsvDataset(
            os.path.join(data_dir, "movies.csv"), [tf.string, tf.string], header=True, select_cols=[0, 1]):
        movie_ids.append(movie_id)
        titles.append(title)
    title_of = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(tf.stack(movie_ids), tf.stack(titles)),
                                         default_value="")
    ratings = tf.data.experimental.CsvDataset(os.path.join(data_dir, "ratings.csv"), [tf.string, tf.string],
                                              header=True, select_cols=[0, 1])
    if max_users is not None:
        ratings = ratings.filter(lambda user, movie: tf.strings.to_number(user, tf.int64) <= max_users)
    ratings = ratings.map(lambda user, movie: {"user_id": user, "movie_title": title_of.lookup(movie)}).cache()
    return ratings, tf.data.Dataset.from_tensor_slices(tf.stack(titles)), title_of


class MovieLensModel(tfrs.Model):
    """The tutorial's model; ``llmr`` (optional) adds S-LLMR on batches that carry teacher pairs."""

    def __init__(self, user_model, movie_model, task, llmr=None, title_of=None):
        super().__init__()
        self.user_model = user_model
        self.movie_model = movie_model
        self.task = task
        self.llmr, self.title_of = llmr, title_of  # S-LLMR

    def compute_loss(self, features, training=False):
        user_embeddings = self.user_model(features["user_id"])
        movie_embeddings = self.movie_model(features["movie_title"])
        loss = self.task(user_embeddings, movie_embeddings, compute_metrics=not training)
        if self.llmr is not None and "teacher_pref" in features:  # S-LLMR: the batch's pairs, scored by the towers
            loss += self.llmr(features, query_embeddings=user_embeddings, training=training,
                              candidate_model=lambda movie_ids: self.movie_model(self.title_of.lookup(movie_ids)))
        return loss


def build(ratings: tf.data.Dataset, movies: tf.data.Dataset, title_of, *, prepared: str | None, labels: str | None,
          embedding_dim: int = 64) -> tuple[MovieLensModel, TeacherPairs | None]:
    """The tutorial's towers and task; with ``prepared`` and ``labels``, S-LLMR's task and the layer that adds
    each batch's teacher pairs in the input pipeline."""
    user_ids_vocabulary = tf.keras.layers.StringLookup(mask_token=None)
    user_ids_vocabulary.adapt(ratings.map(lambda x: x["user_id"]).batch(4096))
    movie_titles_vocabulary = tf.keras.layers.StringLookup(mask_token=None)
    movie_titles_vocabulary.adapt(movies.batch(4096))
    # The string Input layer: without it, tf-keras 2.21 casts a Sequential's string input to int64.
    user_model = tf.keras.Sequential([
        tf.keras.Input(shape=(), dtype=tf.string), user_ids_vocabulary,
        tf.keras.layers.Embedding(user_ids_vocabulary.vocabulary_size(), embedding_dim)])
    movie_model = tf.keras.Sequential([
        tf.keras.Input(shape=(), dtype=tf.string), movie_titles_vocabulary,
        tf.keras.layers.Embedding(movie_titles_vocabulary.vocabulary_size(), embedding_dim)])
    task = tfrs.tasks.Retrieval(metrics=tfrs.metrics.FactorizedTopK(movies.batch(128).map(movie_model)))
    if not labels:
        return MovieLensModel(user_model, movie_model, task), None
    teacher_pairs = TeacherPairs.from_folders(labels, prepared, item_index=True)  # S-LLMR
    llmr = SelectiveLLMRegularization.from_prepared(prepared)  # S-LLMR
    return MovieLensModel(user_model, movie_model, task, llmr, title_of), teacher_pairs


def with_teacher_pairs(batches: tf.data.Dataset, teacher_pairs: TeacherPairs) -> tf.data.Dataset:
    """S-LLMR: each batch with its users' teacher pairs, a new sample per batch; tf.data overlaps the lookup
    with the training step."""
    return batches.map(lambda batch: {**batch, **teacher_pairs(batch["user_id"], training=True)})


def export(model: MovieLensModel, movies: tf.data.Dataset, path: str) -> tfrs.layers.factorized_top_k.BruteForce:
    """The tutorial's serving model: a brute-force top-k index over the user tower, as a SavedModel."""
    index = tfrs.layers.factorized_top_k.BruteForce(model.user_model)
    index.index_from_dataset(movies.batch(100).map(lambda title: (title, model.movie_model(title))))
    index(tf.constant(["42"]))  # traces the call before saving
    tf.saved_model.save(index, path)
    return index


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=bundled_data_dir(), help="MovieLens ratings.csv and movies.csv")
    p.add_argument("--prepared", help="the folder `tfrs-selreg score` scored (its users and item statistics)")
    p.add_argument("--labels", help="the --output folder of `tfrs-selreg score`")
    p.add_argument("--no-llmr", action="store_true", help="the tutorial's model alone")
    p.add_argument("--export", required=True, help="folder for the SavedModel")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--max-users", type=int, help="only users 1 .. N (a slice, for tests)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not args.no_llmr and not (args.prepared and args.labels):
        p.error("S-LLMR needs --prepared and --labels (or pass --no-llmr)")
    tf.keras.utils.set_random_seed(args.seed)
    ratings, movies, title_of = load_movielens(args.data_dir, args.max_users)
    model, teacher_pairs = build(ratings, movies, title_of, prepared=args.prepared,
                                 labels=None if args.no_llmr else args.labels)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(0.5))
    train = ratings.shuffle(100_000, seed=args.seed, reshuffle_each_iteration=True).batch(args.batch_size)
    if teacher_pairs is not None:
        train = with_teacher_pairs(train, teacher_pairs)  # S-LLMR
    history = model.fit(train, epochs=args.epochs, verbose=2)
    index = export(model, movies, args.export)
    _, titles = index(np.array(["42"]))
    print(f"final loss {history.history['loss'][-1]:.4f}; top 3 for user 42: "
          f"{[t.decode() for t in titles[0, :3].numpy()]}; SavedModel in {args.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
