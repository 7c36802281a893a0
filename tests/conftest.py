"""Shared fixtures: tiny random pipelines and generated audio (the tests never need the network or a corpus)."""

import os
import socket
import tempfile

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `--backend auto` exports torch folders to ONNX once: into a folder of this test session, not the user's cache.
os.environ["FUSE_HF_ONNX_CACHE"] = tempfile.mkdtemp(prefix="fuse-hf-onnx-cache-")
# Exactness tests compare outputs bit for bit: run pipelines in fp32 unless a test asks for bf16 itself.
os.environ["FUSE_HF_PRECISION"] = "fp32"
torch.set_num_threads(2)

# Latent width of the test pipelines: 16 latent frames = 64 STFT frames = a window of 0.5 s at 16 kHz,
# so that a 1.5 s clip already exercises the overlapping windows.
TEST_LATENT_FRAMES = 16


@pytest.fixture(scope="session")
def tiny_pipeline():
    from fuse_hf.factory import make_pipeline

    pipe = make_pipeline(latent_frames=TEST_LATENT_FRAMES, seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tiny_pipeline, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-pipeline")
    tiny_pipeline.save_pretrained(folder)
    return folder


def speech_like(seconds: float, sampling_rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope plus white noise: `(channels, samples)` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sampling_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2
    clean = 0.2 * voiced / np.max(np.abs(voiced))
    out = np.stack([clean + 0.03 * rng.standard_normal(t.size) for _ in range(channels)])
    return out.astype(np.float32)


@pytest.fixture
def make_speech():
    return speech_like


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS has just handed out and nothing listens on, for servers that cannot bind
    port 0 themselves (Gradio, torch.distributed's rendezvous, accelerate). Never a fixed number: tests run side
    by side."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
