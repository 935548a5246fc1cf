# One venv for everything; every target creates or reuses it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9

.PHONY: venv bytecode demo dev test lint typecheck unit functional integration e2e bench bench-scaling bench-coldstart bench-startup lock clean

# Bytecode is compiled at install time, as the function's builder does when it deploys: these
# machines set PYTHONDONTWRITEBYTECODE=1, so without it every process compiles every module.
$(STAMP): pyproject.toml requirements/dev.lock requirements/checkov.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync -q --compile-bytecode --python $(BIN)/python requirements/dev.lock
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python --no-deps -e .
	# checkov pins packages older than ours: it gets a venv of its own.
	test -x $(VENV)/checkov/bin/python || $(PY) -m venv $(VENV)/checkov
	$(BIN)/uv pip sync -q --compile-bytecode --python $(VENV)/checkov/bin/python requirements/checkov.lock
	touch $(STAMP)

venv: $(STAMP)

# Our own source, which the venv imports in place: only what changed since the last run is
# compiled again (a stale .pyc is never used: Python checks the source's mtime and size).
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 functions/clipsearch cli dev bench tests

demo: bytecode
	$(BIN)/python -m clipsearch_dev.demo

dev: bytecode
	$(BIN)/python -m clipsearch_dev.dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck bytecode
	$(BIN)/pytest

unit functional integration e2e: bytecode
	$(BIN)/pytest tests/$@

bench: bytecode
	$(BIN)/python -m bench.run

# Cold start of this tree beside BASELINE's (a commit), with and without bytecode.
bench-coldstart: bytecode
	$(BIN)/python -m bench.coldstart $(if $(BASELINE),--baseline $(BASELINE)) $(if $(RUNS),--runs $(RUNS))

# Where a cold start's CPU goes, in one interpreter per run; BASELINES="REV REV" run beside.
bench-startup: bytecode
	$(BIN)/python -m bench.startup $(foreach rev,$(BASELINES),--baseline $(rev)) $(if $(RUNS),--runs $(RUNS))

# Clip cost against source length (docs/scaling.md); LENGTHS=600,10800 picks lengths in seconds.
bench-scaling: bytecode
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
