# Two entry points (see README): `make quickstart` and `make test`.
# Everything lives in .venv; the shared Rust dependency build is compiled once
# (`ipy-rustasync warm`) and reused by every cell afterwards.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The test suite's own cache (modules, crates, the shared cargo target directory),
# kept apart from the user's so tests never touch it, and warm across test runs.
TEST_CACHE := $(CURDIR)/.test-cache

.PHONY: setup quickstart test test-fast lint pytest test-versions test-newer clean

setup: $(STAMP)

# The install also builds the JupyterLab extension (labextension/, npm): rebuilt when it changes.
LABEXT := $(wildcard labextension/src/*) labextension/package.json labextension/package-lock.json labextension/hatch_build.py

$(STAMP): pyproject.toml $(LABEXT)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebook,test]'
	$(BIN)/ipy-rustasync doctor
	touch $(STAMP)

quickstart: setup
	$(BIN)/ipy-rustasync warm
	$(BIN)/jupyter nbconvert --to markdown --execute --stdout notebooks/quickstart.ipynb

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	cargo fmt --manifest-path rust/Cargo.toml --all -- --check
	cargo fmt --manifest-path rust/macros-tests/Cargo.toml -- --check
	cargo fmt --manifest-path benchmarks/refs/Cargo.toml -- --check
	CARGO_TARGET_DIR=$(TEST_CACHE)/clippy-target PYO3_PYTHON=$(CURDIR)/$(BIN)/python \
		cargo clippy --manifest-path rust/Cargo.toml --workspace --all-targets -- -D warnings
	CARGO_TARGET_DIR=$(TEST_CACHE)/clippy-target PYO3_PYTHON=$(CURDIR)/$(BIN)/python \
		cargo test --manifest-path rust/Cargo.toml --workspace --lib --quiet
# The doc examples: compiled, not run (rust/bridge/src/lib.rs says why).
	CARGO_TARGET_DIR=$(TEST_CACHE)/clippy-target PYO3_PYTHON=$(CURDIR)/$(BIN)/python \
		cargo test --manifest-path rust/Cargo.toml --workspace --doc --quiet
# The macro's compile-fail messages as rustc prints them (trybuild; a workspace of its
# own, see rust/macros-tests/Cargo.toml).
	CARGO_TARGET_DIR=$(TEST_CACHE)/clippy-target PYO3_PYTHON=$(CURDIR)/$(BIN)/python \
		cargo test --manifest-path rust/macros-tests/Cargo.toml --quiet

# Then the bridge tests again with the loop wake-up other platforms than Unix use
# (a loopback TCP pair: platform.rs), forced here.
pytest: setup
	IPY_RUSTASYNC_TEST_CACHE=$(TEST_CACHE) $(BIN)/python -m pytest $(PYTEST_ARGS)
	IPY_RUSTASYNC_WAKEUP=tcp IPY_RUSTASYNC_TEST_CACHE=$(TEST_CACHE) $(BIN)/python -m pytest tests/test_bridge.py $(PYTEST_ARGS)

# The other interpreters (README, "Supported Pythons"): the bridge tier of the suite,
# each in a venv and a test cache of its own (.venv-3.X, .test-cache-3.X). Every
# CPython 3.12 and 3.13 found: pyenv's newest of each, else python3.X on PATH.
BRIDGE_TIER := tests/conformance tests/test_bridge.py tests/test_bridge_source.py tests/test_processes.py tests/test_load.py
OTHER_PYTHONS ?= $(shell for v in 3.12 3.13; do \
	p=$$(ls -d $$HOME/.pyenv/versions/$$v.*/bin/python$$v 2>/dev/null | sort -V | tail -1); \
	[ -n "$$p" ] || p=$$(command -v python$$v 2>/dev/null); [ -z "$$p" ] || echo $$p; done)

test-versions: setup
	@test -n "$(OTHER_PYTHONS)" || { echo "test-versions: no CPython 3.12 or 3.13 found" >&2; exit 1; }
	@for py in $(OTHER_PYTHONS); do \
		v=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
		echo "== Python $$v ($$py): the bridge tier"; \
		test -x .venv-$$v/bin/python || $$py -m venv .venv-$$v || exit 1; \
		.venv-$$v/bin/python -m pip install --quiet --upgrade pip && \
		.venv-$$v/bin/python -m pip install --quiet -e '.[test]' && \
		IPY_RUSTASYNC_TEST_CACHE=$(CURDIR)/.test-cache-$$v .venv-$$v/bin/python -m pytest $(BRIDGE_TIER) $(PYTEST_ARGS) \
		|| exit 1; \
	done

# Python 3.14 and 3.15 (Debian unstable's, in a chroot built by the tool the machine
# provides; needs root, about 3 minutes the first time): the bridge tier on each. Not
# part of `make test` (CI's clone does not have the tool).
NEWER_PYTHONS ?= $(CURDIR)/../shared/tools/newer-pythons
test-newer:
	$(NEWER_PYTHONS) setup
	$(NEWER_PYTHONS) run 'set -e; for v in 3.14 3.15; do \
		echo "== Python $$v (Debian unstable chroot): the bridge tier"; \
		test -x .venv-$$v-chroot/bin/python || python$$v -m venv .venv-$$v-chroot; \
		.venv-$$v-chroot/bin/python -m pip install --quiet --upgrade pip; \
		IPY_RUSTASYNC_SKIP_LABEXTENSION=1 .venv-$$v-chroot/bin/python -m pip install --quiet -e ".[test]"; \
		IPY_RUSTASYNC_TEST_CACHE=/src/.test-cache-$$v .venv-$$v-chroot/bin/python -m pytest $(BRIDGE_TIER) $(PYTEST_ARGS); \
	done'

test: lint pytest test-versions

# The unit tier (tests/conftest.py, TIERS): under a minute once the build cache is warm.
test-fast: setup
	IPY_RUSTASYNC_TEST_CACHE=$(TEST_CACHE) $(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

clean:
	rm -rf $(TEST_CACHE) .test-cache-3.* .venv-3.* rust/target labextension/node_modules labextension/dist labextension/lib tests/browser/node_modules
