"""[`FUSEPipeline.stream`]: enhancement of audio that arrives in chunks, window by window as it comes in.

The stream cuts, enhances and cross-fades the same windows as [`FUSEPipeline.__call__`] (placed by
`fuse_hf.windows.StreamingWindows`), starts each from the same slice of the same noise field (`LatentNoise`),
enhances it with the same method (`FUSEPipeline.enhance_windows`) and resamples and post-processes with the same
functions, run piece by piece (`StreamingResampler`, `HighBandCarrier`, `limit_attenuation`, `as_output`): its
chunks put together equal `__call__`'s output on the same input and seed, bit for bit where both batch the UNet
alike (`batch_size=1` in both, or mono audio and a `__call__` `batch_size` of 1), within float rounding otherwise.
The one difference is the peak limiter (`RunningPeakLimiter`): `__call__` turns the whole clip down when it would
clip; a stream can only turn down what it has not given out yet.

A stream either pulls its chunks from an iterable (iterate it) or is pushed them one call at a time (`chunks=None`:
`push` and `finish`), for handlers that get one chunk per call and must return at once (Gradio, websockets). Both
run the same generator: in push mode it reads from a queue and hands back a private marker when the queue is empty.

Imports only torch, numpy, diffusers and fuse_hf's array modules, so that it travels with the pipeline as Hub
remote code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from diffusers.utils import logging

from ..audio import (
    RunningPeakLimiter,
    StreamingResampler,
    as_channels_first,
    check_sampling_rate,
    limit_attenuation,
)
from ..spectral import DEFAULT_MAX_GAIN_DB
from ..windows import StreamingWindows
from .clips import as_output, check_length
from .fullband import HighBandCarrier, check_full_band, uses_full_band
from .noise import DEFAULT_NOISE_SCALE, LatentNoise

logger = logging.get_logger(__name__)

__all__ = ["FUSEStream", "FUSEStreamingMixin"]

# What the stream's generator yields in push mode when it has used up the chunks pushed so far: `push` collects the
# enhanced chunks before it and returns them (a generator cannot wait for input without blocking or a thread).
_NEEDS_INPUT = object()


class FUSEStreamingMixin:
    """Gives [`FUSEPipeline`] its `stream` method (kept here, beside the stream it makes)."""

    def stream(
        self,
        chunks: Iterable[np.ndarray | torch.Tensor] | None,
        sampling_rate: int,
        num_inference_steps: int = 6,
        guidance_scale: float = 1.0,
        noise_scale: float = DEFAULT_NOISE_SCALE,
        attenuation_limit_db: float | None = None,
        max_gain_db: float | None = DEFAULT_MAX_GAIN_DB,
        generator: torch.Generator | None = None,
        window_seconds: float | None = None,
        overlap_seconds: float | None = None,
        batch_size: int = 8,
        output_type: str = "np",
        full_band: bool | None = None,
    ) -> FUSEStream:
        r"""Enhances audio that arrives in chunks (a microphone, a network stream, a file read piece by piece),
        giving out each enhanced chunk as soon as the windows under it are done.

        The chunks put together equal `__call__` on the whole input with the same arguments and seed (bit for
        bit where both batch the UNet alike, e.g. mono input and `batch_size=1` in `__call__`; within float
        rounding otherwise), except where the output would clip: `__call__` turns the whole clip down, a stream
        only what it has not given out yet. The output trails the input by about one window (`window_seconds`,
        the algorithmic latency: `FUSEStream.latency_seconds`) plus the time to enhance a window; memory stays at a
        few windows whatever the length.

        ```py
        for enhanced in pipe.stream(microphone_chunks(), sampling_rate=16000, window_seconds=0.5):
            speaker.write(enhanced)  # (samples,) float32, as soon as it is ready
        ```

        Push mode, for a handler called once per chunk that must return what is ready without waiting:

        ```py
        stream = pipe.stream(None, sampling_rate=48000, window_seconds=1.0)
        def on_chunk(chunk):  # each call returns at once, with 0 or more enhanced chunks
            return stream.push(chunk)
        tail = stream.finish()  # the input ended: the rest of the output
        ```

        Args:
            chunks (iterable of `np.ndarray` or `torch.Tensor`, or `None`):
                Float samples in [-1, 1], each `(samples,)` or `(channels, samples)` with the layout and channel
                count of the first, of any length (empty ones are skipped). Read lazily, one chunk at a time. None:
                push mode, the chunks are given with `FUSEStream.push` and the end with `FUSEStream.finish`.
            sampling_rate (`int`): of the chunks, in Hz; the output has the same.
            num_inference_steps, guidance_scale, noise_scale, attenuation_limit_db, max_gain_db, generator,
            batch_size, output_type: as in `__call__` (one `torch.Generator`; `batch_size` caps the channels of a
                window that share a UNet pass).
            window_seconds (`float`, *optional*): window length (default: the trained one, 2.04 s for fuse-small),
                rounded to whole latent blocks (256 ms steps for fuse-small). Shorter windows lower the latency and
                cost more windows per second; the model was trained on the default.
            overlap_seconds (`float`, *optional*): cross-fade between windows (default: 1/32 of the window).
            full_band (`bool`, *optional*): as in `__call__` (default: on above the model's rate); it adds
                `HighBandCarrier.latency_samples` (37 ms at 48 kHz) to the latency.

        Returns:
            [`FUSEStream`]: an iterator of enhanced chunks (push mode: `push` and `finish` return lists of them),
            each `(samples,)` or `(channels, samples)` like the input, float32 at `sampling_rate`, numpy or torch
            (`output_type`).

        Raises:
            ValueError: at once, a bad setting; while iterating (push mode: in `push` or `finish`), a bad chunk
                (wrong rank, NaN or Inf, a channel count other than the first chunk's) named by its index, or a
                stream too short to enhance.
        """
        self.check_settings(
            num_inference_steps, guidance_scale, noise_scale, attenuation_limit_db, batch_size, output_type, max_gain_db
        )
        check_sampling_rate(sampling_rate)
        check_full_band(full_band)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be one torch.Generator for a stream, got {type(generator).__name__}.")
        return FUSEStream(
            self,
            chunks,
            int(sampling_rate),
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            noise_scale=noise_scale,
            attenuation_limit_db=attenuation_limit_db,
            max_gain_db=max_gain_db,
            generator=generator,
            window_seconds=window_seconds,
            overlap_seconds=overlap_seconds,
            batch_size=batch_size,
            output_type=output_type,
            full_band=full_band,
        )


class FUSEStream(Iterator):
    """The iterator [`FUSEPipeline.stream`] returns: enhanced chunks, each as soon as the input has moved on far
    enough that no later window changes it.

    Pulls input chunks from the iterable it was given only as it needs them, and keeps only what a pending window
    needs: about two windows of input and output, whatever the stream's length (`buffered_samples`).

    Made with `chunks=None` it is a push-mode stream instead: not iterated, but given each chunk with `push` (which
    returns the enhanced chunks ready now) and told the input ended with `finish` (which returns the rest).

    Attributes:
        sampling_rate (`int`): of the input and the output, in Hz.
        window_seconds, overlap_seconds (`float`): the windows used (rounded to whole latent frames).
        latency_seconds (`float`): the algorithmic latency: how far the output trails the input, at most, before
            the time to enhance a window (plus a few milliseconds of resampler delay at rates other than the
            model's).
    """

    def __init__(
        self,
        pipe,
        chunks: Iterable | None,
        sampling_rate: int,
        *,
        num_inference_steps: int,
        guidance_scale: float,
        noise_scale: float,
        attenuation_limit_db: float | None,
        generator,
        max_gain_db: float | None = DEFAULT_MAX_GAIN_DB,
        window_seconds: float | None,
        overlap_seconds: float | None,
        batch_size: int,
        output_type: str,
        full_band: bool | None = None,
    ):
        self.pipe = pipe
        self.sampling_rate = sampling_rate
        self._window, self._stride = pipe._window_geometry(window_seconds, overlap_seconds)
        model_rate = pipe.sampling_rate
        self.window_seconds = self._window / model_rate
        self.overlap_seconds = (self._window - self._stride) / model_rate
        self.latency_seconds = (self._window + pipe._latent_hop) / model_rate
        self._full_band = uses_full_band(full_band, sampling_rate, model_rate)
        self._high_band = None  # the HighBandCarrier, made with the first chunk
        if self._full_band:
            self.latency_seconds += HighBandCarrier(sampling_rate, 1).latency_samples / sampling_rate
        self._settings = dict(
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, max_gain_db=max_gain_db
        )
        self._noise_scale, self._attenuation_limit_db = noise_scale, attenuation_limit_db
        self._generator, self._batch_size, self._output_type = generator, batch_size, output_type
        self._width = pipe._latent_width(self._window)
        # Push mode: chunks wait in `_queue` for the generator; `_ended` once finish()/close() ran or it failed.
        self._queue = deque() if chunks is None else None
        self._ended = False
        self._chunks = self._pushed() if chunks is None else iter(chunks)
        self._was_1d = self._channels = None
        self._windows = self._noise = self._to_model = self._from_model = None
        self._limiter = RunningPeakLimiter()
        self._warned_gain = 1.0
        self._received = 0  # input samples (per channel) pulled so far
        self._given = 0  # output samples given out so far
        self._passed = 0  # output samples passed on to the full-band stage (== _given without it)
        self._original = np.zeros((0, 0), np.float32)  # input not yet given out, kept to mix back
        self._held = np.zeros((0, 0), np.float32)  # resampled output waiting for its input to arrive
        self._run = self._generate()

    # ---------------------------------------------------------------------------------------------- iterator

    def __iter__(self) -> FUSEStream:
        return self

    def __next__(self) -> np.ndarray | torch.Tensor:
        if self._queue is not None:
            raise TypeError("this stream is in push mode (made with chunks=None): use push() and finish(), not next().")
        return next(self._run)

    def close(self) -> None:
        """Stops the stream (the chunks iterable is not closed)."""
        self._ended = True
        self._run.close()

    # ---------------------------------------------------------------------------------------------- push mode

    def push(self, chunk: np.ndarray | torch.Tensor) -> list[np.ndarray | torch.Tensor]:
        """Push mode: gives the stream its next input chunk and returns the enhanced chunks that are ready now.

        Args:
            chunk: float samples in [-1, 1], `(samples,)` or `(channels, samples)` at `sampling_rate` with the
                layout and channel count of the first chunk, of any length (an empty one returns `[]`).

        Returns:
            Enhanced chunks, each `(samples,)` or `(channels, samples)` like the input (`output_type`); often `[]`:
            output trails the input by about a window (`latency_seconds`). Enhances every window the chunk completes
            before returning.

        Raises:
            TypeError: the stream pulls from an iterable (made with chunks); iterate it instead.
            ValueError: after `finish`, `close` or an error; or a bad chunk, as while iterating.
        """
        self._check_push("push")
        self._queue.append(chunk)
        return self._drain()

    def finish(self) -> list[np.ndarray | torch.Tensor]:
        """Push mode: the input has ended; enhances the last windows and returns the rest of the output (together
        with everything `push` returned: as long as the input).

        Raises:
            TypeError: the stream pulls from an iterable.
            ValueError: called twice, or after `close` or an error; no audio was pushed ("the stream held no
                audio"), or too little to enhance, as while iterating.
        """
        self._check_push("finish")
        self._ended = True
        return self._drain()

    def _check_push(self, method: str) -> None:
        if self._queue is None:
            raise TypeError(
                f"{method}() is for push-mode streams (made with pipe.stream(None, ...)); this one reads the chunks "
                "iterable it was given: iterate it."
            )
        if self._ended:
            raise ValueError(
                f"{method}() after the stream ended (finish(), close() or an error); start a new one with "
                "pipe.stream(None, ...)."
            )

    def _pushed(self) -> Iterator:
        """The chunks pushed so far, then `_NEEDS_INPUT` whenever there are none left (until `finish`)."""
        while True:
            if self._queue:
                yield self._queue.popleft()
            elif self._ended:
                return
            else:
                yield _NEEDS_INPUT

    def _drain(self) -> list:
        """Runs the generator until it needs input (or ends): the enhanced chunks it gave out on the way."""
        out = []
        try:
            for piece in self._run:
                if piece is _NEEDS_INPUT:
                    break
                out.append(piece)
        except BaseException:
            self._ended = True  # the generator is dead: a later push must not look like a stream with nothing ready
            raise
        return out

    @property
    def buffered_samples(self) -> int:
        """Samples per channel the stream holds: input kept for windows still to come and enhanced windows not given
        out (at the model's rate), plus input and output waiting at the input's rate. Bounded by a few windows."""
        held = self._original.shape[1] + self._held.shape[1]
        return held + (self._windows.buffered_samples if self._windows is not None else 0)

    @property
    def noise_frames(self) -> int:
        """Latent frames of initial noise held (bounded: blocks behind the current window are freed)."""
        return self._noise.held_frames if self._noise is not None else 0

    # ---------------------------------------------------------------------------------------------- input

    def _check_chunk(self, chunk, index: int) -> np.ndarray | None:
        """`(channels, samples)` float32 of chunk `index`, or None for an empty one; a one-line ValueError naming the
        chunk for a bad one."""
        if isinstance(chunk, torch.Tensor):
            chunk = chunk.detach().cpu().float().numpy()
        elif not isinstance(chunk, np.ndarray):
            raise ValueError(f"chunk {index}: must be a numpy array or a torch tensor, got {type(chunk).__name__}.")
        if chunk.ndim not in (1, 2):
            raise ValueError(
                f"chunk {index}: must be 1-D (samples,) or 2-D (channels, samples), got shape {tuple(chunk.shape)}."
            )
        channels = 1 if chunk.ndim == 1 else chunk.shape[0]
        if self._was_1d is not None and ((chunk.ndim == 1) != self._was_1d or channels != self._channels):
            raise ValueError(
                f"chunk {index}: has shape {tuple(chunk.shape)}, but the stream started with "
                f"{'1-D mono chunks' if self._was_1d else f'{self._channels} channel(s)'}; every chunk must have "
                "the layout and channel count of the first."
            )
        if chunk.shape[-1] == 0:
            return None
        try:
            audio = as_channels_first(chunk)
        except ValueError as err:
            raise ValueError(f"chunk {index}: {err}") from None
        if self._was_1d is None:
            self._start(chunk.ndim == 1, audio.shape[0])
        return audio

    def _start(self, was_1d: bool, channels: int) -> None:
        """Sets the stream up for the layout of its first chunk."""
        pipe = self.pipe
        self._was_1d, self._channels = was_1d, channels
        self._windows = StreamingWindows(self._window, self._stride, pipe._latent_hop, channels)
        self._noise = LatentNoise.for_pipeline(pipe, channels, self._generator)
        self._to_model = StreamingResampler(self.sampling_rate, pipe.sampling_rate, channels)
        self._from_model = StreamingResampler(pipe.sampling_rate, self.sampling_rate, channels)
        self._original = np.zeros((channels, 0), np.float32)
        self._held = np.zeros((channels, 0), np.float32)
        if self._full_band:
            self._high_band = HighBandCarrier(self.sampling_rate, channels)

    # ---------------------------------------------------------------------------------------------- work

    def _generate(self) -> Iterator:
        index = -1
        for chunk in self._chunks:
            if chunk is _NEEDS_INPUT:  # push mode, the queue is empty: back to `push`, resumed by the next one
                yield chunk
                continue
            index += 1
            audio = self._check_chunk(chunk, index)
            if audio is None:
                continue
            self._received += audio.shape[1]
            if self._attenuation_limit_db is not None or self._full_band:
                self._original = np.concatenate([self._original, audio], axis=1)
            yield from self._push(self._to_model(audio))
        if self._windows is None:
            raise ValueError("the stream held no audio: no chunk had samples.")
        yield from self._push(self._to_model(np.zeros((self._channels, 0), np.float32), last=True))
        check_length(self._received, self.sampling_rate, self._windows.received, self.pipe.sampling_rate)
        for start, samples in self._windows.finish():
            self._enhance(start, samples)
        yield from self._give(self._windows.pop_ready(), last=True)
        self.pipe.maybe_free_model_hooks()

    def _push(self, audio: np.ndarray) -> Iterator:
        """Model-rate input -> enhanced output, a stride at a time so that a long chunk does not pile up."""
        for first in range(0, audio.shape[1], self._stride):
            for start, samples in self._windows.push(audio[:, first : first + self._stride]):
                self._enhance(start, samples)
            yield from self._give(self._windows.pop_ready())

    def _enhance(self, start: int, samples: np.ndarray) -> None:
        """Enhances the window at `start` (`(channels, window)` samples, every channel in UNet batches of
        `batch_size`) and gives it to the overlap-add."""
        pipe = self.pipe
        offset = start // pipe._latent_hop
        device, dtype = pipe._execution_device, pipe.unet.dtype
        noise = self._noise.frames(offset, offset + self._width).to(device=device, dtype=dtype) * self._noise_scale
        self._noise.forget(offset)  # later windows start further on
        with torch.no_grad():
            timesteps = pipe._prepare_run(device=device, **self._settings)
            pieces = [
                pipe.enhance_windows(
                    torch.from_numpy(samples[first : first + self._batch_size]),
                    noise[first : first + self._batch_size].contiguous(),
                    timesteps,
                    self._generator,
                )
                for first in range(0, samples.shape[0], self._batch_size)
            ]
        self._windows.add(start, np.concatenate(pieces))

    # ---------------------------------------------------------------------------------------------- output

    def _give(self, enhanced: np.ndarray, last: bool = False) -> Iterator:
        """Model-rate output -> the input's rate, length and layout, mixed back and limited as `__call__` does."""
        self._held = np.concatenate([self._held, self._from_model(enhanced, last=last)], axis=1)
        count = self._received - self._passed  # never past the input received (the resampler's tail is cut off)
        if last and self._held.shape[1] < count:  # as `__call__` pads a resampled output that came out short
            self._held = np.pad(self._held, ((0, 0), (0, count - self._held.shape[1])))
        count = min(count, self._held.shape[1])
        out, self._held = self._held[:, :count], self._held[:, count:]
        self._passed += count
        if self._high_band is not None:  # gives out fewer samples: the gain of a frame looks a few frames ahead
            behind = self._passed - count - self._given  # input samples the full-band stage holds
            out = self._high_band(self._original[:, behind : behind + count], out, last=last)
            count = out.shape[1]
        if count == 0:
            return
        if self._attenuation_limit_db is not None:
            out = limit_attenuation(out, self._original[:, :count], self._attenuation_limit_db)
        self._original = self._original[:, count:]
        out = self._limiter(out)
        if self._limiter.gain < self._warned_gain * 0.99:
            self._warned_gain = self._limiter.gain
            logger.warning(
                f"The enhanced audio peaked above 0 dBFS; scaled it by {20 * np.log10(self._warned_gain):.1f} dB "
                "from here on (what the stream gave out before cannot be turned down)."
            )
        self._given += count
        yield as_output(out, self._was_1d, self._output_type)
