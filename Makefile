# One-command set-up on a fresh Debian/Ubuntu machine: `make test`, `make demo`.
# System packages are installed with apt-get when missing (through sudo unless root).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSPKGS := slapd ldap-utils libldap2-dev libsasl2-dev openssl
STAMP  := $(VENV)/.installed

.PHONY: all test lint unit integration demo bench hot-path sysdeps venv docs clean

all: test

sysdeps:
	@missing=""; for p in $(SYSPKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	$(MAKE) sysdeps
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check $(wildcard src tests bench examples)
	$(BIN)/ruff format --check $(wildcard src tests bench examples)
	$(BIN)/mypy --strict src
	$(BIN)/lint-imports --no-cache

unit: venv
	$(BIN)/pytest -q tests/unit

integration: sysdeps venv
	$(BIN)/pytest -q tests/integration

test: sysdeps venv lint
	$(BIN)/pytest tests

demo: sysdeps venv
	$(BIN)/python examples/demo.py

bench: sysdeps venv
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m bench.run

# Where a pooled search's extra microseconds go, step by step (bench/hot_path.py).
hot-path: sysdeps venv
	$(BIN)/python -m bench.hot_path
	$(BIN)/python -m bench.hot_path --driver ldap3

docs: venv
	$(BIN)/python -m pip install -q -e '.[docs]'
	$(BIN)/sphinx-build -q -W -b html docs docs/_build/html

clean:
	rm -rf $(VENV) .venv-* .import_linter_cache .mypy_cache .ruff_cache .pytest_cache .hypothesis docs/_build
