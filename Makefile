# `make run` and `make test` do all the set-up from a fresh clone: virtualenv, install, migrate.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
BENCH_INSTALLED := $(VENV)/.bench-installed
INI ?= development.ini

.PHONY: install browser keda-schema run test test-fast screenshots bench worker flower clean

$(INSTALLED): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[testing]'
	touch $(INSTALLED)

install: $(INSTALLED)

# The embedded default: SQLite, in-process broker and worker; demo data loaded once; the carrier
# stub (development.ini's warehouse.carrier_url) runs beside the app and stops with it.
run: install
	$(BIN)/initialize_warehouse_db $(INI)
	$(BIN)/warehouse-seed $(INI) --warehouse demo --name "Demo warehouse" --products 10000 --shipments 2000 --if-missing
	$(BIN)/warehouse-carrier-stub --port 8081 --latency-ms 200 --max-in-flight 100 & stub=$$!; \
	trap 'kill $$stub' EXIT INT TERM; \
	$(BIN)/pserve $(INI)

# The browser tests drive Debian's chromium (Playwright never downloads a browser of its own here).
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || ! command -v apt-get >/dev/null || \
	  (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium))

# The ScaledObject's check against KEDA's CRD schema runs on Node, with @kubernetes-models/keda
# (tests/keda_schema/); Debian's nodejs and npm are installed first if they are missing.
KEDA_SCHEMA := tests/keda_schema/node_modules/.package-lock.json
$(KEDA_SCHEMA): tests/keda_schema/package-lock.json
	command -v npm >/dev/null || ! command -v apt-get >/dev/null || \
	  (apt-get install -y -q nodejs npm || (apt-get update -q && apt-get install -y -q nodejs npm))
	cd tests/keda_schema && npm ci --silent --no-audit --no-fund
	touch $(KEDA_SCHEMA)

keda-schema: $(KEDA_SCHEMA)

# The whole suite: unit, functional, integration (real PostgreSQL, Redis and worker processes) and
# the pages in a real browser.
test: install browser keda-schema
	$(BIN)/python -m pytest

# The README's screenshots of the run page (docs/run-page-*.png), made by the browser tests.
screenshots: install browser
	WAREHOUSE_SCREENSHOTS=docs $(BIN)/python -m pytest tests/integration/browser -q

# Unit and functional tests only: no services needed.
test-fast: install keda-schema
	$(BIN)/python -m pytest tests/unit tests/functional

# A worker for production.ini (scale out by starting more, on any machine that reaches the broker).
worker: install
	WAREHOUSE_INI=production.ini $(BIN)/celery -A tasks worker --loglevel=INFO

# Flower (http://localhost:5555) over production.ini's broker (`make flower INI=other.ini`); its
# extra installed first. Its /api answers only with authentication or FLOWER_UNAUTHENTICATED_API, so
# this development instance listens on localhost only and turns the API on.
FLOWER_INSTALLED := $(VENV)/.flower-installed
$(FLOWER_INSTALLED): $(INSTALLED) setup.py
	$(BIN)/pip install --quiet -e '.[flower]'
	touch $(FLOWER_INSTALLED)

flower: INI = production.ini
flower: install $(FLOWER_INSTALLED)
	WAREHOUSE_INI=$(INI) FLOWER_UNAUTHENTICATED_API=true $(BIN)/celery -A tasks flower --address=127.0.0.1 --port=5555

# What the benchmarks need besides the tests' packages (matplotlib for the plot).
$(BENCH_INSTALLED): $(INSTALLED) setup.py
	$(BIN)/pip install --quiet -e '.[testing,bench]'
	touch $(BENCH_INSTALLED)

# Benchmarks on real PostgreSQL and Redis (throwaway database, a Redis DB of their own) and real workers;
# prints one table and rewrites the figures in docs/benchmarks.md. Exits non-zero if a correctness check
# fails. BENCH_ARGS=--no-docs leaves the docs alone; BENCH_ARGS="--only labels" runs one benchmark.
# The status benchmark's load generator, wrk (a Debian package), is installed first if it is missing and
# apt-get is at hand (otherwise bench/run.py says how to install it).
bench: install $(BENCH_INSTALLED)
	command -v wrk >/dev/null || ! command -v apt-get >/dev/null || apt-get install -y -q wrk
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var *.egg-info .pytest_cache
