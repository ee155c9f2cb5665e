# The two commands of the README: `make run` (main job end to end) and `make test`.
# Each creates ./.venv on first use and installs the package with all extras into it.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
RUN_CONFIG ?= tfrs_selreg/configs/ml-latest-small.yaml
# llama-cpp-python compiles llama.cpp on install. This build targets AVX2, not the building CPU, and
# uses ggml's own thread pool instead of OpenMP: in the test process torch's bundled libgomp.so.1 is
# loaded first and the OpenMP build of ggml binds to it. The test process crashed with a segmentation
# fault inside the in-process llama tests, once with each of the native and the AVX2 OpenMP builds.
# pip's wheel cache ignores CMAKE_ARGS, hence --no-cache-dir.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_OPENMP=OFF

.PHONY: install run test lint clean

$(BIN)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet --no-cache-dir -e '.[all]'
	touch $@

install: $(BIN)/.installed

run: $(BIN)/.installed
	$(BIN)/tfrs-selreg run --config $(RUN_CONFIG)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: $(BIN)/.installed
	$(BIN)/ruff check tfrs_selreg beam_pipelines tests benchmarks examples

clean:
	rm -rf $(VENV) runs build *.egg-info
