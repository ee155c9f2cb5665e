"""The label-row contract of ``tfrs_selreg.data.labels``: what a row may hold, and the errors for what it may not."""

import pytest

from tfrs_selreg.data import labels

PROBE = {"user_id": "u1", "item_i": "i1", "item_j": "i2", "pref": 0.8, "kind": "probe"}


@pytest.mark.parametrize("truth", [0, 1, 0.0, 1.0])
def test_probe_truth_zero_or_one_is_accepted(truth):
    assert labels.from_dict({**PROBE, "truth": truth}).truth == int(truth)


@pytest.mark.parametrize("truth", [0.7, 0.3, 2, -0.5, "1", True])
def test_probe_truth_other_than_zero_or_one_is_rejected(truth):
    with pytest.raises(ValueError, match="truth must be 0 or 1"):
        labels.from_dict({**PROBE, "truth": truth})


def test_probe_without_truth_is_rejected():
    with pytest.raises(ValueError, match="probe rows need truth"):
        labels.from_dict({**PROBE, "truth": None})
