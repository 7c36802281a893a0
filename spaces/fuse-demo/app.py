"""FUSE speech enhancement demo (Gradio Space): hear the microphone enhanced as you speak (Live tab), or upload or
record noisy speech and get it back enhanced (File tab).

Everything audio goes through `FUSEPipeline`; this file only adapts Gradio's inputs and outputs. The model is
loaded once at start-up: the folder or Hub repo id in ``FUSE_MODEL``, else the bundled `fuse-small`, else (with a
warning on the page) a tiny pipeline with random weights so that the page still works for development.

How the Live tab fits Gradio 6's streaming (checked in headless Chromium with a fake microphone):

* A streaming `gr.Audio` output opens a new player (HLS playlist and AAC encoder) for every run of a generator.
  Fed by the microphone's `.stream` event, one run per tick, it reloads every half second and cuts each piece off
  with the next (a plain function returning bytes plays nothing). So the ticks only push the microphone into the
  session's push-mode `FUSEStream` (`live_chunk`), and one generator started with the recording (`live_output`)
  plays everything enhanced, in one stream, until `live_stop` has flushed the last window.
* A streaming microphone in a tab that is not shown when the page loads ignores `stream_every` (0.1 s pieces) and
  drops and reorders pieces; mounted at load it sends every 0.5 s, in order. Hence Live is the first tab.
* A `.stream` event holds its worker for the whole recording (up to `time_limit`): one live session at a time,
  which is all a small CPU keeps up with; the next one waits.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import time
import warnings
from collections import deque
from pathlib import Path

import gradio as gr
import numpy as np
import soundfile as sf
import torch

import fuse_hf
from fuse_hf.audio import load_audio
from fuse_hf.commands.stream import float_to_int16, pcm16_to_float
from fuse_hf.hub import DEFAULT_MODEL_NAME, RandomWeightsWarning, load_pipeline
from fuse_hf.pipelines.pipeline_fuse import FUSEPipeline
from fuse_hf.pipelines.streaming import FUSEStream
from fuse_hf.plotting import plot_spectrograms

MAX_SECONDS = 60.0
EXAMPLES_DIR = Path(fuse_hf.__file__).resolve().parent / "assets"
EXAMPLE_FILE = EXAMPLES_DIR / "noisy_speech.wav"

LIVE_WINDOWS = (0.5, 1.0, 2.04)  # s; 2.04 is fuse-small's trained window, shorter ones answer sooner
LIVE_DEFAULT_WINDOW = 1.0
LIVE_DEFAULT_STEPS = 1  # keeps up in real time on a 2-core CPU, and scored as well as 6 on unseen speakers
LIVE_SEED = 0
LIVE_CHUNK_SECONDS = 0.5  # how often the browser sends the microphone (Gradio's stream_every)
LIVE_TIME_LIMIT = 60  # s of one recording: the next live session waits for this one
LIVE_IDLE_SECONDS = 10.0  # no microphone chunk for this long: the recording ended without a stop (tab closed)
# (before the first chunk the wait is LIVE_TIME_LIMIT: the browser may be asking for the microphone)
LIVE_MIC_RATE = 48000  # what browsers record at, for the latency shown before a recording starts


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
    pcm = float_to_int16(audio)
    return pcm[:, 0] if pcm.shape[1] == 1 else pcm


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


# --------------------------------------------------------------------------------------------- live tab


class LiveSession:
    """One recording on the Live tab: its push-mode `FUSEStream` (made at the first chunk, which gives the rate)
    and the enhanced audio not played yet.

    Gradio runs the microphone ticks, the stop and the player in worker threads of their own: the lock keeps
    `push` and `finish` apart, and `ready` (a deque) is appended to and popped from across threads.
    """

    def __init__(self, steps: int, window_seconds: float):
        self.steps, self.window_seconds = int(steps), float(window_seconds)
        self.stream: FUSEStream | None = None
        self.rate: int | None = None
        self.ready: deque[np.ndarray] = deque()  # enhanced `(channels, samples)` float32, in order
        self.done = False  # set after the last enhanced audio is in `ready`
        self.lock = threading.Lock()
        self.last_chunk = time.monotonic()
        self.seconds = self.compute = 0.0  # audio received and time spent enhancing it, for the status line
        self.error: str | None = None

    def make_stream(self, rate: int) -> FUSEStream:
        return PIPE.stream(
            None,
            rate,
            num_inference_steps=self.steps,
            window_seconds=self.window_seconds,
            generator=torch.Generator().manual_seed(LIVE_SEED),
        )


def mic_to_float(pcm: np.ndarray) -> np.ndarray:
    """Gradio's microphone chunk, int16 `(samples,)` or `(samples, channels)` -> float32 `(channels, samples)`."""
    if pcm.dtype != np.int16:
        raise gr.Error(f"The microphone sent {pcm.dtype} samples; this demo reads 16-bit ones.")
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    return pcm16_to_float(np.ascontiguousarray(pcm, "<i2").tobytes(), channels)


def wav_bytes(audio: np.ndarray, rate: int) -> bytes:
    """Float `(channels, samples)` -> a 16-bit WAV file in memory: what Gradio streams best (no re-normalising)."""
    buffer = io.BytesIO()
    sf.write(buffer, to_int16(audio), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def live_latency(window_seconds: float, rate: int = LIVE_MIC_RATE) -> str:
    """The Live tab's latency line for a window length (no audio is enhanced to work it out)."""
    algorithmic = PIPE.stream(None, rate, window_seconds=float(window_seconds)).latency_seconds
    return (
        f"**Latency:** the enhanced audio trails your voice by about one window ({algorithmic:.2f} s with "
        f"{float(window_seconds):g} s windows) plus the time to enhance it, plus Gradio's transport: "
        f"{LIVE_CHUNK_SECONDS:g} s microphone chunks and 1-2 s of player buffer (about 3 s in all with 1 s windows)."
    )


def live_start(steps: float, window_seconds: float, previous: LiveSession | None) -> tuple[LiveSession, str]:
    """`start_recording`: a fresh session for every recording (the previous one's player is told to stop)."""
    if previous is not None:
        previous.done = True
    return LiveSession(int(steps), float(window_seconds)), "Recording..."


def live_chunk(chunk: tuple[int, np.ndarray] | None, session: LiveSession | None) -> LiveSession | None:
    """`stream` tick: pushes one microphone chunk into the session's stream; what is enhanced waits for the player.
    Chunks after the session ended (a late tick after stop or a failure) are dropped."""
    if chunk is None or session is None or session.done:
        return session
    session.last_chunk = time.monotonic()  # before the lock: a long window in progress is not silence
    rate, pcm = chunk
    audio = mic_to_float(np.asarray(pcm))
    with session.lock:
        if session.done:
            return session
        start = time.perf_counter()
        try:
            if session.stream is None:
                session.stream, session.rate = session.make_stream(int(rate)), int(rate)
            elif int(rate) != session.rate:
                raise ValueError(f"the microphone changed its rate from {session.rate} to {rate} Hz mid-recording.")
            session.ready.extend(session.stream.push(audio))
        except ValueError as err:
            session.error, session.done = str(err), True
            raise gr.Error(f"Live enhancement stopped: {err}") from None
        session.compute += time.perf_counter() - start
        session.seconds += audio.shape[1] / session.rate
        session.last_chunk = time.monotonic()
    return session


def finish_session(session: LiveSession) -> None:
    """Flushes the last window into `ready`, then marks the session done (in that order: the player reads `done`
    before `ready`, so it cannot stop between the two)."""
    with session.lock:
        if session.done:
            return
        start = time.perf_counter()
        try:
            if session.stream is not None:
                session.ready.extend(session.stream.finish())
        except ValueError as err:  # e.g. a recording of a few milliseconds
            session.error = str(err)
        session.compute += time.perf_counter() - start
        session.done = True


def live_status(session: LiveSession | None) -> str:
    if session is None:
        return ""
    if session.error:
        return f"Live enhancement stopped: {session.error}"
    if session.stream is None:
        return "No audio was recorded."
    factor = session.compute / max(session.seconds, 1e-9)
    return (
        f"Enhanced {session.seconds:.1f} s at {session.rate} Hz in {session.compute:.1f} s of compute "
        f"({factor:.2f}x real time{'' if factor < 1 else ': too slow to keep up, use fewer steps or 1 s windows'})."
    )


def live_stop(session: LiveSession | None) -> tuple[LiveSession | None, str]:
    """`stop_recording`: the input ended; the last window goes to the player, which then ends."""
    if session is not None:
        finish_session(session)
    return session, live_status(session)


def live_output(session: LiveSession | None, poll_seconds: float = 0.05):
    """The player's generator, one run per recording: WAV bytes of everything enhanced so far, whenever there is
    some, until the session is done. A recording that stops sending (tab closed, time limit) is finished after
    `LIVE_IDLE_SECONDS`; one that never sent anything (microphone refused) after `LIVE_TIME_LIMIT`."""
    if session is None:
        return
    while True:
        quiet = LIVE_IDLE_SECONDS if session.stream is not None else LIVE_TIME_LIMIT
        done = session.done  # read before `ready`: see finish_session
        if session.ready:
            pieces = [session.ready.popleft() for _ in range(len(session.ready))]
            yield wav_bytes(np.concatenate(pieces, axis=1), session.rate)  # mic_to_float gives 2-D: so does it
        elif done:
            return
        elif time.monotonic() - session.last_chunk > quiet:
            finish_session(session)
        else:
            time.sleep(poll_seconds)


def end_session(session: LiveSession | None) -> None:
    """The browser went away (Gradio deletes the session's state): stop its player."""
    if session is not None:
        session.done = True


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="FUSE speech enhancement") as demo:
        gr.Markdown(
            "# FUSE speech enhancement\n"
            "Latent diffusion guided by BEATs features ([paper](https://arxiv.org/abs/2406.07646), "
            "[fuse-hf](https://github.com/fuse-hf/fuse-hf)). Speak into the microphone on the **Live** tab and hear "
            f"it enhanced as you go, or upload or record noisy speech (up to {MAX_SECONDS:.0f} s, any sample rate, "
            f"mono or stereo) on the **File** tab and press **Enhance**. Model: `{MODEL_NAME}`."
        )
        if MODEL_WARNING:
            gr.Markdown(f"⚠️ **Warning:** {MODEL_WARNING}", elem_id="model-warning")
        with gr.Tab("Live (microphone)", id="live"):
            gr.Markdown(
                "Press record, speak, and hear it enhanced as you go (headphones avoid feedback); stop to hear the "
                "last window. Each recording is enhanced window by window with `pipe.stream` (seed 0), up to "
                f"{LIVE_TIME_LIMIT} s, one live session at a time. Browsers clean the microphone themselves (noise "
                "suppression, echo cancellation) before the page gets it: for FUSE on its own, use the File tab."
            )
            with gr.Row():
                with gr.Column():
                    mic = gr.Audio(
                        sources=["microphone"], streaming=True, type="numpy", label="Microphone", elem_id="live-mic"
                    )
                    live_steps = gr.Slider(
                        1,
                        6,
                        value=LIVE_DEFAULT_STEPS,
                        step=1,
                        label="Diffusion steps",
                        info="1 keeps up in real time on a 2-core CPU (and scored as well as 6); more may fall behind",
                        elem_id="live-steps",
                    )
                    live_window = gr.Radio(
                        list(LIVE_WINDOWS),
                        value=LIVE_DEFAULT_WINDOW,
                        label="Window (s)",
                        info="shorter: lower latency, more work per second; 2.04 s is the trained window",
                        elem_id="live-window",
                    )
                with gr.Column():
                    live_out = gr.Audio(
                        streaming=True,
                        autoplay=True,
                        interactive=False,
                        label="Enhanced (live)",
                        elem_id="live-enhanced",
                    )
                    latency = gr.Markdown(live_latency(LIVE_DEFAULT_WINDOW), elem_id="live-latency")
                    status = gr.Markdown("", elem_id="live-status")
            session = gr.State(None, delete_callback=end_session)
            private = dict(api_visibility="private", show_progress="hidden")
            # One player run per recording, for as long as it has audio to play (see the module docstring).
            mic.start_recording(live_start, [live_steps, live_window, session], [session, status], **private).then(
                live_output, [session], [live_out], concurrency_limit=None, **private
            )
            mic.stream(
                live_chunk,
                [mic, session],
                [session],
                stream_every=LIVE_CHUNK_SECONDS,
                time_limit=LIVE_TIME_LIMIT,
                concurrency_limit=1,
                **private,
            )
            mic.stop_recording(live_stop, [session], [session, status], **private)
            live_window.change(live_latency, [live_window], [latency], **private)
        with gr.Tab("File", id="file"):
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
