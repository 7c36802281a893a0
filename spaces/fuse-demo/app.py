"""FUSE speech enhancement demo (Gradio Space): upload or record noisy speech, get it back enhanced.

Everything audio goes through `FUSEPipeline`; this file only adapts Gradio's inputs and outputs. The model is
loaded once at start-up: the folder or Hub repo id in ``FUSE_MODEL``, else the bundled `fuse-small`, else (with a
warning on the page) a tiny pipeline with random weights so that the page still works for development.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import gradio as gr
import numpy as np
import torch

import fuse_hf
from fuse_hf.audio import load_audio
from fuse_hf.hub import DEFAULT_MODEL_NAME, RandomWeightsWarning, load_pipeline
from fuse_hf.pipelines.pipeline_fuse import FUSEPipeline
from fuse_hf.plotting import plot_spectrograms

MAX_SECONDS = 60.0
EXAMPLES_DIR = Path(fuse_hf.__file__).resolve().parent / "assets"
EXAMPLE_FILE = EXAMPLES_DIR / "noisy_speech.wav"


def load_model() -> tuple[FUSEPipeline, str, str | None]:
    """`(pipeline, model name, warning or None)`; a tiny random pipeline only when no trained model exists."""
    name = os.environ.get("FUSE_MODEL") or None
    with warnings.catch_warnings(record=True) as caught:
        pipe = load_pipeline(name, random_fallback=True)
    random_weights = False
    for warning in caught:
        if issubclass(warning.category, RandomWeightsWarning):
            random_weights = True
        else:  # not ours to silence: show it as it would have been shown
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if random_weights:
        return (
            pipe,
            "tiny pipeline with RANDOM weights",
            (
                "No trained FUSE model is installed, so this page runs a tiny pipeline with **random weights**: "
                "its output is noise-like, not enhanced speech. Set `FUSE_MODEL` to a pipeline folder or Hub repo id."
            ),
        )
    if name is None:
        return pipe, DEFAULT_MODEL_NAME, None
    return pipe, Path(name).name if Path(name).is_dir() else name, None  # a repo id as is, a folder by its name


PIPE, MODEL_NAME, MODEL_WARNING = load_model()


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float `(channels, samples)` in [-1, 1] -> int16 `(samples,)` or `(samples, channels)` as Gradio plays it.

    Float output would be re-normalised to full scale by Gradio, which changes the loudness the model produced.
    """
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
    return pcm[0] if pcm.shape[0] == 1 else np.ascontiguousarray(pcm.T)


def enhance(path: str | None, steps: int, seed: float):
    """Gradio handler: file path in; `((rate, int16 audio), spectrogram PNG)` out, at the input's sample rate."""
    if not path:
        raise gr.Error("No audio: upload a file or record something first.")
    try:
        noisy, rate = load_audio(path)
    except ValueError as err:
        raise gr.Error(f"Cannot use this file: {err}") from None
    seconds = noisy.shape[1] / rate
    if seconds > MAX_SECONDS:
        raise gr.Error(
            f"The audio is {seconds:.1f} s long; this demo takes at most {MAX_SECONDS:.0f} s. Trim it, or "
            "use `fuse-hf enhance` (no length limit) on your own machine."
        )
    if not float(seed).is_integer() or seed < 0:
        raise gr.Error(f"The seed must be a whole number >= 0, got {seed}.")
    try:
        enhanced = PIPE(
            noisy,
            sampling_rate=rate,
            num_inference_steps=int(steps),
            generator=torch.Generator().manual_seed(int(seed)),
        ).audios
    except ValueError as err:
        raise gr.Error(str(err)) from None
    if not np.isfinite(enhanced).all():  # never hand out silence for a failure
        raise gr.Error(
            "The model produced invalid samples (NaN or Inf) for this input; please report it with the file."
        )
    figure = Path(tempfile.mkdtemp(prefix="fuse-demo-")) / "spectrograms.png"
    suffix = " (first channel)" if noisy.shape[0] > 1 else ""
    plot_spectrograms({f"noisy{suffix}": noisy[0], f"enhanced, {int(steps)} steps{suffix}": enhanced[0]}, rate, figure)
    return (rate, to_int16(enhanced)), str(figure)


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="FUSE speech enhancement") as demo:
        gr.Markdown(
            "# FUSE speech enhancement\n"
            "Latent diffusion guided by BEATs features ([paper](https://arxiv.org/abs/2406.07646), "
            "[fuse-hf](https://github.com/fuse-hf/fuse-hf)). Upload or record noisy speech (up to "
            f"{MAX_SECONDS:.0f} s, any sample rate, mono or stereo) and press **Enhance**. Model: `{MODEL_NAME}`."
        )
        if MODEL_WARNING:
            gr.Markdown(f"⚠️ **Warning:** {MODEL_WARNING}", elem_id="model-warning")
        with gr.Row():
            with gr.Column():
                noisy = gr.Audio(
                    sources=["upload", "microphone"], type="filepath", label="Noisy speech", elem_id="noisy-audio"
                )
                steps = gr.Slider(
                    1,
                    20,
                    value=6,
                    step=1,
                    label="Diffusion steps",
                    info="6 as in the paper; more steps are slower",
                    elem_id="steps-slider",
                )
                seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", info="same seed, same output")
                button = gr.Button("Enhance", variant="primary", elem_id="enhance-button")
            with gr.Column():
                enhanced = gr.Audio(
                    type="numpy",
                    label="Enhanced speech",
                    buttons=["download"],
                    interactive=False,
                    elem_id="enhanced-audio",
                )
                spectrograms = gr.Image(
                    type="filepath",
                    label="Spectrograms: noisy vs enhanced",
                    show_label=False,
                    interactive=False,
                    elem_id="spectrograms",
                )
        gr.Examples(examples=[[str(EXAMPLE_FILE), 6, 0]], inputs=[noisy, steps, seed], label="Example")
        button.click(
            enhance,
            inputs=[noisy, steps, seed],
            outputs=[enhanced, spectrograms],
            api_name="enhance",
            concurrency_limit=1,
        )
    return demo


demo = build_demo()


def launch(**kwargs):
    """Starts the app; the example file lives inside the installed package, so its folder must be allowed."""
    kwargs.setdefault("allowed_paths", [str(EXAMPLES_DIR)])
    return demo.queue(max_size=16).launch(**kwargs)


if __name__ == "__main__":
    launch()
