# Every target sets the environment up on first use: `make sweep` and `make test` work on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Use the machine's Python of the version uv.lock is for (its requires-python, "==3.11.*"); never download one.
LOCK_PYTHON := $(shell sed -n 's/^requires-python = "==\([0-9]*\.[0-9]*\)\.\*"$$/\1/p' uv.lock)
PYTHON ?= python$(LOCK_PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON = $(PYTHON)
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
VENV := .venv
RUN := $(VENV)/bin/python
# Where `make ui`, `make serve` and `make dashboard` listen (loopback only), which model `make serve` serves, and
# (STORAGE=...) another study storage for the dashboard. Their stores follow the project's one rule
# (src/mnist_study/paths.py): MLFLOW_TRACKING_URI / OPTUNA_STORAGE when set, mlflow.db / optuna.db otherwise.
UI_PORT ?= 5000
DASHBOARD_PORT ?= 8080
SERVE_PORT ?= 5001
MODEL ?=
STORAGE ?=
LAUNCH := $(RUN) -m mnist_study.launch

.PHONY: help install baseline seed-replica sweep test test-fast lint format services services-stop postgresql bench ui dashboard serve screenshots slurm-cluster slurm-cluster-stop slurm-workers

help:
	@echo "make sweep     set up (first time) and run the default Optuna study"
	@echo "make test      set up (first time) and run the whole test suite"
	@echo "make test-fast the fast tier while you work (no subprocess, no training beyond a few hundred images)"
	@echo "make baseline  one run of the tutorial's network, logged to MLflow"
	@echo "make lint      ruff"
	@echo "make bench     speed and pruning benchmarks (minutes; not part of make test)"
	@echo "make services  a throwaway PostgreSQL + mlflow server on 127.0.0.1 for many workers (services-stop ends them)"
	@echo "make slurm-workers N=3  the study's workers as a SLURM job array (make slurm-cluster: a one-node cluster here)"
	@echo "make ui        the MLflow UI over the study's store (MLFLOW_TRACKING_URI, else mlflow.db), on http://127.0.0.1:$(UI_PORT)"
	@echo "make dashboard optuna-dashboard over the study (OPTUNA_STORAGE, else optuna.db), on http://127.0.0.1:$(DASHBOARD_PORT)"
	@echo "make serve     the report's champion model (MODEL=...) answering POST /invocations on http://127.0.0.1:$(SERVE_PORT)"

# The stamp is remade whenever the lock (or this file) changes, so `git pull` followed by any target resyncs the
# environment. A machine without that Python gets one line, not uv's resolution error.
# --compile-bytecode writes every package's .pyc once, here: where PYTHONDONTWRITEBYTECODE is set (as on CI
# machines and in many containers) Python never writes them itself, and every process that imports TensorFlow,
# MLflow and Optuna compiled them from source again, most of its imports (benchmarks/startup.py measures it).
$(VENV)/.installed: pyproject.toml uv.lock Makefile
	@$(PYTHON) -c 'import sys; sys.exit("%d.%d" % sys.version_info[:2] != "$(LOCK_PYTHON)")' 2>/dev/null || { \
	  echo "make: uv.lock is for Python $(LOCK_PYTHON), and $(PYTHON) is $$(found=$$($(PYTHON) --version 2>/dev/null); echo "$${found:-not installed}"); fix: install Python $(LOCK_PYTHON) (apt-get install python$(LOCK_PYTHON)) or run make PYTHON=/path/to/python$(LOCK_PYTHON)" >&2; \
	  exit 2; }
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --compile-bytecode
	@touch $@

install: $(VENV)/.installed

baseline: install
	$(RUN) src/run.py baseline

seed-replica: install
	$(RUN) src/run.py seed_replica

sweep: install
	@test -f experiments/sweep.yaml || { echo "make sweep: experiments/sweep.yaml is not there yet (the sweep issue builds it)"; exit 2; }
	$(RUN) src/run.py -m sweep

# pytest runs one worker per core (pytest-xdist; pyproject's addopts, `-n auto`), each taking whole test files, so a
# file's module fixtures are built once. Much of a slow test's time is a subprocess starting up (TensorFlow, Hydra,
# MLflow) on one core; two at a time keep both cores busy. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= auto
test: install
	$(RUN) -m pytest -n $(TEST_WORKERS) --durations=15

# The tests not marked slow: no subprocess (tests/fast_tier.py fails one that starts any), no training beyond a few
# hundred images; one worker per core, as make test.
test-fast: install
	$(RUN) -m pytest -m "not slow" -n $(TEST_WORKERS) --durations=5

# Benchmarks, not tests: they print measured tables (see benchmarks/README.md) and take several minutes.
bench: install
	$(RUN) benchmarks/trial_speed.py
	$(RUN) benchmarks/pruning.py --seeds 0 1

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Debian's PostgreSQL, installed when missing (as root; otherwise say what to run).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "PostgreSQL is missing: sudo apt-get install postgresql"; exit 2; fi; }

services: install postgresql
	scripts/services.sh start

services-stop:
	scripts/services.sh stop

# A throwaway one-node SLURM cluster on this machine (Debian's slurm-wlm and munge, installed when missing; root),
# and the study's workers as a SLURM job array on it or on any cluster: N tasks, each one worker of the same study,
# with OPTUNA_STORAGE and MLFLOW_TRACKING_URI from the environment (docs/scaling.md, On a SLURM cluster).
N ?= 3
EXPERIMENT ?= sweep
ARGS ?=
slurm-cluster:
	@command -v slurmctld >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; }
	scripts/slurm/cluster.sh start

slurm-cluster-stop:
	scripts/slurm/cluster.sh stop

slurm-workers: install
	@test -n "$$OPTUNA_STORAGE" && test -n "$$MLFLOW_TRACKING_URI" || { echo "make slurm-workers: OPTUNA_STORAGE and MLFLOW_TRACKING_URI are not set; fix: eval \"\$$(scripts/services.sh env)\""; exit 2; }
	@mkdir -p outputs/slurm
	sbatch --array=1-$(N) scripts/slurm/sweep-workers.sbatch $(EXPERIMENT) $(ARGS)

# The MLflow UI over the project's store, without MLflow 3's job-execution consumers (GenAI scorers, unused here).
# It first prints the study's experiment as a link that opens on its runs table: MLflow 3 opens an experiment on
# its GenAI overview in a fresh browser (src/mnist_study/ui_link.py). With MLFLOW_TRACKING_URI naming an MLflow
# server, that server already serves the UI: it prints the server's link and starts nothing.
ui: install
	@$(LAUNCH) ui --port $(UI_PORT)

# optuna-dashboard over the study's storage; STORAGE=... points it at another. The dashboard takes the URL as an
# argument, so other users of the machine can read it with ps: prefer a URL without a password there, with the
# password in ~/.pgpass.
dashboard: install
	@$(LAUNCH) dashboard --port $(DASHBOARD_PORT) $(if $(STORAGE),--storage "$(STORAGE)")

# The registered champion (set by `python src/report.py`) as a REST service, in this environment (no virtualenv is
# built, nothing is downloaded). Ask it with
# curl -s 127.0.0.1:$(SERVE_PORT)/invocations -H 'Content-Type: application/json' -d @request.json (README).
serve: install
	@$(LAUNCH) serve --port $(SERVE_PORT) $(if $(MODEL),--model "$(MODEL)")

# The README's screenshots (docs/*.png), taken from the default store and study by the browser test's helpers.
screenshots: install
	$(RUN) scripts/screenshots.py
