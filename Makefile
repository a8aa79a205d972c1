# cbm-airflow developer entry points. Quickstart on a fresh Debian/Ubuntu machine:
#   make demo   # installs what is missing, runs the demo AOI's DAG on the bundled real sample
#   make test   # installs what is missing, starts a throwaway PostGIS, runs pytest
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help sysdeps venv viewer test test-client test-stack stack stack-stop screenshots demo demo-ui demo-stop bench lint sample clean

help:
	@echo "make demo | demo-ui | demo-stop | test | test-client | viewer | test-stack | stack | stack-stop | screenshots | bench | lint | sample | clean"

sysdeps:
	@bash scripts/install-system-deps.sh

# The GDAL bindings are built against the system GDAL after numpy (see requirements.txt).
$(STAMP): requirements.txt pyproject.toml | sysdeps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-cache-dir --no-build-isolation "gdal==$$(gdal-config --version)"
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -c "from osgeo import gdal_array; import rasterio, numba, airflow, cbm_ops"
	touch $(STAMP)

venv: sysdeps $(STAMP)

# The parcel viewer's page (web/viewer: MapLibre GL JS and Chart.js from npm, bundled with
# esbuild into web/viewer/dist, which the API serves at /viewer/). Built, not committed.
VIEWER := web/viewer
$(VIEWER)/node_modules/.package-lock.json: $(VIEWER)/package.json $(VIEWER)/package-lock.json | sysdeps
	cd $(VIEWER) && npm ci --no-audit --no-fund
$(VIEWER)/dist/index.html: $(VIEWER)/node_modules/.package-lock.json $(VIEWER)/build.mjs $(wildcard $(VIEWER)/src/*)
	cd $(VIEWER) && npm run build

viewer: $(VIEWER)/dist/index.html

# The tests include the viewer's page test in headless chromium (Debian package, installed here).
test: venv viewer
	@bash scripts/install-system-deps.sh --chromium
	$(PY) -m pytest $(PYTEST_ARGS)

# The JRC's cbm client (0.0.18, unchanged, in its own venv .venv-client) against the standalone
# API on the demo data: tests_client/ (plots in client-test-output/figures).
test-client: venv
	$(PY) -m pytest tests_client $(PYTEST_ARGS)

demo: venv viewer
	$(PY) scripts/demo.py run

demo-ui: venv
	$(PY) scripts/demo.py ui

demo-stop: venv
	$(PY) scripts/demo.py stop

bench: venv
	$(PY) scripts/bench.py $(BENCH_ARGS)

# A real Airflow 3 deployment on this host (CeleryExecutor, two workers): scripts/stack.py.
stack: venv viewer
	$(PY) scripts/stack.py start

stack-stop: venv
	$(PY) scripts/stack.py stop

# The stack tests include a page test with headless chromium (Debian package, installed here).
test-stack: venv viewer
	@bash scripts/install-system-deps.sh --chromium
	$(PY) -m pytest tests_stack $(PYTEST_ARGS)

screenshots: venv viewer
	@bash scripts/install-system-deps.sh --chromium
	$(PY) scripts/screenshots.py $(SCREENSHOTS_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy cbm_ops dags plugins

# Rebuild include/sample/ from ../shared/data (not needed for demo/test: the sample is committed).
sample: venv
	$(PY) scripts/build_sample.py

clean:
	rm -rf demo-output .pytest_cache $(VIEWER)/dist
