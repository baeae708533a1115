# pymem: `make demo` and `make test` each set up what they need and run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Debian's pgTAP (built for PG 15; its SQL files load into the embedded PG 16/18),
# and Debian's pgbouncer for the transaction-mode pooler test.
PGTAP_CONTROL := /usr/share/postgresql/15/extension/pgtap.control
PGBOUNCER := /usr/sbin/pgbouncer
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test bench bench-quick venv-demo venv-dev system-packages clean

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

system-packages:
	@test -f $(PGTAP_CONTROL) -a -x $(PGBOUNCER) || { \
	  echo "installing pgTAP (postgresql-15-pgtap) and pgbouncer from Debian"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql-15-pgtap pgbouncer >/dev/null; }

demo: venv-demo
	$(PY) -m pymem demo

# Branch coverage of pymem/ is measured on every run; under 90% fails (see README).
test: venv-dev system-packages
	$(PY) -m pytest --cov=pymem --cov-branch --cov-report=term-missing:skip-covered --cov-fail-under=90

bench: venv-dev
	$(PY) -m pymem bench --scale full

bench-quick: venv-dev
	$(PY) -m pymem bench --scale quick

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
