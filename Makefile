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

.PHONY: help venv test test-gpu lint format bench bench-history

help:
	@echo "make bench      run the asv suite for this commit on this machine's grid"
	@echo "                (GRID=gpu|cpu PRESETS=seed,ttt MACHINE=name PY=python3 to skip the venv)"
	@echo "make bench-history RANGE=A..B   one asv result per commit, from git worktrees"
	@echo "make bench-compare BASE=main    PR gate: measure this tree and BASE here, compare;"
	@echo "                exit 1 on a regression/failure, 4 on a missing series (PRESETS=..)"
	@echo "make test       CPU tests (Triton interpreter; NO_BROWSER=1 skips the apt Chromium)"
	@echo "make test-gpu   every kernel test on CUDA, the large ones too (PY=python3 on the lent GPU)"
	@echo "make lint       ruff check + ruff format --check"
	@echo "make bench-gpu GPUS=N      the suite sharded over N local GPUs, merged into results/"
	@echo "make bench-modal COMMITS=HEAD SHARDS=8   the suite on Modal H100s (docs/modal.md)"
	@echo "make report    CSV, <machine>_latest.txt, plots and HTML from results/ (no GPU;"
	@echo "                CPU runs left out, REPORT_CPU=1 includes them, also for make bench)"
	@echo "make publish   asv's own HTML in report/asv_html, working offline"
	@echo "make serve     serve report/asv_html on http://127.0.0.1:8080 (PORT=..): asv's page"
	@echo "                needs HTTP, not file://"

# torch 2.13.0: the CPU wheel on CPU machines (it lies on disk here), the CUDA wheel elsewhere.
$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip install -q -e '.[test,bench,report,modal,dev]'
	@touch $@

venv: $(ENV)

# Headless Chromium for the HTML report tests (tests/test_reports.py skips them without it).
# It comes from apt as root (~115 packages, ~480 MB on a bare Debian): said before it starts;
# NO_BROWSER=1 skips it and those tests.
.PHONY: chromium
chromium:
	@if [ -n "$(NO_BROWSER)" ]; then \
		echo "NO_BROWSER=1: no browser installed (the HTML report's browser tests skip without one)"; \
	elif ! command -v chromium >/dev/null; then \
		echo "make test: installing headless Chromium with apt-get (~480 MB) for the HTML" \
			"report's browser tests; skip with 'make test NO_BROWSER=1'"; \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the browser tests of reports/ will skip"; \
	fi

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

# The asv suite for this commit (runner/asv_run.py): GRID=gpu|cpu (default: by hardware),
# PRESETS=seed,ttt (presets of the grid), MACHINE=<asv machine name>, BENCH=<asv regex>.
# Results go to results/<machine>/; a short table is printed, then the report if it exists.
BENCH_ARGS = $(if $(GRID),--grid $(GRID)) $(if $(PRESETS),--presets '$(PRESETS)') \
	$(if $(MACHINE),--machine '$(MACHINE)') $(if $(BENCH),--bench '$(BENCH)')
# CPU runs stay out of the report (and so out of the committed report/) unless REPORT_CPU=1.
REPORT_ARGS = $(if $(REPORT_CPU),--include-cpu)
REPORT = if [ -f reports/__main__.py ]; then $(PY) -m reports $(REPORT_ARGS); \
	else echo "(no reports/__main__.py yet: report skipped)"; fi

# Exit status 2 when a benchmark failed (parity or error); the report is built either way.
bench: $(ENV)
	@$(PY) -m runner.asv_run $(BENCH_ARGS); status=$$?; $(REPORT); exit $$status

# One result file per commit of RANGE=A..B (git's meaning: commits in B not in A), each
# measured from its own git worktree with this environment: nothing is reinstalled.
bench-history: $(ENV)
	@test -n "$(RANGE)" || { echo "usage: make bench-history RANGE=A..B [GRID=..] [PRESETS=..]" >&2; exit 2; }
	@$(PY) -m runner.asv_run --range '$(RANGE)' $(BENCH_ARGS); status=$$?; $(REPORT); exit $$status

# The PR gate (runner/compare.py): HEAD and BASE measured on this machine (a committed result
# of BASE for this machine and toolchain is reused), then `python -m reports compare`.
# Exit status: 0 pass, 1 regression or failure, 4 missing series (ALLOW_MISSING=1 accepts).
# ROUNDS=N: HEAD and BASE N times each, interleaved, judged on the session's own spread.
.PHONY: bench-compare
BASE ?= main
bench-compare: $(ENV)
	$(PY) -m runner.compare --base '$(BASE)' $(if $(PRESETS),--presets '$(PRESETS)') \
		$(if $(GRID),--grid $(GRID)) $(if $(MACHINE),--machine '$(MACHINE)') \
		$(if $(ALLOW_MISSING),--allow-missing) $(if $(ROUNDS),--rounds $(ROUNDS))

# Sharded runs (runner/; README: Running on Modal). GPUS: default every GPU nvidia-smi lists; SHARDS:
# default one per GPU (bench-gpu) or 8 containers per commit (bench-modal); PRESETS and
# GRID as for make bench; BENCH: a regex ANDed with the grid; COMMITS: HEAD, A..B or a list
# (bench-modal). bench-gpu's machine: machine_name(n_gpus=GPUS), e.g. h100-sxm-80gb-x2.
.PHONY: bench-gpu bench-modal
COMMITS ?= HEAD
comma := ,

bench-gpu: $(ENV)
	$(PY) -m runner.local_gpus $(if $(GPUS),--gpus $(GPUS)) $(if $(SHARDS),--shards $(SHARDS)) \
		$(if $(GRID),--grid $(GRID)) $(foreach p,$(subst $(comma), ,$(PRESETS)),--preset $(p)) \
		$(if $(MACHINE),--machine '$(MACHINE)') $(if $(BENCH),--bench '$(BENCH)')
	@$(REPORT)

# The token check comes first and is stdlib only: without a token this fails in well under a
# second, before the venv, torch or modal are touched.
bench-modal:
	@$(PYTHON) runner/modal_token.py
	@$(MAKE) --no-print-directory venv
	$(PY) -m modal run modal_runner.py --commits '$(COMMITS)' --shards $(or $(SHARDS),8) \
		$(if $(PRESETS),--preset '$(PRESETS)') $(if $(BENCH),--bench '$(BENCH)')

# Reports from the committed asv results (reports/cli.py): report/data/all_results.csv,
# report/<machine>_latest.txt, report/plots/, report/html/index.html. No GPU, no torch.
.PHONY: report publish
report: $(ENV)
	$(PY) -m reports $(REPORT_ARGS)

# asv's own HTML into report/asv_html (gitignored; asv publish empties it first), with
# its CDN scripts replaced by reports/vendor/ copies and its graphs starting on one machine.
# It reads its data over HTTP (file:// is a CORS error): view it with `make serve`.
publish: $(ENV)
	$(PY) -m reports publish

# Serves asv's site (make publish) on localhost only; PORT=8080 by default.
.PHONY: serve
PORT ?= 8080
serve:
	@test -f report/asv_html/index.html || { echo "no report/asv_html: run make publish first" >&2; exit 2; }
	@echo "asv's site on http://127.0.0.1:$(PORT)/ (Ctrl-C stops)"
	$(or $(wildcard $(PY)),$(PYTHON)) -m http.server -d report/asv_html -b 127.0.0.1 $(PORT)
