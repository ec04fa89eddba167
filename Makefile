# Every target bootstraps .venv itself: a fresh clone needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The stamp records a finished install of this pyproject.toml; an unchanged one is not redone.
STAMP  := $(VENV)/.lvmae-installed

.PHONY: install lint format test test-all demo bench clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# ruff (lint and format check) over the tree, mypy over the typed floors (foundation, store, pretrain),
# seen through links laid out as the installed `lvmae` namespace (pyproject.toml's package-dir).
TYPECHECK := $(VENV)/typecheck/lvmae
FLOORS    := foundation store extract pretrain retrieval toyworld

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)
	@for f in lvmae/*; do ln -s "$(CURDIR)/$$f" $(TYPECHECK)/; done
	@for d in $(FLOORS); do ln -s "$(CURDIR)/$$d" $(TYPECHECK)/$$d; done
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: $(STAMP)
	$(PY) -m pytest -q -m "not gpu"

test-all: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/lvmae demo

bench: $(STAMP)
	@set -e; for f in bench/[a-z]*.py; do \
		m=$$(basename $$f .py); echo "== bench.$$m --quick"; \
		$(PY) -m bench.$$m --quick; \
	done

clean-venv:
	rm -rf $(VENV)
