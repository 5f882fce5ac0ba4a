# CONA: two commands on a fresh machine.
#   make run   - bootstrap (.venv + npm ci) and start the market (`cona up`)
#   make test  - bootstrap and run the whole test suite (what CI runs)
# Bootstrap is idempotent: it reinstalls only when pyproject.toml, requirements.lock,
# package.json or package-lock.json changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_STAMP   := $(VENV)/.cona-installed
NODE_STAMP := node_modules/.cona-installed
# Slither pins web3 below the project's, so it lives in its own environment (tools/slither/)
SLITHER_VENV  := .venv-slither
SLITHER_STAMP := $(SLITHER_VENV)/.cona-installed
# the dashboard's browser test drives Debian's Chromium (no browser download works here)
CHROMIUM   := /usr/bin/chromium

.PHONY: run test test-deep slither bootstrap bench lock clean

run: bootstrap
	$(BIN)/cona up $(ARGS)

test: bootstrap $(SLITHER_STAMP)
	$(BIN)/lint-imports
	$(BIN)/python tools/slither/gate.py
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The long profiles (by hand, not in CI): the market's random-sequence test at depth on anvil.
test-deep: bootstrap
	CONA_DEEP=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/chain/test_market_stateful.py $(PYTEST_ARGS)

# Static analysis alone: any High or Medium finding not triaged in place fails.
slither: bootstrap $(SLITHER_STAMP)
	$(BIN)/python tools/slither/gate.py

$(SLITHER_STAMP): tools/slither/requirements.txt
	test -x $(SLITHER_VENV)/bin/python || $(PYTHON) -m venv $(SLITHER_VENV)
	$(SLITHER_VENV)/bin/python -m pip install -q --upgrade pip
	$(SLITHER_VENV)/bin/python -m pip install -q -r tools/slither/requirements.txt
	touch $@

bootstrap: $(PY_STAMP) $(NODE_STAMP) $(CHROMIUM)

$(PY_STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "CONA needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "install Chromium (Debian package chromium) for the browser test"; exit 1; }
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq --no-install-recommends chromium >/dev/null

bench: bootstrap
	$(BIN)/cona bench chain --json

# Re-pin Python dependencies after changing pyproject.toml.
lock: $(PY_STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

clean:
	rm -rf $(VENV) $(SLITHER_VENV) node_modules .pytest_cache
