"""Checks exported SavedModels the way a serving process sees them: TensorFlow only, no tfrs_selreg.

    python tests/export/serving_check.py CASES.json REPORT.json

``CASES.json``::

    {"atol": 1e-5,
     "models": [{"saved_model": DIR,
                 "cases": [{"name": ..., "signature": ..., "inputs": {name: nested list},
                            "expected": {name: nested list} or null}],
                 "rest_bodies": [TF Serving REST :predict bodies]}]}

For every model: loads it with ``tf.saved_model.load``, calls each case's signature and compares its
outputs with ``expected`` (strings exactly, floats to ``atol``; ``null`` only asks for a reply of the
right batch size), replays every ``assets.extra/tf_serving_warmup_requests`` record (``PredictionLog``
inputs through ``tf.make_ndarray``), turns each REST body (row ``instances`` or columnar ``inputs``,
``{"b64": ...}`` for bytes) into tensors, checks them against the signature's input spec and calls it,
and lists the signatures, the variables (from the object graph) and the op types and function names of
the graph. ``REPORT.json`` gets ``{"models": [{"saved_model", "errors", "checked", "warmup_records",
"rest_bodies", "inventory"}]}``; the exit status is 1 when any model has errors.
"""

from __future__ import annotations

import base64
import json
import os
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def _decode(value):
    """JSON values as TF Serving's REST API reads them: ``{"b64": ...}`` is base64-encoded bytes."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _tensor(value, spec: tf.TensorSpec) -> tf.Tensor:
    array = np.array(_decode(value), dtype=object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype)
    if spec.dtype == tf.string and array.size == 0:
        array = array.astype(np.bytes_)
    return tf.constant(array, dtype=spec.dtype)


def _input_specs(function) -> dict[str, tf.TensorSpec]:
    return dict(function.structured_input_signature[1])


def _compare(name: str, outputs: dict, expected: dict, atol: float) -> list[str]:
    errors = []
    for key, want in expected.items():
        got = outputs[key].numpy()
        if got.dtype == object:
            got = np.vectorize(lambda b: b.decode())(got) if got.size else got.astype(str)
            if got.tolist() != want:
                errors.append(f"{name}: {key} {got.tolist()} != expected {want}")
        elif not np.allclose(got, np.array(want, np.float32), atol=atol, rtol=atol):
            errors.append(f"{name}: {key} max |diff| {np.max(np.abs(got - np.array(want))):.3g} > {atol}")
    return errors


def _rest_inputs(body: dict, specs: dict[str, tf.TensorSpec]) -> dict[str, object]:
    """The columns of a REST ``:predict`` body, columnar (``inputs``) or row (``instances``) format.

    A signature with one input may give its values directly instead of ``{name: value}`` mappings.
    """
    if "inputs" in body:
        inputs = body["inputs"]
        return dict(inputs) if isinstance(inputs, dict) else {next(iter(specs)): inputs}
    rows = body["instances"]
    if all(isinstance(r, dict) and set(r) != {"b64"} for r in rows):
        return {k: [r[k] for r in rows] for k in rows[0]}
    return {next(iter(specs)): rows}


def inventory(saved_model_dir: str, loaded) -> dict:
    """Signatures, variables (name, dtype, shape), op types and function names of a SavedModel."""
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    meta = proto.meta_graphs[0]
    variables = sorted((n.variable.name, tf.dtypes.as_dtype(n.variable.dtype).name,
                        [d.size for d in n.variable.shape.dim])
                       for n in meta.object_graph_def.nodes if n.WhichOneof("kind") == "variable")
    functions = meta.graph_def.library.function
    ops = {n.op for n in meta.graph_def.node} | {n.op for f in functions for n in f.node_def}
    signatures = {}
    for name, function in loaded.signatures.items():
        signatures[name] = {
            "inputs": {k: [s.dtype.name, s.shape.as_list()] for k, s in sorted(_input_specs(function).items())},
            "outputs": {k: [s.dtype.name, s.shape.as_list()] for k, s in sorted(function.structured_outputs.items())},
        }
    return {"signatures": signatures, "variables": variables, "op_types": sorted(ops),
            "function_names": sorted(f.signature.name for f in functions)}


def check_model(entry: dict, atol: float) -> dict:
    directory = entry["saved_model"]
    loaded = tf.saved_model.load(directory)
    errors, checked = [], 0
    for case in entry.get("cases", []):
        function = loaded.signatures[case["signature"]]
        specs = _input_specs(function)
        try:
            outputs = function(**{k: _tensor(v, specs[k]) for k, v in case["inputs"].items()})
        except Exception as e:  # a failing call is a finding to report, not a crash of the check
            errors.append(f"{case['name']}: {type(e).__name__}: {e}")
            continue
        batch = len(next(iter(case["inputs"].values())))
        errors += [f"{case['name']}: {k} has batch {v.shape[0]}, expected {batch}"
                   for k, v in outputs.items() if v.shape[0] != batch]
        errors += _compare(case["name"], outputs, case.get("expected") or {}, atol)
        checked += 1

    warmup = 0
    for record in tf.data.TFRecordDataset(os.path.join(directory, WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        try:
            outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
            batch = next(iter(inputs.values())).shape[0]
            errors += [f"warm-up {warmup}: {k} has batch {v.shape[0]}, expected {batch}"
                       for k, v in outputs.items() if v.shape[0] != batch]
        except Exception as e:  # reported like a failing case
            errors.append(f"warm-up record {warmup} ({request.model_spec.signature_name}): {e}")
        warmup += 1

    rest = 0
    for body in entry.get("rest_bodies", []):
        name = body.get("signature_name", "serving_default")
        specs = _input_specs(loaded.signatures[name])
        columns = _rest_inputs(body, specs)
        if set(columns) != set(specs):
            errors.append(f"REST body for {name}: inputs {sorted(columns)} != signature inputs {sorted(specs)}")
            continue
        tensors = {k: _tensor(v, specs[k]) for k, v in columns.items()}
        bad = [k for k, t in tensors.items() if not specs[k].is_compatible_with(t)]
        if bad:
            errors.append(f"REST body for {name}: {bad} do not match {[specs[k] for k in bad]}")
            continue
        try:
            loaded.signatures[name](**tensors)
        except Exception as e:  # reported like a failing case
            errors.append(f"REST body for {name}: {type(e).__name__}: {e}")
            continue
        rest += 1
    return {"saved_model": directory, "errors": errors, "checked": checked, "warmup_records": warmup,
            "rest_bodies": rest, "inventory": inventory(directory, loaded)}


def main(argv: list[str]) -> int:
    cases_path, report_path = argv
    with open(cases_path, encoding="utf-8") as f:
        cases = json.load(f)
    report = {"models": [check_model(entry, cases.get("atol", 1e-5)) for entry in cases["models"]],
              "tfrs_selreg_imported": "tfrs_selreg" in sys.modules,
              "tf_use_legacy_keras": os.environ.get("TF_USE_LEGACY_KERAS")}
    with open(report_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    return 1 if any(m["errors"] for m in report["models"]) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
