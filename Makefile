# asyncgo developer commands. On a fresh machine with only Python 3.11+:
#   make demo   -- virtualenv, install, run the showcase on asyncio, uvloop and trio
#   make test   -- virtualenv, install, ruff + mypy --strict + pytest on all backends
#                  (and the suite again on Python 3.12 and 3.13 when they are installed)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench-smoke test312 test313 bench bench-report docs upgrade-deps clean

EXTRAS := dev,typing,bench,docs,fastapi,aiohttp,otel

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/showcase.py --backend all

lint: $(STAMP)
	$(PY) -m ruff check asyncgo tests $(wildcard benchmarks examples)
	$(PY) -m ruff format --check asyncgo

typecheck: $(STAMP)
	$(PY) -m mypy

pytest: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n 2

test: lint typecheck pytest bench-smoke test312 test313

test312:
	@bash .ci/pyversion.sh 3.12

test313:
	@bash .ci/pyversion.sh 3.13

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

bench-smoke: $(STAMP)
	$(PY) benchmarks/run.py --quick > .bench-smoke.log || (tail -40 .bench-smoke.log; exit 1)
	@echo "bench-smoke: every benchmarks/bench_*.py ran on asyncio, uvloop and trio (--quick)"

bench: $(STAMP)
	$(PY) benchmarks/run.py

bench-report: $(STAMP)
	$(PY) benchmarks/run.py --report-only

# Rewrite constraints.txt from the newest releases on the index (then run make test).
upgrade-deps:
	rm -rf .venv-upgrade
	$(PYTHON) -m venv .venv-upgrade
	.venv-upgrade/bin/python -m pip install --quiet --upgrade pip
	.venv-upgrade/bin/python -m pip install --quiet -e '.[$(EXTRAS)]'
	sed -n '/^#/p;/^$$/q' constraints.txt > .constraints.new
	echo >> .constraints.new
	.venv-upgrade/bin/python -m pip freeze --exclude-editable >> .constraints.new
	mv .constraints.new constraints.txt
	rm -rf .venv-upgrade
	@echo "constraints.txt updated: run make test (it moves .venv to the new pins)"

clean:
	rm -rf $(VENV) .venv312 .venv313 .pytest_cache .mypy_cache .ruff_cache
