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
	@echo "make bench-gpu GPUS=N      the suite sharded over N local GPUs, merged into results/"
	@echo "make bench-modal COMMITS=HEAD SHARDS=8   the suite on Modal H100s (docs/modal.md)"
	@echo "make report    CSV, <machine>_latest.txt, plots and HTML from results/ (no GPU)"
	@echo "make publish   asv's own HTML in reports/asv_html, working offline"

# torch 2.13.0: the CPU wheel on CPU machines (it lies on disk here), the CUDA wheel elsewhere.
$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip install -q -e '.[test,bench,report,modal,dev]'
	@touch $@

venv: $(ENV)

# Headless Chromium for the HTML report tests (tests/test_reports.py skips them without it).
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium) \
		|| echo "chromium could not be installed: the browser tests of reports/ will skip"

test: $(ENV) chromium
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

# Sharded runs (runner/, docs/modal.md). GPUS: default every GPU nvidia-smi lists; SHARDS:
# default one per GPU (bench-gpu) or 8 containers per commit (bench-modal); PRESET: e.g.
# TTT,Long; BENCH: a regex; COMMITS: HEAD, A..B or a list (bench-modal).
.PHONY: bench-gpu bench-modal
COMMITS ?= HEAD
comma := ,

bench-gpu: $(ENV)
	$(PY) -m runner.local_gpus $(if $(GPUS),--gpus $(GPUS)) $(if $(SHARDS),--shards $(SHARDS)) \
		$(foreach p,$(subst $(comma), ,$(PRESET)),--preset $(p)) $(if $(BENCH),--bench '$(BENCH)')

# The token check comes first and is stdlib only: without a token this fails in well under a
# second, before the venv, torch or modal are touched.
bench-modal:
	@$(PYTHON) runner/modal_token.py
	@$(MAKE) --no-print-directory venv
	$(PY) -m modal run modal_runner.py --commits '$(COMMITS)' --shards $(or $(SHARDS),8) \
		$(if $(PRESET),--preset '$(PRESET)') $(if $(BENCH),--bench '$(BENCH)')

# Reports from the committed asv results (reports/cli.py): reports/data/all_results.csv,
# reports/<machine>_latest.txt, reports/plots/, reports/html/index.html. No GPU, no torch.
.PHONY: report publish
report: $(ENV)
	$(PY) -m reports

# asv's own HTML into reports/asv_html (gitignored; asv publish empties it first), with
# its CDN scripts replaced by reports/vendor/ copies. View: python -m http.server -d reports/asv_html
publish: $(ENV)
	$(PY) -m reports publish
