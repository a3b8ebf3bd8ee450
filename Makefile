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

.PHONY: setup quickstart test lint pytest clean

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
	cargo fmt --manifest-path benchmarks/refs/Cargo.toml -- --check
	CARGO_TARGET_DIR=$(TEST_CACHE)/clippy-target PYO3_PYTHON=$(CURDIR)/$(BIN)/python \
		cargo clippy --manifest-path rust/Cargo.toml --workspace --all-targets -- -D warnings

pytest: setup
	IPY_RUSTASYNC_TEST_CACHE=$(TEST_CACHE) $(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint pytest

clean:
	rm -rf $(TEST_CACHE) rust/target labextension/node_modules labextension/dist labextension/lib tests/browser/node_modules
