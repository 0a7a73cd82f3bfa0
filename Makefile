# Self-bootstrapping targets: a fresh machine needs only python3, node and npm.
# Every tool comes from the project's own files (pyproject.toml, package.json, package-lock.json).

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
VPIP   := $(VENV)/bin/pip

VENV_STAMP    := $(VENV)/.stamp
NODE_STAMP    := node_modules/.stamp
TYPINGS_STAMP := .typings-rp2/.stamp

.DEFAULT_GOAL := test
.PHONY: setup test suite bench mutation lint clean

setup: $(VENV_STAMP) $(NODE_STAMP) $(TYPINGS_STAMP)

# Python tools: the project itself (editable) plus the dev extra. Rebuilt when pyproject changes.
$(VENV_STAMP): pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPIP) install --quiet -e '.[dev]'
	touch $@

# Real MicroPython (WebAssembly port) for running the firmware under Node.
$(NODE_STAMP): package.json $(wildcard package-lock.json)
	if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; \
	else npm install --no-audit --no-fund; fi
	touch $@

# MicroPython rp2 stubs in a folder of their own: they shadow CPython's stdlib, so they must
# never be on the venv's path. Used only by mypy-firmware.ini.
$(TYPINGS_STAMP): $(VENV_STAMP)
	rm -rf .typings-rp2
	$(VPIP) install --quiet --target .typings-rp2 micropython-rp2-stubs
	touch $@

# pytest exits 5 when it collected no tests: that is a failure here, and says so.
test: setup
	@rc=0; $(VPY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: FAILED: pytest collected no tests" >&2; fi; \
	exit $$rc

suite: setup
	$(VENV)/bin/pumpsim suite scenarios --out report

bench: setup
	@set -e; for b in bench/bench_*.py; do \
	  [ -e "$$b" ] || { echo "no bench/bench_*.py yet"; break; }; \
	  case "$$b" in */bench_mutation.py) continue;; esac; \
	  echo "== $$b"; $(VPY) "$$b"; \
	done

# Mutation testing of the firmware (docs/mutation.md): about an hour on one core; not part of
# `make test` or `make bench`. MUTATION_ARGS="--safety --check" for the five safety modules,
# failing below 90 % or on a survivor docs/mutation.md does not explain.
mutation: setup
	$(VPY) bench/bench_mutation.py $(MUTATION_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --config-file mypy.ini
	$(VENV)/bin/mypy --config-file mypy-firmware.ini

clean:
	rm -rf $(VENV) node_modules .typings-rp2 report build *.egg-info bench/out \
	       .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name '*.mpy' -not -path './node_modules/*' -delete
