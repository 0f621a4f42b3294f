# Two commands do everything (see README.md):
#   make run    install into .venv, make a DEMO key, initialise data/, serve both interfaces
#   make test   install with the test extras, then run the whole suite with lint and types
# Both also install OpenPGP.js for in-browser encryption (npm ci, pinned in package-lock.json)
# when npm is there; without npm the site runs as it does with JavaScript off.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: run test install install-test install-js lint check-system bench bench-browser \
        screenshots clean translations compile-translations guide-status

check-system:
	@command -v gpg >/dev/null || { echo "gpg is missing: sudo apt-get install gnupg"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is needed"; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "Python's venv is missing: sudo apt-get install python3-venv"; exit 1; }

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: check-system $(BIN)/python install-js
	$(BIN)/pip install --quiet -c constraints.txt -e .
	$(MAKE) compile-translations

install-test: check-system $(BIN)/python install-js
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,dev]'
	$(MAKE) compile-translations

# The catalogs (docs/translating.md). The .po files are the source, kept in git; the
# compiled .mo files are built here, at install time, and ignored by git: a binary in
# a commit cannot be reviewed, and one that lags its .po would show stale words. Without
# them the site still runs, in English.
CATALOGS = tipbox/translations

compile-translations:
	$(BIN)/pybabel compile --statistics -d $(CATALOGS)

# After changing any text: extract the template, merge it into every catalog (new
# texts arrive empty, never guessed), and compile. Then translate what is empty.
translations: $(BIN)/python
	$(BIN)/pybabel extract -F babel.cfg -k N_ -k _l --sort-by-file --no-wrap \
	  --msgid-bugs-address=newsroom -o $(CATALOGS)/messages.pot .
	$(BIN)/pybabel update --no-fuzzy-matching --no-wrap -i $(CATALOGS)/messages.pot -d $(CATALOGS)
	$(MAKE) compile-translations

# Which translations of the source guide (docs/source-guide/) were made from an older
# English guide, and the git diff that shows what changed since (docs/translating.md).
guide-status: $(BIN)/python
	$(BIN)/python -m tipbox.web.source.guide_status

# OpenPGP.js from npm, exactly as package-lock.json pins it, copied next to our own static
# files (static/vendor/ is git-ignored) so the app serves it from its own origin.
install-js:
	@if command -v npm >/dev/null; then \
	  npm ci --no-audit --no-fund --ignore-scripts --loglevel=error && \
	  mkdir -p static/vendor && \
	  cp node_modules/openpgp/dist/openpgp.min.js static/vendor/openpgp.min.js; \
	else \
	  echo "npm is missing, so in-browser encryption is OFF: the site runs as with JavaScript"; \
	  echo "disabled (the server encrypts on arrival). To turn it on: sudo apt-get install npm,"; \
	  echo "then make install."; \
	  rm -f static/vendor/openpgp.min.js; \
	fi

run: install
	$(BIN)/tipbox demo --host $(HOST) --port $(PORT)

lint: install-test
	$(BIN)/ruff check tipbox tests bench wsgi.py
	$(BIN)/mypy

test: install-test lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-test
	$(BIN)/python bench/upload.py

# In-browser encryption in headless Chromium and Firefox ESR (100 MiB and 1 GiB) beside the
# server path, driven with nothing watching their network (bench/bare_browsers.py).
bench-browser: install-test
	$(BIN)/python bench/browser_encrypt.py

# Redo docs/screenshots/ from the browser tests (a real Chromium, JavaScript on and off;
# the source's journey in Chinese, Uyghur and Arabic at desktop and phone widths, which
# needs fonts-noto-cjk and fonts-noto-core). pngquant makes each picture a fraction of
# its size; without it they are kept as Chromium wrote them.
screenshots: install-test
	@command -v pngquant >/dev/null || echo "pngquant is missing, so the screenshots are kept unoptimised: sudo apt-get install pngquant"
	TIPBOX_UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/browser

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache node_modules static/vendor
