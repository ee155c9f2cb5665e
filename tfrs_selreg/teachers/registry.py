"""Teachers by name: imports a teacher's module on demand so that it registers itself.

A teacher module registers its class with ``base.register`` when imported. Importing is deferred to
:func:`create` so that an optional dependency (``llama_cpp``, ``sentence_transformers``, ...)
is needed only when its teacher is chosen, and a missing one fails with the install command.
"""

from __future__ import annotations

import importlib

from tfrs_selreg.teachers import base

# teacher name -> (module that registers it, pip extra that installs its dependencies)
TEACHERS = {
    "embedding": ("tfrs_selreg.teachers.embedding_teacher", "embedding"),
    "llama-cpp": ("tfrs_selreg.teachers.llama_cpp_teacher", "llama"),
    "openai": ("tfrs_selreg.teachers.openai_teacher", "all"),
    "random": ("tfrs_selreg.teachers.random_teacher", "all"),
}

# The constructor option that names the model, where it is not ``model`` (``--model`` maps to it).
MODEL_OPTION = {"llama-cpp": "model_path"}


def names() -> list[str]:
    """The teacher names :func:`create` accepts."""
    return sorted(TEACHERS)


def create(name: str, **options) -> base.Teacher:
    """The teacher ``name`` built with ``options`` (its factory's keyword arguments; ``model`` is
    renamed to the teacher's own model option, see :data:`MODEL_OPTION`).

    Built-in teachers are imported here; a teacher registered with ``base.register`` by code already
    imported in this process works too (in-process runners only: remote workers import just the
    built-in modules).

    Raises ``ValueError`` for an unknown name or an option the teacher does not take, and
    ``ImportError`` naming the pip extra when the teacher's dependencies are missing.
    """
    if name not in TEACHERS and name not in base._REGISTRY:  # noqa: SLF001  (same package)
        raise ValueError(f"unknown teacher {name!r}; built-in teachers: {names()}")
    if name in TEACHERS:
        module, extra = TEACHERS[name]
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ImportError(f"teacher {name!r} needs {e.name or 'a missing package'} ({e}); "
                              f"install it with: pip install 'tfrs-selreg[{extra}]'") from e
    if "model" in options and name in MODEL_OPTION:
        options = dict(options)
        options[MODEL_OPTION[name]] = options.pop("model")
    try:
        return base.create(name, **options)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise ValueError(f"teacher {name!r}: an option has the wrong type ({_shown(options)}): {e}") from e
        raise ValueError(f"teacher {name!r} does not take an option it was given "
                         f"({sorted(options)}): {e}") from e
    except ValueError as e:
        raise ValueError(f"teacher {name!r}: a bad option value ({_shown(options)}): {e}") from e


def _shown(options: dict) -> str:
    """The options as ``key=value`` (values shortened; keys only for anything named like a secret)."""
    return ", ".join(f"{k}={'...' if 'key' in k.lower() else repr(v)[:40]}" for k, v in sorted(options.items()))
