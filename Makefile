# Two commands set everything up on a fresh machine:
#   make demo   install, then enhance a noisy sample with the bundled model
#   make test   install with the test extras, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
# torch first, pinned: a plain `torch` requirement would pull a multi-GB CUDA build here.
TORCH ?= torch==2.13.0

.PHONY: install install-test demo test bench train-small clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-base: pyproject.toml | $(VENV)/bin/python
	$(PIP) $(TORCH)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PIP) $(TORCH)
	$(PIP) -e ".[test]"
	touch $@ $(VENV)/.installed-base

install: $(VENV)/.installed-base
install-test: $(VENV)/.installed-test

demo: install
	$(VENV)/bin/fuse-hf enhance fuse_hf/assets/noisy_speech.wav --output-dir demo_output --overwrite
	@echo "noisy: fuse_hf/assets/noisy_speech.wav  ->  enhanced: demo_output/noisy_speech.wav"

test: install-test
	$(PY) -m pytest -q

bench: install-test
	$(PY) benchmarks/bench_inference.py --out benchmarks/results/inference.json

clean:
	rm -rf $(VENV) demo_output .pytest_cache build dist *.egg-info
