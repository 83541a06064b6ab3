# Two commands do everything on a fresh machine:
#   make demo   - set up .venv and run the demo on built-in phantom data
#   make test   - set up .venv (+ Chromium for the browser tests) and run the test suite
# Both are safe to re-run; set-up is skipped when already done.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=
BIN := $(VENV)/bin

.PHONY: setup setup-test demo test test-fast lint clean gpu-wheels bench bench-quick

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# torch first: a bare `torch` requirement with nothing installed pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# Debian's Chromium for the e2e viewer tests (Playwright drives it; no browser download).
setup-test: setup
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; }

demo: setup
	$(BIN)/medssl demo --out $(DEMO_OUT)

test: setup-test
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -m "not e2e and not integration and not slow" $(PYTEST_ARGS)

# Races against the reference code (benchmarks/run_all.py): one JSON line per figure, then a
# Markdown table; at most 15 minutes on a 2-core CPU. bench-quick is the seconds-long smoke run.
bench: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(BIN)/python benchmarks/run_all.py --out bench.jsonl

bench-quick: setup
	$(BIN)/python benchmarks/run_all.py --quick

clean:
	rm -rf $(DEMO_OUT) .pytest_cache test-artifacts

# Wheels the GPU device machine lacks (its python3 is CPython 3.12 with CUDA torch), for
# benchmarks/gpu_checks.sh: carry .whl with the device tool. Versions pinned to what the
# tests run with here; --no-deps, so every needed one is named. About 19 MB.
GPU_WHEELS := monai==1.6.1 pydicom==3.0.2 nibabel==5.4.2 pydantic==2.14.4 pydantic_core==2.50.5 \
  annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0 highdicom==0.28.2 \
  pyjpegls==1.5.1 pylibjpeg==2.1.0 pylibjpeg-libjpeg==2.5.0 pylibjpeg-openjpeg==2.6.0
GPU_PLATFORMS := $(foreach n,2_17 2_28 2_31 2_34,--platform manylinux_$(n)_x86_64) --platform manylinux2014_x86_64
# ../shared does not travel to the device machine: a copy of the unmodified reference rides
# along in the ignored .whl/ for bench_ssl_step.py (never committed into the project).
gpu-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  $(GPU_PLATFORMS) -d .whl $(GPU_WHEELS)
	mkdir -p .whl/reference && cp -r ../shared/reference/swinunetr_pretrain ../shared/reference/README.md .whl/reference/
