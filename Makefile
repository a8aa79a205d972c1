# cbm-airflow developer entry points. Quickstart on a fresh Debian/Ubuntu machine:
#   make demo   # installs what is missing, runs the demo AOI's DAG on the bundled real sample
#   make test   # installs what is missing, starts a throwaway PostGIS, runs pytest
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help sysdeps venv viewer test test-client test-stack test-hosts stack stack-stop screenshots demo demo-ui demo-stop bench lint audit sample clean

help:
	@echo "make demo | demo-ui | demo-stop | test | test-client | viewer | test-stack | test-hosts | stack [HOSTS=3] | stack-stop [HOSTS=3] | screenshots | bench | lint | sample | clean"

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

# A real Airflow 3 deployment (CeleryExecutor, two workers): on this host (scripts/stack.py),
# or with HOSTS=3 on a control host and two worker hosts, each a network and mount namespace
# on a virtual bridge (scripts/hosts.py; needs root).
HOSTS ?= 1
STACK_PY := $(if $(filter 3,$(HOSTS)),scripts/hosts.py,scripts/stack.py)
stack: venv viewer
	@$(if $(filter 3,$(HOSTS)),bash scripts/install-system-deps.sh --hosts,true)
	$(PY) $(STACK_PY) start

stack-stop: venv
	$(PY) $(STACK_PY) stop

# The stack tests include a page test with headless chromium (Debian package, installed here).
test-stack: venv viewer
	@bash scripts/install-system-deps.sh --chromium
	$(PY) -m pytest tests_stack $(PYTEST_ARGS)

# The multi-host deployment's faults and the analysts' load test (about 15-20 min; root).
test-hosts: venv
	@bash scripts/install-system-deps.sh --hosts
	$(PY) -m pytest tests_hosts $(PYTEST_ARGS)

screenshots: venv viewer
	@bash scripts/install-system-deps.sh --chromium
	$(PY) scripts/screenshots.py $(SCREENSHOTS_ARGS)

# bandit: settings and the justified skips in pyproject.toml ([tool.bandit]); what is deployed
# (cbm_ops, plugins, dags, deploy) and the scripts (-s B101). pip-audit: the venv against the
# PyPI advisory database (scripts/audit.py).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy cbm_ops dags plugins
	$(VENV)/bin/bandit -q -c pyproject.toml -r cbm_ops plugins dags deploy
	$(VENV)/bin/bandit -q -c pyproject.toml -s B101,B404,B603 -r scripts
	$(MAKE) --no-print-directory audit

audit: venv
	$(PY) scripts/audit.py

# Rebuild include/sample/ from ../shared/data (not needed for demo/test: the sample is committed).
sample: venv
	$(PY) scripts/build_sample.py

clean:
	rm -rf demo-output .pytest_cache $(VIEWER)/dist
