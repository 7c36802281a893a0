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
	@echo "fuse-small rebuilt in $(SMALL_DIR); run benchmarks/bench_quality.py --model $(SMALL_DIR) to measure it"
