# The two commands of the README:
#   make run   installs vidfarm in .venv and starts it on its embedded defaults
#   make test  installs everything and runs the whole test suite (lint, types, tests)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-dev lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@# hls.js for the dashboard's player (pinned, checked); without it the player uses MP4
	$(BIN)/python -m vidfarm.api.web.assets || echo "vidfarm: hls.js not fetched: the dashboard will play MP4 only"

install-dev: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m vidfarm.api.web.assets

run: install
	$(BIN)/vidfarm serve

lint: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Two test processes, one file each at a time: most tests wait on subprocesses and services.
test: lint
	$(BIN)/pytest -n 2 --dist loadfile

bench: install-dev
	$(BIN)/python bench/encode_vs_pod.py

clean:
	rm -rf $(VENV) vidfarm-data .pytest_cache .mypy_cache .ruff_cache
