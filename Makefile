# Entry points. Everything installs from this repo's own files into .venv.
# On a machine whose python already has torch/triton (e.g. the lent H100), use
#   make <target> PY=python3
# to skip the venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY ?= $(VENV)/bin/python
STAMP := $(VENV)/.installed

ifeq ($(PY),$(VENV)/bin/python)
ENV := $(STAMP)
else
ENV :=
endif

.PHONY: help venv test test-gpu lint format bench

help:
	@echo "make bench      run the asv suite for this commit on this machine's grid"
	@echo "make test       CPU tests (Triton interpreter); make test-gpu on a CUDA machine"
	@echo "make lint       ruff check + ruff format --check"

# torch 2.13.0: the CPU wheel on CPU machines (it lies on disk here), the CUDA wheel elsewhere.
$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip install -q -e '.[test,bench,report,modal,dev]'
	@touch $@

venv: $(ENV)

test: $(ENV)
	$(PY) -m pytest -q

test-gpu: $(ENV)
	$(PY) -m pytest -q --gpu -m gpu

lint: $(ENV)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(ENV)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(ENV)
	@echo "The asv suite lands with the bench_suite issue."
