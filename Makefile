# ehub — the README's commands. Every target installs what it needs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml 2>/dev/null | cksum | cut -d' ' -f1)
UV_VERSION := 0.13.9

.PHONY: install demo test lint fmt up bench clean system-deps

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

## The whole journey once through Airflow on the embedded stack -> out/demo/summary.json
demo: install
	$(BIN)/ehub demo

## The whole test suite (CI runs exactly this)
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## The stack kept running: broker, simulators, Airflow standalone on loopback
up: install
	$(BIN)/ehub up

## Benchmarks -> out/bench/bench.json
bench: install
	$(BIN)/ehub bench

## Debian packages some tests use (pdfsig...); needs root. .ci/run calls it.
system-deps:
	bash scripts/system-deps.sh

## Refresh the lock file after changing pyproject.toml dependencies
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra deploy --python-version 3.11 \
		-c requirements.lock -o requirements-deploy.lock

clean:
	rm -rf out var .pytest_cache .mypy_cache .ruff_cache
