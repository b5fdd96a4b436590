# One-stop entry points. `make run` and `make test` work on a fresh machine with Python 3.11,
# gcc and cmake: both create .venv and install everything first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test bench-index clean

install: $(STAMP)

# CPU torch first and pinned: a looser requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml CMakeLists.txt $(wildcard native/*.cpp native/*.hpp)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet scikit-build-core nanobind ninja
	$(BIN)/pip install --quiet --no-build-isolation -e ".[test,bench]"
	touch $(STAMP)

run: install
	$(BIN)/python -m benchmarks.index --quick

test: install
	$(BIN)/python -m pytest -q

bench-index: install
	$(BIN)/python -m benchmarks.index

clean:
	rm -rf build $(VENV)
