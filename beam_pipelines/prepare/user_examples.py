"""Per user: the split (and cold-start simulation), then the ``tf.train.Example`` records with the joined labels."""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from beam_pipelines.prepare.options import COUNTS, REJECTED
from beam_pipelines.prepare.read import INTERACTIONS, LABELS, reject_record
from tfrs_selreg.data import examples as ex
from tfrs_selreg.data import label_join, pair_sampling, prepared, splitting
from tfrs_selreg.data import labels as labels_lib
from tfrs_selreg.data.prepare_config import PrepareConfig

POPULARITY = "popularity"  # SplitUsers' output: (item_id, training interactions) per bundle


@beam.typehints.with_output_types(Any)
class SplitUsers(beam.DoFn):
    """``(user_id, [(INTERACTIONS, interactions) or (LABELS, label row)])`` -> ``(UserSplit, label rows)``
    (dedup, split, cold-start simulation); the label rows of a user without interactions are rejected as
    ``unknown_user``. The training interactions per item are counted for the whole bundle and emitted
    once at its end as ``(item_id, count)`` (``POPULARITY``), not as an element per interaction."""

    def __init__(self, mode: str, seed: int, cold_start_fraction: float):
        self._mode, self._seed, self._cold = mode, seed, cold_start_fraction
        self._popularity: collections.Counter = collections.Counter()

    def start_bundle(self):
        self._popularity = collections.Counter()

    def process(self, element, cuts=None):
        user_id, values = element
        interactions = [x for tag, value in values if tag == INTERACTIONS for x in value]
        label_rows = [value for tag, value in values if tag == LABELS]
        if not interactions:
            for row, path, line in label_rows:
                yield beam.pvalue.TaggedOutput(REJECTED, reject_record(
                    "labels", path, line, labels_lib.REJECT_UNKNOWN_USER, row.to_json()))
            return
        val_cut, test_cut = cuts if cuts else (None, None)
        split = splitting.split_user(user_id, interactions, mode=self._mode, seed=self._seed,
                                     cold_start_fraction=self._cold, val_cut=val_cut, test_cut=test_cut)
        if split.duplicates:
            yield beam.pvalue.TaggedOutput(COUNTS, ("duplicate_interactions", split.duplicates))
        if split.dropped_by_simulation:
            yield beam.pvalue.TaggedOutput(COUNTS, ("dropped_by_cold_start_simulation",
                                                    split.dropped_by_simulation))
        if split.simulated_cold_start:
            yield beam.pvalue.TaggedOutput(COUNTS, ("simulated_cold_start_users", 1))
        self._popularity.update(x[0] for x in split.train)
        yield split, label_rows

    def finish_bundle(self):
        for item_count in self._popularity.items():
            yield beam.pvalue.TaggedOutput(POPULARITY, WindowedValue(item_count, MIN_TIMESTAMP, (GlobalWindow(),)))
        self._popularity = collections.Counter()


def build_catalog(items: list, popularity: dict[str, int], long_tail_fraction: float) -> dict:
    """Catalog info: vocabulary order, popularity, long-tail set and threshold."""
    pop = {it.item_id: int(popularity.get(it.item_id, 0)) for it in items}
    tail, tail_max = splitting.long_tail_items(pop, long_tail_fraction)
    order = splitting.catalog_order(pop)
    by_id = {it.item_id: it for it in items}
    return {"order": order, "popularity": pop, "long_tail": tail, "long_tail_max_popularity": tail_max,
            "items": by_id}


@dataclasses.dataclass
class UserRecords:
    """One user's output: ``records[split]`` as ``(sort_key, serialized tf.train.Example)``, the users-file
    row, the rejected label rows (dead-letter records) and the counts."""

    records: dict[str, list]
    user: prepared.User
    rejected: list[dict]
    counts: collections.Counter


def user_records(split: splitting.UserSplit, label_rows: list, catalog: dict, config: PrepareConfig,
                 with_labels: bool) -> UserRecords:
    """The records of one user's split with its joined label rows (``(LabelRow, path, line)``)."""
    o = config
    user_id = split.user_id
    held_out = {x[0] for x in split.val} | {x[0] for x in split.test}
    teacher_rows, probe_rows, rejected = label_join.join_user(
        ((row, (path, line)) for row, path, line in label_rows), catalog["popularity"], held_out)
    counts: collections.Counter = collections.Counter()
    counts["labels_joined_teacher"] += len(teacher_rows)
    counts["labels_joined_probe"] += len(probe_rows)

    pop, tail = catalog["popularity"], catalog["long_tail"]
    train_items = [x[0] for x in split.train]
    n_train = len(train_items)
    cold = n_train <= o.cold_start_max_history
    L, seed = o.history_length, o.seed
    encoder = ex.UserExamples(user_id, n_train, cold)
    histories = encoder.histories(train_items, L)  # [k]: the history of record k; [n_train]: val/test's
    train_order = splitting.unit_hasher(seed, "order", user_id)
    held_out_order = {name: splitting.unit_hasher(seed, "order", user_id, name) for name in ("val", "test")}
    train_records = []
    for k, (item_id, ts, rating, _) in enumerate(split.train):
        record = encoder.example(
            item_id, histories[k], ts, rating, pop[item_id], item_id in tail,
            pair_sampling.sample(teacher_rows, o.teacher_pairs, seed=seed, user_id=user_id, salt=k,
                                 kind=pair_sampling.TEACHER) if with_labels else None,
            pair_sampling.sample(probe_rows, o.probe_pairs, seed=seed, user_id=user_id, salt=k,
                                 kind=pair_sampling.PROBE) if with_labels else None,
            o.teacher_pairs, o.probe_pairs)
        train_records.append((train_order(k), record))
    records = {"train": train_records}
    for name, rows in (("val", split.val), ("test", split.test)):
        records[name] = [
            (held_out_order[name](k), encoder.example(item_id, histories[n_train], ts, rating, pop.get(item_id, 0),
                                                      item_id in tail))
            for k, (item_id, ts, rating, _) in enumerate(rows)]
    for name, rows in (("train", split.train), ("val", split.val), ("test", split.test)):
        if rows:
            counts[f"interactions_{name}"] += len(rows)
            counts[f"users_with_{name}"] += 1
    counts["users"] += 1
    if cold:
        counts["cold_start_users"] += 1
    user = prepared.User(user_id, tuple(train_items), tuple(x[0] for x in split.val),
                         tuple(x[0] for x in split.test), history_length=n_train, cold_start=cold)
    return UserRecords(records, user, [reject_record("labels", path, line, reason, row.to_json())
                                       for row, (path, line), reason in rejected], counts)
