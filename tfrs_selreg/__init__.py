"""tfrs-selreg: Selective LLM-Guided Regularization (S-LLMR) for TensorFlow Recommenders.

TensorFlow Recommenders only works with Keras 2 (``tf-keras``). ``TF_USE_LEGACY_KERAS`` must be
set before TensorFlow is first imported, so it is set here, once, for every entry point.
"""

import os as _os

if _os.environ.get("TF_USE_LEGACY_KERAS") not in (None, "1", "true", "True"):
    raise ImportError(
        "tfrs_selreg needs Keras 2 (tf-keras) because TensorFlow Recommenders refuses Keras 3, "
        f"but TF_USE_LEGACY_KERAS={_os.environ['TF_USE_LEGACY_KERAS']!r}. Unset it or set it to 1."
    )
_os.environ["TF_USE_LEGACY_KERAS"] = "1"
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
