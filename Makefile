# Two commands for a fresh machine with Python and pip: `make demo` and `make test`.
# Both create .venv on first use. torch is installed first, pinned, because a bare `torch`
# requirement lets pip pick a multi-GB CUDA build; set TORCH_SPEC to choose another build.

PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lmscope-installed
PROMPT ?= What is the capital of France?

.PHONY: setup demo test test-slow bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)
	$(BIN)/lmscope fetch

demo: setup
	$(BIN)/lmscope llama --chat --prompt "$(PROMPT)"

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_tui.py

screenshots: setup
	$(BIN)/python scripts/make_screenshots.py

clean:
	rm -rf $(VENV) *.egg-info
