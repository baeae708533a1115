# pymem: `make demo` and `make test` each set up what they need and run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Debian's pgTAP (built for PG 15; its SQL files load into the embedded PG 16/18).
PGTAP_CONTROL := /usr/share/postgresql/15/extension/pgtap.control
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test bench bench-quick venv-demo venv-dev pgtap clean

$(VENV)/.demo: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[rerank]'
	touch $@

# torch is pinned to 2.13.0 (the CPU build): it is only for building the tiny
# test model and the PyTorch baseline, never used at inference.
$(VENV)/.dev: $(VENV)/.demo
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv-demo: $(VENV)/.demo
venv-dev: $(VENV)/.dev

pgtap:
	@test -f $(PGTAP_CONTROL) || { \
	  echo "installing pgTAP (postgresql-15-pgtap) from Debian"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql-15-pgtap >/dev/null; }

demo: venv-demo
	$(PY) -m pymem demo

test: venv-dev pgtap
	$(PY) -m pytest

bench: venv-dev
	$(PY) -m pymem bench --scale full

bench-quick: venv-dev
	$(PY) -m pymem bench --scale quick

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
