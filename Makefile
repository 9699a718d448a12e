# Two commands do everything on a fresh machine:
#   make book   — install the pinned environment, execute every chapter at the book scale, build the HTML book
#                 into _build/html (reusing committed results; `make book RECOMPUTE=<page>|all` recomputes them)
#   make test   — install the pinned environment, run unit tests, nbval, the strict book build and the browser
#                 check (at the smoke scale, with no data, into _build/smoke/: the published book is untouched)
#   make stale  — list result files made with library code that has changed since
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SCALE  ?= book
# notebooks whose results `make book` recomputes instead of reusing (names or `all`)
RECOMPUTE ?=

.PHONY: setup book test lock bench clean notebooks stale check-book

setup: $(VENV)/.stamp

$(VENV)/.stamp: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

book: setup
	$(PY) scripts/build_book.py --scale $(SCALE) $(if $(strip $(RECOMPUTE)),--recompute $(RECOMPUTE))

# the browser and page-style check of the published book (_build/html), screenshots in _build/screenshots/
check-book: setup
	$(PY) scripts/check_book.py --html-dir _build/html --screenshot _build/screenshot.png

stale: setup
	$(PY) -m metagrad.provenance

test: setup
	PY=$(PY) bash scripts/test.sh

# Re-execute notebooks/*.ipynb in place at their smoke defaults, so that the outputs nbval
# compares are current (run it after changing a notebook or the library, then commit them).
notebooks: setup
	$(PY) scripts/build_book.py --refresh-sources

bench: setup
	$(PY) -m metagrad.bench --quick

lock:
	$(PY) -m pip freeze --exclude-editable | sed 's/+cpu//' > requirements.txt

clean:
	rm -rf _build book/_build
