# Chime: `make run` starts everything on embedded defaults; `make test` runs lint and the whole suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
CHIME := $(VENV)/bin/chime
STAMP := $(VENV)/.installed
# kustomize renders deploy/k8s in the tests; built from the Go module proxy once per machine.
KUSTOMIZE_VERSION := v5.7.1
KUSTOMIZE := .chime/bin/kustomize-$(KUSTOMIZE_VERSION)
PYTEST_ARGS ?=

.PHONY: install run test test-unit lint format bench chaos kafka stop clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Chime needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip==26.3"
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

$(KUSTOMIZE):
	@command -v go >/dev/null || { echo "Chime's tests need Go (1.22 or newer) to build kustomize" >&2; exit 1; }
	GOBIN=$(CURDIR)/.chime/bin go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv .chime/bin/kustomize $(KUSTOMIZE)

# promtool checks the alert rules and the services' metrics in the tests: Debian's prometheus package, unpacked
# into .chime (no root, nothing installed system-wide).
PROMTOOL := .chime/prometheus/usr/bin/promtool
$(PROMTOOL):
	@command -v apt-get >/dev/null || { echo "Chime's tests need promtool: install Prometheus' promtool and link it to $(PROMTOOL)" >&2; exit 1; }
	mkdir -p .chime/prometheus/deb
	cd .chime/prometheus/deb && apt-get download prometheus
	dpkg-deb -x .chime/prometheus/deb/prometheus_*.deb .chime/prometheus
	rm -rf .chime/prometheus/deb
	@test -x $(PROMTOOL)

# The console's browser tests drive Debian's Chromium through Playwright, which is told where it is and downloads no
# browser of its own. CHIME_CHROMIUM points the tests at another Chromium or Chrome (on a laptop, say).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "Chime's browser tests need Chromium: install it, and set CHIME_CHROMIUM to its path" >&2; exit 1; }
	$(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive sh -c 'apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }'
	@test -x $(CHROMIUM)

install: $(STAMP) $(KUSTOMIZE) $(PROMTOOL)

run: install
	$(CHIME) dev

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The stack (Kafka, Postgres) is started when needed and stopped afterwards if this run started it.
# CHIME_TEST_BACKEND=containers takes them from testcontainers instead (needs a Docker engine).
test: lint $(if $(CHIME_CHROMIUM),,$(CHROMIUM))
ifeq ($(CHIME_TEST_BACKEND),containers)
	$(PY) -m pytest $(PYTEST_ARGS)
else
	$(CHIME) stack exec -- $(PY) -m pytest $(PYTEST_ARGS)
endif

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

bench: install
	$(CHIME) stack exec -- $(PY) -m bench $(BENCH_ARGS)

# Faults under load (bounded, stops by itself); CHAOS_ARGS=--quick for the two-minute version.
chaos: install
	$(CHIME) stack exec -- $(PY) -m chaos $(CHAOS_ARGS)

kafka: install
	$(CHIME) stack up --kafka-only

stop: install
	$(CHIME) stack down

clean: stop
	rm -rf .chime $(VENV)
