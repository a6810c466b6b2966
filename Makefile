# Every target creates/updates .venv first; nothing here needs network beyond the package index.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SAMPLE := data/sample/daily_papers_page.txt
SAMPLE_DATE := 2025-05-16

.PHONY: venv demo test lint format typecheck bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# The demo keeps its index in ./paperbot-data (`make clean` removes it), whatever the user's
# PAPERBOT_DATA_DIR or PAPERBOT_HOME say.
demo: export PAPERBOT_DATA_DIR := $(CURDIR)/paperbot-data
demo: venv
	$(BIN)/paperbot ingest $(SAMPLE) --date $(SAMPLE_DATE)
	$(BIN)/paperbot stats
	$(BIN)/paperbot digest --date $(SAMPLE_DATE)
	$(BIN)/paperbot ask "Which paper introduces the Candidate Pool Strategy for pruning and densifying Gaussians?"
	$(BIN)/paperbot ask "Which papers study parameter-efficient fine-tuning with LoRA?"
	$(BIN)/paperbot ask "Who won the 2022 football World Cup?"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf paperbot-data benchmarks/.work
