"""TrainConfig: paper defaults, YAML/JSON files, CLI overrides, errors that name the field."""

import json

import pytest

from tfrs_selreg.runs import config as config_lib
from tfrs_selreg.training.train import _parser, config_from_args


def test_paper_defaults():
    c = config_lib.TrainConfig()
    assert (c.learning_rate, c.model.embedding_dim, c.regularizer.teacher_lambda, c.batch_size) == (1e-3, 64, 0.1, 128)
    assert c.regularizer.gate == "reliability" and c.model.backbone == "two_tower"


def test_yaml_then_cli(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  backbone: dcn\n  dcn: {num_negatives: 8, deep_layers: [32, 16]}\n"
                    "regularizer: {gate: paper, teacher_lambda: 0.5}\nlearning_rate: 2e-3\nepochs: 7\n")
    args = _parser().parse_args(["--config", str(path), "--prepared", "P", "--output", "O", "--epochs", "3",
                                 "--gate", "global", "--set", "model.dcn.negative_sampling=popularity",
                                 "--set", "validation_max_users=50"])
    c = config_from_args(args)
    assert c.model.backbone == "dcn" and c.model.dcn.num_negatives == 8 and c.model.dcn.deep_layers == (32, 16)
    assert c.model.dcn.negative_sampling == "popularity" and c.validation_max_users == 50
    assert c.regularizer.gate == "global" and c.regularizer.teacher_lambda == 0.5
    assert c.learning_rate == 2e-3 and c.epochs == 3 and (c.prepared, c.output) == ("P", "O")


def test_json_round_trip(tmp_path):
    c = config_lib.resolve(overrides={"model.backbone": "dcn", "model.dcn.projection_dim": 4, "seed": 3})
    config_lib.save(c, str(tmp_path / "config.json"))
    assert config_lib.load(str(tmp_path / "config.json")) == c
    (tmp_path / "c.json").write_text(json.dumps(c.to_json()))
    assert config_lib.resolve(str(tmp_path / "c.json")) == c


@pytest.mark.parametrize("values, message", [
    ({"model": {"embeding_dim": 3}}, r"c.json.model: unknown field\(s\) \['embeding_dim'\]"),
    ({"epochs": "many"}, "c.json.epochs: expected int"),
    ({"regularizer": {"gate": "sometimes"}}, "c.json.regularizer: .*not a gate mode"),
    ({"strategy": "tpu"}, "c.json: .*strategy"),
    ({"model": {"dcn": {"negative_sampling": "hard"}}}, "c.json.model.dcn: .*negative_sampling"),
])
def test_errors_name_the_field(tmp_path, values, message):
    (tmp_path / "c.json").write_text(json.dumps(values))
    with pytest.raises(ValueError, match=message):
        config_lib.resolve(str(tmp_path / "c.json"))


def test_bad_set_flag():
    with pytest.raises(ValueError, match="KEY=VALUE"):
        config_from_args(_parser().parse_args(["--set", "epochs"]))


def test_a_run_config_from_before_the_gate_options_were_removed_loads_when_it_used_their_defaults(tmp_path):
    from tfrs_selreg.runs import config as config_lib

    values = config_lib.TrainConfig().to_json()
    values["regularizer"].update(gate_hidden_units=0, initial_gate=0.5)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    assert config_lib.load(str(path)) == config_lib.TrainConfig()
    values["regularizer"]["gate_hidden_units"] = 2
    path.write_text(json.dumps(values))
    with pytest.raises(ValueError, match="gate_hidden_units is no longer an option"):
        config_lib.load(str(path))
