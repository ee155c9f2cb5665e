"""The one config mechanism: typed, frozen dataclasses read from YAML/JSON mappings by reflection.

Every config of the package (``TrainConfig``, ``ExperimentConfig``, ``PrepareConfig``) is a dataclass
whose field annotations say what a value must be; :func:`from_dict` converts a nested mapping into it
and the dataclass's ``__post_init__`` checks the values (ranges, modes, joint rules). Errors are
:class:`ConfigError` and name the file and the field path, e.g. ``c.yaml.model.dcn: ...``.

Hand-written reflection rather than a library (dacite, pydantic): about 80 lines cover the annotations
the configs use (dataclasses, ``X | None``, ``tuple[X, ...]``, ``dict[str, X]``, scalars, ``Any``), they
keep the configs plain frozen dataclasses (picklable into Beam DoFns, ``dataclasses.asdict`` for the
JSON written next to every output), and add no dependency to the Beam workers.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A config cannot be used; the message names the file and the field and says what is expected."""


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """``value`` (from JSON/YAML/CLI) as the field type ``annotation``; errors name ``where``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return None if value is None else _convert(value, options[0], where)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, where)
    if origin in (tuple, list):
        if isinstance(value, (str, dict)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}.")
        item = args[0] if args else Any
        out = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}.")
        key_type, item = args if args else (Any, Any)
        return {_convert(k, key_type, where): _convert(v, item, f"{where}.{k}") for k, v in value.items()}
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{where}: expected true or false, got {value!r}.")
    if annotation in (int, float, str):
        # A float may come as a string: YAML 1.1 (PyYAML) reads ``2e-3`` (no dot) as one.
        if isinstance(value, bool) or (annotation is int and isinstance(value, float) and not value.is_integer()) \
                or (annotation is str and not isinstance(value, (str, int, float))) \
                or (annotation is int and not isinstance(value, (int, float))) \
                or (annotation is float and isinstance(value, (list, dict))):
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}.")
        try:
            return annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}.") from None
    return value


def from_dict(cls: type, values: Any, where: str = "config") -> Any:
    """A dataclass ``cls`` from a nested mapping.

    Unknown and missing keys are errors that name them; a ``ValueError`` of ``cls.__post_init__`` is
    re-raised as :class:`ConfigError` prefixed with ``where``.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, got {values!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; the fields of {cls.__name__} are "
                          f"{sorted(fields)}.")
    missing = [name for name, f in fields.items()
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               and name not in values]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {missing} of {cls.__name__}.")
    kwargs = {name: _convert(v, hints[name], f"{where}.{name}") for name, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """The JSON-ready mapping of a config dataclass (what :func:`from_dict` reads back)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def load_file(path: str) -> dict[str, Any]:
    """The mapping in a ``.yaml``/``.yml`` or ``.json`` file."""
    import yaml

    with open(path, encoding="utf-8") as f:
        try:
            if path.endswith((".yaml", ".yml")):
                values = yaml.safe_load(f) or {}
            elif path.endswith(".json"):
                values = json.load(f)
            else:
                raise ConfigError(f"{path}: config files must end in .yaml, .yml or .json.")
        except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                              f"{' '.join(str(e).split())}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config fields.")
    return values


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; dotted keys (``model.dcn.num_negatives``) reach into sections."""
    out = json.loads(json.dumps(base))
    for key, value in overrides.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {part!r} is not a section.")
        node[leaf] = value
    return out


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as dotted-key overrides for :func:`merge` (values parsed as YAML)."""
    import yaml

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. model.dcn.num_negatives=8.")
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({' '.join(str(e).split())}); "
                              "quote strings that hold ':' or '#'.") from None
    return overrides


def changed_fields(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted paths where two config mappings differ (what a cached stage reports as changed)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_fields(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out
