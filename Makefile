# Every target installs what it needs into .venv first (a fresh machine needs nothing but python3).
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install demo serve test test-slow lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/tableflow demo

serve: install
	$(BIN)/tableflow serve

test: install
	$(BIN)/pytest -q

test-slow: install
	$(BIN)/pytest -q -m slow

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python -m tests.bench.bench_ingest
	@for name in bench_catalog bench_decode; do \
		if [ -f tests/bench/$$name.py ]; then $(BIN)/python -m tests.bench.$$name || exit $$?; \
		else echo "tests/bench/$$name.py does not exist yet; skipping it"; fi; \
	done

clean:
	rm -rf $(VENV) tableflow-data .pytest_cache .mypy_cache .ruff_cache
