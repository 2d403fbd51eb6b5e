# memkd: `make test` and `make book` each create .venv on first use.
# CPU torch is pinned through requirements-cpu.txt (never in pyproject.toml).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?= quick
STAMP  := $(VENV)/.memkd-installed

.PHONY: venv test book clean-book benchmark

$(STAMP): pyproject.toml requirements-cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-cpu.txt -e '.[book,dev,dist]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

book: $(STAMP)
	$(VENV)/bin/memkd book --profile $(PROFILE)

benchmark: $(STAMP)
	$(PY) benchmarks/ensemble_speed.py

clean-book:
	rm -rf _build
