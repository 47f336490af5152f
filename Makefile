# Two commands for an analyst: `make run` and `make test`. Both create the environment
# when it is absent (Python 3.11+ is the only thing the machine needs), install the pinned
# dependencies from requirements.lock, and then do their job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MONTH ?=
PATIENTS ?= 20000
SEED ?= 20260
EXTRACTS := data/extracts
# Run history persists here, so `make run` and `make dev` share one history in the UI.
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: run test env synth dev bench clean chromium redis national national-bench

env: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "core20plus5 needs Python 3.11 or newer; found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	@# --compile-bytecode: write the dependencies' .pyc files once, at install. Where
	@# PYTHONDONTWRITEBYTECODE is set (CI images, this project's sandboxes) Python never writes
	@# them itself, and every process compiled dagster, GX and polars from source again:
	@# `import dagster, great_expectations, polars, duckdb` took 10.7 s before, 6.1 s after.
	@$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	@$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)
	@echo "environment ready in $(VENV)"

# The demo extract: synthetic patients at real Nottingham and Nottinghamshire postcodes,
# written only when absent so repeated runs reuse it.
$(EXTRACTS)/.demo: | $(STAMP)
	@$(BIN)/core20 synth --out $(EXTRACTS) --patients $(PATIENTS) --seed $(SEED)
	@touch $@

synth: $(EXTRACTS)/.demo

# The instance settings (one run at a time; persistent history) live in the repository and
# are copied into DAGSTER_HOME whenever the repository's copy is newer. They sit in instance/,
# not the root: Dagster warns about a dagster.yaml in the folder it starts from that is not
# DAGSTER_HOME's.
$(DAGSTER_HOME)/dagster.yaml: instance/dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	@cp instance/dagster.yaml $@

# No path flags: the run takes its warehouse and extracts from core20.toml when there is one
# (else the defaults, data/warehouse and the demo in data/extracts), like every other command.
run: $(STAMP) $(EXTRACTS)/.demo $(DAGSTER_HOME)/dagster.yaml
	@# The project's own modules compiled once, as the dependencies are at install: where
	@# PYTHONDONTWRITEBYTECODE is set every run compiled them again (about 0.3 s of CPU, much of
	@# it inside the month's run, whose steps import them as they start). Up to date, 0.04 s.
	@$(BIN)/python -m compileall -q pipelines assets >/dev/null
	@$(BIN)/core20 run $(if $(MONTH),--month $(MONTH),)

# The report test renders the HTML report in headless Chromium. On Debian/Ubuntu the
# package is installed here when absent (apt-get; needs root or sudo); elsewhere install
# Chromium or Chrome yourself and point CORE20_CHROMIUM at it.
chromium:
	@if [ -n "$$CORE20_CHROMIUM" ] || command -v chromium >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the report test (apt-get, once)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; \
	else echo "no chromium and no apt-get: install Chromium or Chrome and set CORE20_CHROMIUM to its path" >&2; exit 1; fi

# The national mode's distributed test starts a Redis broker and two Celery workers: on
# Debian/Ubuntu Redis is installed here when absent (apt-get; needs root or sudo); elsewhere
# install redis-server yourself and put it on PATH.
redis:
	@if command -v redis-server >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's redis-server for the national (Celery) test (apt-get, once)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null; \
	else echo "no redis-server and no apt-get: install Redis and put redis-server on PATH" >&2; exit 1; fi

# The suite runs on every core (pytest-xdist), a test file per worker so each file's
# module fixtures (a published month, the Celery cluster) are built once; TEST_WORKERS=0
# runs it in this process.
TEST_WORKERS ?= auto
test: $(STAMP) chromium redis
	@DAGSTER_HOME= $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# `dagster dev` prints one notice that `dg dev` (the dagster-dg-cli package) supersedes it.
# `dagster dev` is still supported in Dagster 1.13 and loads workspace.yaml; dg would add two
# dozen packages (dagster-cloud-cli, gitpython, ...) to every analyst's environment for the
# same server, so that one notice, matched by its text, is silenced here.
dev: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	@PYTHONWARNINGS="ignore:Function \`dev_command\` is superseded" $(BIN)/dagster dev $(DEV_ARGS)

# The benchmark: 1M and 5M patients by default (BENCH_SIZES=100000 for a quick run;
# BENCH_ARGS=--update-readme rewrites the README's performance block, --keep keeps the
# extracts). It takes the machine's heavy-job lock itself, so do not wrap it in flock.
BENCH_SIZES ?= 1000000,5000000
BENCH_ARGS ?=
BENCH_LOCK ?= /tmp/core20-heavy.lock

bench: $(STAMP)
	@command -v flock >/dev/null || { echo "make bench needs flock (util-linux) to take $(BENCH_LOCK)" >&2; exit 1; }
	@echo "waiting for $(BENCH_LOCK): one heavy job at a time on this machine"
	@flock $(BENCH_LOCK) $(BIN)/python scripts/benchmark.py --sizes $(BENCH_SIZES) $(BENCH_ARGS)

# The national month on this machine: a synthetic extract for every ICB (SCALE of each
# ICB's population; ICBS=QT1,QOX for a subset), then the national job on a local Redis
# broker with WORKERS Celery workers. Production runs the same job on long-lived workers (deploy/).
SCALE ?= 0.001
ICBS ?= all
WORKERS ?= 2
NATIONAL := data/national

national: $(STAMP) redis
	@test -d $(NATIONAL)/extracts || $(BIN)/core20 synth --out $(NATIONAL)/extracts --icbs $(ICBS) --scale $(SCALE) --seed $(SEED) $(if $(MONTH),--month $(MONTH),)
	@$(BIN)/core20 national --root $(NATIONAL) --workers $(WORKERS) $(if $(MONTH),--month $(MONTH),)

# The national benchmark: one worker, then two, on the same synthetic national extract.
national-bench: $(STAMP) redis
	@flock $(BENCH_LOCK) $(BIN)/python scripts/national_bench.py --scale $(SCALE) --icbs $(ICBS) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data .dagster_home
