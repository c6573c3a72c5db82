# hmr_ros: `make test` sets up a virtual environment and runs the test suite.
# CPU-only PyTorch: torch==2.13.0 is installed first, pinned, so nothing pulls CUDA wheels.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.hmr_ros-installed

.PHONY: test install build bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Reinstall when the build inputs change (setup.py, kernels).
$(STAMP): $(PY) setup.py $(shell find csrc -name '*.cpp' -o -name '*.cu' -o -name '*.h')
	$(PIP) install torch==2.13.0
	$(PIP) install "pybind11>=2.12" "setuptools>=68" wheel
	$(PIP) install --no-build-isolation -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

build: $(STAMP)
	$(PY) setup.py build_ext --inplace

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_kernels.py

clean:
	rm -rf build *.egg-info hmr_ros/_C*.so
