# memkd: `make test` and `make book` each create .venv on first use.
# CPU torch is pinned through requirements-cpu.txt (never in pyproject.toml).
# On Linux, `make book TORCH_INDEX=https://download.pytorch.org/whl/cpu` takes torch from the
# PyTorch CPU wheel index (about 200 MB) instead of PyPI's build with CUDA (several GB).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?= quick
STAMP  := $(VENV)/.memkd-installed
TORCH_INDEX ?=

.PHONY: venv test book clean-book benchmark check-python

# Python 3.10 (pyproject.toml: requires-python) to 3.14 (the newest with torch 2.13.0 wheels).
# Checks the venv's Python when .venv exists, else $(PYTHON).
check-python:
	@py=$(PY); test -x "$$py" || py="$(PYTHON)"; \
	if ! "$$py" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 14))' 2>/dev/null; then \
	  echo "memkd needs Python 3.10 to 3.14; '$$py' is $$("$$py" --version 2>/dev/null || echo 'not found')." >&2; \
	  echo "Install one and pass it, e.g. 'make book PYTHON=python3.12' (remove $(VENV) if an unsupported Python made it)." >&2; \
	  exit 1; \
	fi

$(STAMP): pyproject.toml requirements-cpu.txt | check-python
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install -q -r requirements-cpu.txt --index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -r requirements-cpu.txt -e '.[book,dev,dist,lm]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check memkd tests benchmarks
	$(PY) -m pytest

book: $(STAMP)
	$(VENV)/bin/memkd book --profile $(PROFILE)

benchmark: $(STAMP)
	$(PY) benchmarks/ensemble_speed.py

clean-book:
	rm -rf _build
