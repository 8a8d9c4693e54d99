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

.PHONY: help venv demo test lint typecheck unit awscli clean

help:
	@echo "make demo   run the whole flow on moto server + the ResolveCustomer emulator"
	@echo "make test   lint, type-check and run the whole test suite"
	@echo "make lint | typecheck | clean"

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

typecheck: venv
	$(BIN)/mypy

test: venv awscli lint typecheck
	PATH="$(CURDIR)/$(AWSCLI_VENV)/bin:$$PATH" $(BIN)/pytest

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache .hypothesis
