# CareCall: two commands for people (make demo, make test); the rest are their steps.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export CARECALL_CACHE ?= $(HOME)/.cache/carecall

.PHONY: demo test test-fast bench setup system python models coqui lint screenshots

demo: setup
	$(VENV)/bin/carecall serve

test: setup
	bash scripts/run-tests.sh

# The deterministic tier (no real models, browser, SIP peers or PostgreSQL), in under two minutes.
test-fast: python
	bash scripts/run-tests.sh --fast

bench: setup
	$(PY) -m bench.latency
	$(PY) -m bench.triage_accuracy

setup: system python models coqui

system:
	bash scripts/install-system.sh

python:
	bash scripts/install-python.sh $(VENV)

models: python
	$(PY) scripts/assemble_models.py

# The optional Coqui TTS engine (GPU deployments) in its own environment, $(CARECALL_CACHE)/venv-coqui:
# torch is ~7 GB and stays out of $(VENV); the tests run its code there.
coqui:
	bash scripts/install-coqui.sh

# The README's screenshots (docs/screenshots/), re-taken by the browser tests; other runs keep them in /tmp.
screenshots: setup
	CARECALL_SCREENSHOTS=update $(PY) -m pytest -q -p no:cacheprovider -m browser tests/web

lint: python
	$(VENV)/bin/ruff check .
