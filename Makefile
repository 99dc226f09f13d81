# Two entry points for a fresh machine: `make run` and `make test`.
# Both install the tested set of versions pinned in requirements.lock (pip constraints), so a
# fresh machine runs what the suite ran on; `make test-floors` runs the suite's driver, wire
# and unit tests against the lowest versions pyproject.toml allows (requirements-floors.txt).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
LOCK := requirements.lock
FLOORS_VENV := .venv-floors
FLOORS := requirements-floors.txt
# The tests that exercise the libraries with floors: drivers, simulators, the WebSocket server.
FLOORS_TESTS ?= tests/unit tests/integration/test_modbus_driver.py \
	tests/integration/test_opcua_driver.py tests/integration/test_websocket.py \
	tests/integration/test_security.py tests/integration/test_comms_e2e.py \
	tests/integration/test_sparkplug_driver.py tests/integration/test_sparkplug_edge.py

# `make run PORT=8080 HOST=0.0.0.0 CONFIG=config/modbus.toml`
SERVE_ARGS := $(if $(PORT),--port $(PORT)) $(if $(HOST),--host $(HOST)) \
	$(if $(CONFIG),--config $(CONFIG))

.PHONY: run cluster test test-chaos test-floors lint typecheck check lock clean sparkplug-proto

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall only when the project definition or the lock changes, so repeat runs start at once.
$(STAMP_RUN): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -q -c $(LOCK) -e .
	touch $@

$(STAMP_TEST): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -q -c $(LOCK) -e '.[test]'
	touch $(STAMP_RUN) $@

run: $(STAMP_RUN)
	$(BIN)/scada serve $(SERVE_ARGS)

# A local cluster (Redis, two ingest nodes, two gateways, nginx) in the foreground; needs
# redis-server and nginx. `make cluster CLUSTER_PORT=9443 CLUSTER_DIR=/tmp/c CONFIG=FILE`
CLUSTER_PORT ?= 8443
CLUSTER_DIR ?= scada-cluster
cluster: $(STAMP_RUN)
	$(BIN)/scada cluster --dir $(CLUSTER_DIR) --port $(CLUSTER_PORT) $(if $(CONFIG),--config $(CONFIG))

lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP_TEST)
	$(BIN)/mypy

# The suite runs on four pytest-xdist workers (whole files per worker). On the 2-core box it is
# CPU-bound (real servers, Redis, nginx, Chromium: vmstat showed 0-8% idle throughout), and four
# workers keep both cores busy: pytest 243 s idle, against 263 s on three workers and 265 s on
# six (single runs; runs of the same code on this shared box spread by over a minute). xdist's
# own order (files with the most tests first) stays: collection order (--no-loadscope-reorder)
# showed no gain (266 s, against 216 and 288 s without it, clean clones).
# JOBS=1 runs it in one process (for a debugger or a profile).
JOBS ?= 4
PYTEST_JOBS := $(if $(filter-out 1,$(JOBS)),-n $(JOBS) --dist loadfile)

# Lint and type check run beside the tests, not before them (a clean clone's mypy has no cache:
# ~17 s of one core); their output follows the tests', and a failure of either fails `make test`.
# The project's modules are compiled to bytecode once first: the suite starts some 300 Python
# processes (servers, CLIs, import checks), and with PYTHONDONTWRITEBYTECODE set (as on the
# 2-core box) each of them compiled every project module it imported again, ~0.2 s of CPU each.
test: $(STAMP_TEST)
	@$(BIN)/python -m compileall -q scada drivers simulators tests || true
	@checks=$$(mktemp); \
	$(MAKE) -k --no-print-directory lint typecheck > $$checks 2>&1 & pid=$$!; \
	$(BIN)/python -m pytest $(PYTEST_JOBS) -m "not chaos"; tests=$$?; \
	wait $$pid; lint=$$?; \
	echo "--- lint and type check (ruff, mypy): $$([ $$lint -eq 0 ] && echo ok || echo FAILED)"; \
	cat $$checks; rm -f $$checks; \
	[ $$tests -eq 0 ] && [ $$lint -eq 0 ]

# The chaos suite (tests/chaos, docs/cluster.md "Chaos"): one local cluster, each fault once
# (kills, pauses, Redis losses, a partition), an independent checker after each; fails on any
# forked id, lost event or takeover that never finished. Minutes of both cores: run it alone.
# `python -m tests.chaos.run --rounds N` runs N rounds and prints the table.
test-chaos: $(STAMP_TEST)
	$(BIN)/python -m pytest -p no:cacheprovider -m chaos -s tests/chaos

$(FLOORS_VENV)/.installed: pyproject.toml $(FLOORS)
	rm -rf $(FLOORS_VENV)
	$(PY) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/pip install -q --upgrade pip
	$(FLOORS_VENV)/bin/pip install -q -c $(FLOORS) -e '.[test]'
	touch $@

test-floors: $(FLOORS_VENV)/.installed
	$(FLOORS_VENV)/bin/python -m pytest -p no:cacheprovider -m "not browser and not nginx" \
		$(FLOORS_TESTS)

# Re-resolve the newest versions pyproject.toml allows into requirements.lock (then run
# `make test` before committing it).
lock:
	rm -rf .venv-lock
	$(PY) -m venv .venv-lock
	.venv-lock/bin/pip install -q --upgrade pip
	.venv-lock/bin/pip install -q -e '.[test]'
	{ echo "# Tested versions of every run and test dependency: pip constraints for make run,"; \
	  echo "# make test and CI (pip install -c requirements.lock). Regenerate with make lock."; \
	  .venv-lock/bin/pip freeze --exclude-editable | LC_ALL=C sort -f; } > $(LOCK)
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) $(FLOORS_VENV) .pytest_cache .mypy_cache .ruff_cache

# Regenerate drivers/sparkplug/sparkplug_b_pb2.py (and its type stub .pyi) from its .proto with the protoc of
# grpcio-tools 1.74.0 (libprotoc 31.1: gencode the protobuf runtime accepts from 6.31.1 on, the
# floor in pyproject.toml), in a throwaway venv: protoc is no dependency of the project.
sparkplug-proto:
	rm -rf .venv-protoc
	$(PY) -m venv .venv-protoc
	.venv-protoc/bin/pip install -q grpcio-tools==1.74.0
	cd drivers/sparkplug && ../../.venv-protoc/bin/python -m grpc_tools.protoc -I. \
		--python_out=. --pyi_out=. sparkplug_b.proto
	rm -rf .venv-protoc
