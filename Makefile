# Every target bootstraps .venv itself: a fresh clone needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The stamp records a finished install of this pyproject.toml; an unchanged one is not redone.
STAMP  := $(VENV)/.lvmae-installed

.PHONY: install test test-all demo bench clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not gpu"

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
