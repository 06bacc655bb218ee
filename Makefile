# Two commands on a fresh machine:  `make bench` (the op benchmarks) and `make test`.
# Both create .venv and install what they need. Torch: the one the base Python already has
# (seen through --system-site-packages), else torch==2.13.0 (the CPU build available here).
# skelops is built with --no-build-isolation, so no build can pull a different torch.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TRITON_VERSION ?= 3.6.0
SOURCES := $(shell find csrc -type f) CMakeLists.txt pyproject.toml

.PHONY: install test bench lint cuda-check clean

$(VENV)/.deps:
	@if $(PYTHON) -c "import torch" 2>/dev/null; then \
	  $(PYTHON) -m venv --system-site-packages $(VENV); else $(PYTHON) -m venv $(VENV); fi
	@# A venv made from another venv's Python does not see that venv's packages: ask the new one.
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "using the installed torch $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else $(PIP) install -q torch==2.13.0; fi
	$(PIP) install -q "scikit-build-core>=0.10" "pybind11>=2.12" ninja numpy tqdm pyyaml safetensors "pytest>=8" ruff
	@$(PY) -c "import triton" 2>/dev/null || $(PIP) install -q triton==$(TRITON_VERSION)
	touch $@

$(VENV)/.built: $(VENV)/.deps $(SOURCES)
	$(PIP) install -q --no-build-isolation --no-deps -e .
	touch $@

install: $(VENV)/.built

test: install
	@# the real OpenPose sequences of the pose2sim wheel (downloaded once into ~/.cache/skelops)
	$(PY) -m skelops.data.pose2sim --fetch
	@# pytest exits 5 when it collects nothing: say so and fail, a green run must have tested.
	@$(PY) -m pytest -q python_tests $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

bench: install
	$(PY) -m skelops.bench $(BENCH_ARGS)

lint: $(VENV)/.deps
	$(VENV)/bin/ruff check skelops python_tests examples
	$(VENV)/bin/ruff format --check skelops python_tests examples

# The torch-free CUDA kernels compiled by nvcc alone: no GPU and no CUDA torch needed.
cuda-check:
	cmake -S . -B build/cuda-check -G Ninja -DSKELOPS_KERNELS_ONLY=ON -DCMAKE_BUILD_TYPE=Release
	cmake --build build/cuda-check

clean:
	rm -rf build $(VENV)
