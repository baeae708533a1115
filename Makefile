# pymem: `make demo` and `make test` each set up what they need and run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Debian's pgTAP (built for PG 15; its SQL files load into the embedded PG 16/18),
# Debian's pgbouncer for the transaction-mode pooler test.
PGTAP_CONTROL := /usr/share/postgresql/15/extension/pgtap.control
PGBOUNCER := /usr/sbin/pgbouncer
SOFTHSM2 := /usr/lib/softhsm/libsofthsm2.so
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test test-postgres test-citus bench bench-quick venv-demo venv-dev system-packages clean

# The product (pymem-store) and its development tools (pymem-store-devtools, in devtools/:
# the demo, the benchmarks, throw-away clusters, the Citus builder, the test models).
# torch is pinned to 2.13.0 (the CPU build): it is only for exporting models (the
# demo's embedder, the tiny test reranker) and the PyTorch baseline, never used at inference.
$(VENV)/.demo: pyproject.toml devtools/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e . -e './devtools[demo]'
	touch $@

# The test dependencies are a dependency group of pyproject.toml, not an extra of the product.
$(VENV)/.dev: $(VENV)/.demo
	$(PY) -m pip install -q -e . -e './devtools[demo,bench]' --group test
	touch $@

venv-demo: $(VENV)/.demo
venv-dev: $(VENV)/.dev

# ... a C toolchain, OpenSSL headers and patch to build Citus for the Citus suite, and
# SoftHSM2 (a real PKCS#11 token) for the PKCS#11 root-key suite.
system-packages:
	@test -f $(PGTAP_CONTROL) -a -x $(PGBOUNCER) -a -x /usr/bin/gcc -a -x /usr/bin/patch \
	  -a -f /usr/include/openssl/ssl.h -a -f $(SOFTHSM2) || { \
	  echo "installing pgTAP, pgbouncer, SoftHSM2 and the Citus build tools from Debian"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql-15-pgtap pgbouncer softhsm2 \
	    build-essential libssl-dev patch >/dev/null; }

# all-MiniLM-L6-v2 is exported into onnx_models/ once, offline, from the installed
# weights package (about 10 s); later runs find the export and skip it.
demo: venv-demo
	HF_HUB_OFFLINE=1 $(PY) -m pymem_devtools.minilm
	HF_HUB_OFFLINE=1 $(VENV)/bin/pymem-dev demo

# Both suites, then branch coverage of pymem/ over the two runs; under 90% fails (see docs/development.md).
test: test-postgres test-citus
	$(PY) -m coverage report --skip-covered --show-missing --fail-under=90

# PostgreSQL 16 and 18 (embedded): every suite, pgTAP and pgbouncer included.
test-postgres: venv-dev system-packages
	$(PY) -m pytest --cov=pymem --cov-branch --cov-report=

# Citus 14 (built from ../shared/vendor/citus, cached in ~/.cache/pymem): a
# coordinator and two workers; every test marked citus runs through the coordinator.
test-citus: venv-dev system-packages
	$(PY) -m pytest --target=citus --cov=pymem --cov-branch --cov-append --cov-report=

bench: venv-dev
	$(VENV)/bin/pymem-dev bench --scale full

bench-quick: venv-dev
	$(VENV)/bin/pymem-dev bench --scale quick

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
