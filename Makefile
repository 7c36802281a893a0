# Two commands set everything up on a fresh machine:
#   make demo   install, then enhance a noisy sample with the bundled model
#   make test   install with the test extras, lint, set up the browser test's Chromium (best effort), run the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
# torch first, pinned: a plain `torch` requirement would pull a multi-GB CUDA build here.
TORCH ?= torch==2.13.0

.PHONY: install install-test demo lint browser test space-screenshot bench train-small clean

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

# ruff's settings (rules, line length, what it skips) live in pyproject.toml.
lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# tests/test_space.py drives the Space in Debian's chromium with Playwright (a test dependency). Best effort: where
# chromium cannot be installed (not root, no apt-get, no network) this says why and the browser test skips.
CHROMIUM ?= chromium
browser:
	@if command -v $(CHROMIUM) >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "make browser: no $(CHROMIUM), and installing it needs root and apt-get; the browser test will skip"; \
	  exit 0; fi; \
	install="apt-get install -y -q --no-install-recommends chromium"; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$install >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && $$install >/dev/null 2>&1; } || \
	  echo "make browser: apt-get install chromium failed; the browser test will skip"

test: install-test lint browser
	$(PY) -m pytest -q

# The README's screenshot of the Space, refreshed by the browser test (which otherwise writes only to a temp folder).
space-screenshot: install-test browser
	FUSE_HF_SPACE_SCREENSHOT=$(CURDIR)/docs/space_screenshot.png $(PY) -m pytest -q tests/test_space.py -k chromium

bench: install-test
	$(PY) -m benchmarks.bench_inference --out benchmarks/results/inference.json

clean:
	rm -rf $(VENV) demo_output .pytest_cache build dist *.egg-info

# Corpus v2 from Debian packages (scripts/corpus/README.md): ~3.5 GB of .debs, resumable; needs apt-get and ffmpeg.
CORPUS_V2 ?= $(HOME)/.cache/fuse-corpus-v2
CORPUS_JOBS ?= 2
.PHONY: corpus
corpus: install
	$(PY) scripts/corpus/build_corpus.py $(CORPUS_V2) --jobs $(CORPUS_JOBS)

# ---------------------------------------------------------------------------------------------------------------
# Rebuild the bundled model from the corpus on this CPU (resumable: run it again to continue where it stopped).
CORPUS ?= $(HOME)/.cache/fuse-corpus
CORPUS_SCRIPT ?= ../shared/corpus/build_corpus.sh
RUNS ?= $(HOME)/.cache/fuse-hf/runs/fuse-small
TRAIN_FLAGS ?=
SMALL_DIR ?= pipelines/fuse-small
LAUNCH := $(VENV)/bin/accelerate launch --cpu --num_processes 1 --num_machines 1 --dynamo_backend no
DATA := --speech_dir $(CORPUS)/speech/train --noise_dir $(CORPUS)/noise/train \
        --valid_speech_dir $(CORPUS)/speech/valid --valid_noise_dir $(CORPUS)/noise/valid --resume_from_checkpoint latest

$(CORPUS)/manifest.csv:
	bash $(CORPUS_SCRIPT) $(CORPUS)

train-small: install-test $(CORPUS)/manifest.csv
	$(LAUNCH) train.py beats --config configs/fuse-small/beats.yaml $(DATA) --output_dir $(RUNS)/beats $(TRAIN_FLAGS)
	$(LAUNCH) train.py vae --config configs/fuse-small/vae.yaml $(DATA) --output_dir $(RUNS)/vae $(TRAIN_FLAGS)
	$(LAUNCH) train.py diffusion --config configs/fuse-small/diffusion.yaml $(DATA) --output_dir $(RUNS)/diffusion \
	  --vae_path $(RUNS)/vae/vae --conditioner_path $(RUNS)/beats/conditioner $(TRAIN_FLAGS)
	rm -rf $(SMALL_DIR) && cp -r $(RUNS)/diffusion/pipeline $(SMALL_DIR)
	@echo "fuse-small rebuilt in $(SMALL_DIR); run python -m benchmarks.bench_quality --model $(SMALL_DIR) to measure it"
