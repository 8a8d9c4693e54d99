# Two commands matter: `make demo` (the whole flow on a local AWS) and `make test`.
# Both create .venv on first use and reuse it while pyproject.toml is unchanged.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The real AWS CLI (v1) pins botocore exactly, so it lives in a venv of its own.
AWSCLI_VENV := .tools/awscli
AWSCLI_VERSION := 1.45.11
CODE := worker tests bench examples
# The tests mostly wait on sockets and child processes, so they share 2 cores well; the
# LocalStack tests stay on one worker (xdist_group), one LocalStack at a time.
TEST_WORKERS ?= 3

.PHONY: help venv demo test lint typecheck unit awscli clean

help:
	@echo "make demo   run the whole flow on moto server + the ResolveCustomer emulator"
	@echo "make test   lint, type-check and run the whole test suite"
	@echo "make lint | typecheck | clean"
	@echo "make localstack        install LocalStack $(LOCALSTACK_VERSION) into .localstack (no Docker)"
	@echo "make localstack-up     run it on 127.0.0.1:4566 (where --localstack looks) until Ctrl-C"
	@echo "make test-localstack   the worker's integration tests on LocalStack"
	@echo "make chaos | chaos-short   kill workers while they drain a queue, account for every token"
	@echo "make outage  credentials fault (10 min), SQS, SNS, DynamoDB cut (60 s each): about 25 min"
	@echo "make bench   the worker beside a bare aiobotocore pipeline and the naive loop (bench/README.md)"
	@echo "make soak    100,000 messages through one worker: RSS and rate from start to end"

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(INSTALLED)

$(AWSCLI_VENV)/bin/aws:
	$(PYTHON) -m venv $(AWSCLI_VENV)
	$(AWSCLI_VENV)/bin/pip install --quiet 'awscli==$(AWSCLI_VERSION)'

awscli: $(AWSCLI_VENV)/bin/aws

demo: venv
	$(BIN)/regworker demo

lint: venv
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)
	$(BIN)/hadolint Dockerfile

typecheck: venv
	$(BIN)/mypy

test: venv awscli localstack lint typecheck
	PATH="$(CURDIR)/$(AWSCLI_VENV)/bin:$$PATH" $(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache .hypothesis

# LocalStack 4.14.0 (the last free community release) on the host, without Docker.
# It needs Python 3.12+ and its dependencies as of its release date, so it gets a uv
# venv of its own; `make localstack` is a no-op once the stamp file is there.
LOCALSTACK_VERSION := 4.14.0
LOCALSTACK_EXCLUDE_NEWER := 2026-02-28
LOCALSTACK_VENV := .localstack
LOCALSTACK_STAMP := $(LOCALSTACK_VENV)/.installed-$(LOCALSTACK_VERSION)
LOCALSTACK_PYTHON ?= $(shell for p in /root/.pyenv/versions/3.13.0/bin/python python3.13 python3.12; do \
	command -v $$p >/dev/null 2>&1 && { command -v $$p; break; }; done)
UV_VENV := .tools/uv
UV := $(UV_VENV)/bin/uv
CHAOS_TOKENS ?= 3000
CHAOS_WORKERS ?= 4
CHAOS_FLAGS ?=

.PHONY: localstack localstack-up test-localstack chaos chaos-short outage bench soak

# LocalStack in the foreground on 127.0.0.1:4566, where `regworker provision --localstack`
# looks; Ctrl-C stops it.
localstack-up: venv localstack
	$(BIN)/python -c "from worker.local.sandbox import serve_localstack; serve_localstack()"

$(UV):
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/pip install --quiet uv

$(LOCALSTACK_STAMP): | $(UV)
	@test -n "$(LOCALSTACK_PYTHON)" || { echo "make localstack: needs Python 3.12+ (python3.13 or python3.12)" >&2; exit 1; }
	$(UV) venv --allow-existing -p $(LOCALSTACK_PYTHON) $(LOCALSTACK_VENV)
	VIRTUAL_ENV=$(LOCALSTACK_VENV) $(UV) pip install --quiet --exclude-newer $(LOCALSTACK_EXCLUDE_NEWER) \
		'localstack-core[runtime]==$(LOCALSTACK_VERSION)'
	touch $@

localstack: $(LOCALSTACK_STAMP)

test-localstack: venv localstack
	$(BIN)/pytest tests/e2e/test_localstack.py

chaos: venv localstack
	$(BIN)/python bench/chaos.py --tokens $(CHAOS_TOKENS) --workers $(CHAOS_WORKERS) \
		--duration-limit 900 --json-out bench/results/chaos.json $(CHAOS_FLAGS)

# The limit is a hang guard, about three times a normal drain: each replacement worker
# starts at the default 4 calls/s and a kill comes every 4 s (drained in 62 s at 47f8767;
# 78 s at 72f2664, which started at 2/s).
chaos-short: venv localstack
	$(BIN)/python bench/chaos.py --tokens 300 --workers 3 --duration-limit 240 --kill-every 4 \
		--json-out bench/results/chaos-short.json $(CHAOS_FLAGS)

# Outages at the worker's default settings, one scenario after another (bench/README.md);
# long, so CI does not run it. OUTAGE_FLAGS="--quick" for a smoke run, "--scenarios sns".
OUTAGE_FLAGS ?=
outage: venv localstack
	$(BIN)/python bench/outage.py --json-out bench/results/outage.json $(OUTAGE_FLAGS)

# Side by side on host LocalStack and the emulator; figures are ratios from one run.
BENCH_FLAGS ?=
bench: venv localstack
	$(BIN)/python bench/compare.py --json-out bench/results/compare.json $(BENCH_FLAGS)

soak: venv localstack
	$(BIN)/python bench/compare.py --scenarios soak --json-out bench/results/soak.json $(BENCH_FLAGS)

# requirements.lock: what the image installs, each at one version with the hash of every
# file PyPI has for it; the Dockerfile installs it with --require-hashes, so nothing else
# gets in. Inputs: pyproject.toml's runtime dependencies and its build-system requires
# (the image builds the package without build isolation, from these). Kept versions stay
# unless asked: make lock LOCK_FLAGS=--upgrade
.PHONY: lock
lock: | $(UV)
	$(PYTHON) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
	| $(UV) pip compile pyproject.toml - --universal --python-version 3.11 --generate-hashes \
		--custom-compile-command "make lock" --quiet $(LOCK_FLAGS) --output-file requirements.lock
