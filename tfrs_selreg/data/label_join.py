"""One user's teacher label rows joined with its data: which rows a training example may carry.

Shared by ``prepare --labels`` and :class:`tfrs_selreg.tasks.TeacherPairs`, so that both keep and order
a user's rows the same way before :mod:`tfrs_selreg.data.pair_sampling` samples them.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import TypeVar

from tfrs_selreg.data import labels as labels_lib
from tfrs_selreg.data import schema

Where = TypeVar("Where")


def join_user(rows: Iterable[tuple[labels_lib.LabelRow, Where]], catalog: Container[str], held_out: Container[str]
              ) -> tuple[list[labels_lib.LabelPair], list[labels_lib.LabelPair],
                         list[tuple[labels_lib.LabelRow, Where, str]]]:
    """``(teacher pairs, probe pairs, rejected)`` of one user's label rows (each with where it came from).

    A row is rejected when an item is not in ``catalog`` (``unknown_item``) or is one of the user's validation
    or test items (``leakage_val_or_test_item``: the teacher would see what the model is evaluated on). The
    pairs are sorted (label files have no defined order), so sampling does not depend on the reader.
    """
    teacher, probes, rejected = [], [], []
    for row, where in rows:
        if row.item_i not in catalog or row.item_j not in catalog:
            rejected.append((row, where, labels_lib.REJECT_UNKNOWN_ITEM))
        elif row.item_i in held_out or row.item_j in held_out:
            rejected.append((row, where, labels_lib.REJECT_LEAKAGE))
        elif row.kind == schema.KIND_PROBE:
            probes.append(labels_lib.LabelPair(row.item_i, row.item_j, row.pref, row.effective_confidence, row.truth))
        else:
            teacher.append(labels_lib.LabelPair(row.item_i, row.item_j, row.pref, row.effective_confidence))
    return sorted(teacher), sorted(probes), rejected
