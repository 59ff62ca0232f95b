# Every target creates .venv at the repo root when it is missing (or when pyproject.toml
# changed since the last install), so a fresh clone needs nothing but Python 3.10+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-all lint format demo clean-demo

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

## The CPU test suite (what CI runs). GPU tests are skipped where there is no GPU.
test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

## Build the built-in corpus and tokenizer, train the three demo phases on the CPU,
## export to Hugging Face and print fill-mask predictions.
demo: venv
	bash scripts/demo.sh

clean-demo:
	rm -rf demo_out
