# One venv for everything; every target creates or reuses it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9

.PHONY: venv demo dev test lint typecheck unit functional integration e2e bench bench-scaling lock clean

$(STAMP): pyproject.toml requirements/dev.lock requirements/checkov.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements/dev.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	# checkov pins packages older than ours: it gets a venv of its own.
	test -x $(VENV)/checkov/bin/python || $(PY) -m venv $(VENV)/checkov
	$(BIN)/uv pip sync -q --python $(VENV)/checkov/bin/python requirements/checkov.lock
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m clipsearch_dev.demo

dev: $(STAMP)
	$(BIN)/python -m clipsearch_dev.dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

unit functional integration e2e: $(STAMP)
	$(BIN)/pytest tests/$@

bench: $(STAMP)
	$(BIN)/python -m bench.run

# Clip cost against source length (docs/scaling.md); LENGTHS=600,10800 picks lengths in seconds.
bench-scaling: $(STAMP)
	$(BIN)/python -m bench.scaling $(if $(LENGTHS),--lengths $(LENGTHS))

# Clip mode on the API path at the vendor's limits (docs/benchmarks.md "Vendor download path").
.PHONY: bench-vendor
bench-vendor: $(STAMP)
	$(BIN)/python -m bench.vendor $(if $(BEFORE),--before $(BEFORE))

# Re-resolve the locked dependencies; the deploy root's requirements.txt is generated from them.
lock: $(STAMP)
	$(BIN)/uv pip compile -q --python-version 3.11 --extra dev pyproject.toml -o requirements/dev.lock
	# The deploy root: every file pinned by hash; the first line makes the function's builder
	# (pip) refuse anything unhashed (Cloud Build's deploy-deps step installs it the same way).
	$(BIN)/uv pip compile -q --python-version 3.11 --generate-hashes --custom-compile-command "make lock" -c requirements/dev.lock pyproject.toml -o functions/clipsearch/requirements.txt
	printf '%s\n' '--require-hashes' | cat - functions/clipsearch/requirements.txt > functions/clipsearch/requirements.txt.tmp
	mv functions/clipsearch/requirements.txt.tmp functions/clipsearch/requirements.txt
	$(BIN)/uv pip compile -q --python-version 3.11 requirements/checkov.in -o requirements/checkov.lock

clean:
	rm -rf $(VENV) .devstack .pytest_cache .mypy_cache .ruff_cache
