# llama.cpp for the gguf step: llama-cpp-python built from its sdist for the CPU, and llama.cpp's own
# HF -> GGUF converter unpacked from the same sdist into $LLAMA_CPP_DIR
# (default ~/.cache/finetune-operator/llama.cpp).
#
# The build takes about 10 minutes on 2 cores. pip keeps the built wheel in its cache, so a second
# run (another venv, CI) takes seconds. pip's wheel cache is keyed by the release, not by CMAKE_ARGS:
# to rebuild with other flags, add `--no-cache-dir`.
# Needs PY and PIP (the venv's python and pip) from the including Makefile.

LLAMA_CPP_PYTHON_VERSION ?= 0.3.36
LLAMA_CPP_SDIST_SHA256 ?= 832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
LLAMA_CPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_BLAS=OFF

.PHONY: llamacpp
llamacpp:
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" $(PIP) install --no-binary llama-cpp-python "llama-cpp-python==$(LLAMA_CPP_PYTHON_VERSION)"
	$(PY) -m jobs.gguf.install --version $(LLAMA_CPP_PYTHON_VERSION) --sha256 $(LLAMA_CPP_SDIST_SHA256)
