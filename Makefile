# Two commands do everything (see README.md):
#   make run    install into .venv, make a DEMO key, initialise data/, serve the source interface
#   make test   install with the test extras, then run the whole suite with lint and types
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: run test install install-test lint check-system bench clean

check-system:
	@command -v gpg >/dev/null || { echo "gpg is missing: sudo apt-get install gnupg"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is needed"; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "Python's venv is missing: sudo apt-get install python3-venv"; exit 1; }

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: check-system $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .

install-test: check-system $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,dev]'

run: install
	$(BIN)/tipbox demo --host $(HOST) --port $(PORT)

lint: install-test
	$(BIN)/ruff check tipbox tests bench wsgi.py
	$(BIN)/mypy

test: install-test lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-test
	$(BIN)/python bench/upload.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
