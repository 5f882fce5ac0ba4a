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
# Debian packages the tests drive: Chromium for the dashboard's browser test (no browser download
# works here); podman + runc for the container runtime (crun fails on cgroup v1 hosts), busybox-static
# for its test images, docker-registry for the registry test; clang + lld + wasi-libc (+ the wasm32
# compiler-rt) and rustc + its wasm32 std to rebuild the example buyer modules
DEB_PACKAGES := chromium podman runc busybox-static docker-registry clang lld wasi-libc \
                libclang-rt-14-dev-wasm32 rustc libstd-rust-dev-wasm32
DEB_STAMP  := $(VENV)/.cona-debian
SUDO       := $(if $(filter 0,$(shell id -u)),,sudo)

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

bootstrap: $(PY_STAMP) $(NODE_STAMP) $(DEB_STAMP)

$(PY_STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "CONA needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# reinstalls only when the package list above changes (the stamp holds it) or a package is missing
$(DEB_STAMP): Makefile $(PY_STAMP)
	@if [ "$$(cat $@ 2>/dev/null)" = "$(DEB_PACKAGES)" ] && [ "$$(dpkg-query -W -f '$${db:Status-Status}\n' \
	    $(DEB_PACKAGES) 2>/dev/null | grep -c '^installed$$')" = "$(words $(DEB_PACKAGES))" ]; then \
	  touch $@; exit 0; fi; \
	command -v apt-get >/dev/null || { echo "install the Debian packages $(DEB_PACKAGES) (or their equivalents)"; exit 1; }; \
	$(SUDO) apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEB_PACKAGES) >/dev/null && \
	echo "$(DEB_PACKAGES)" > $@

bench: bootstrap
	$(BIN)/cona bench chain --json

# Re-pin Python dependencies after changing pyproject.toml.
lock: $(PY_STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

clean:
	rm -rf $(VENV) $(SLITHER_VENV) node_modules .pytest_cache
