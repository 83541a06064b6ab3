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

.PHONY: setup setup-test demo test test-fast lint clean

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

clean:
	rm -rf $(DEMO_OUT) .pytest_cache test-artifacts
