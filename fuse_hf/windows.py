"""Windows for long audio: how long they are, where each starts, how neighbours cross-fade, mirror padding, and
all of it for a signal that arrives in pieces (`StreamingWindows`).

Pure numpy functions of sample counts; the pipeline cuts a clip into windows of about the length the model was
trained on (fitted to the clip, or another: `window_geometry`), enhances them in batches and puts them back with
these weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def window_starts(num_samples: int, window: int, stride: int, align: int = 1) -> list[int]:
    """Start samples of windows of `window` samples that cover `num_samples`.

    Windows start every `stride` samples; the last one is moved back so that it ends at the signal's end (rounded
    up to a multiple of `align`), rather than running past it into padding: a model that never saw digital
    silence in training should not be asked to enhance half a window of it.
    """
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window, stride))
    last = int(math.ceil((num_samples - window) / align) * align)
    if last > starts[-1]:
        starts.append(last)
    return starts


def crossfade_weights(window: int, fade_in: int, fade_out: int) -> np.ndarray:
    """Per-sample weights of one window for overlap-add: raised-cosine ramps over its first `fade_in` and last
    `fade_out` samples (its overlaps with the previous and the next window; 0 for none).

    Two neighbours ramp over the same overlap in opposite directions and sum to one, so a signal cut into
    windows and put back is unchanged.
    """
    weights = np.ones(window, dtype=np.float32)
    for length, at_start in ((fade_in, True), (fade_out, False)):
        if length > 0:
            ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(length, dtype=np.float64) + 0.5) / length)
            if at_start:
                weights[:length] *= ramp.astype(np.float32)
            else:
                weights[-length:] *= ramp[::-1].astype(np.float32)
    return weights


def overlaps(starts: Sequence[int], window: int) -> list[tuple[int, int]]:
    """`(fade_in, fade_out)` in samples of each window: how much it overlaps its previous and next neighbour."""
    return [
        (
            max(0, starts[k - 1] + window - start) if k > 0 else 0,
            max(0, start + window - starts[k + 1]) if k + 1 < len(starts) else 0,
        )
        for k, start in enumerate(starts)
    ]


def pad_reflect(audio: np.ndarray, length: int) -> np.ndarray:
    """Extends `(..., samples)` to `length` samples by mirroring the signal (noise continues as noise, which a
    model treats more gracefully than a jump to digital silence)."""
    missing = length - audio.shape[-1]
    if missing <= 0:
        return audio[..., :length]
    mode = "symmetric" if audio.shape[-1] > 1 else "edge"
    return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, missing)], mode=mode)


class StreamingWindows:
    """`window_starts`, `overlaps` and the cross-faded overlap-add of the pipeline, for a signal that arrives in
    pieces and whose length is known only when it ends.

    `push` takes the next input samples and returns the windows whose samples are all in; `add` takes each one
    back enhanced; `pop_ready` gives out the output samples that no later window can change; `finish` (at the end
    of the input) returns the last window, aligned to the end as `window_starts` places it. The concatenated
    output equals overlap-adding the same enhanced windows over the whole signal with `crossfade_weights` and
    `overlaps`, sample for sample (the same float32 products, summed in the same window order).

    Placement: window `k` starts at `k * stride` and is known to be one of the signal's windows as soon as its
    `window` samples are in. The last window, moved back to end at the signal's end, can start anywhere from
    `ceil((received - window) / align) * align` on, so output stops there until the input has moved on (or ended):
    the output trails the input by about one window, the algorithmic latency.

    Memory: the input kept is what a later window may still need (at most `window` samples after `push`), plus the
    enhanced windows that still overlap samples not yet given out (at most ``window / stride + 1`` windows).

    Args:
        window, stride, align: as in `window_starts` (the pipeline's window length, stride and latent hop).
        channels: channels of every piece.
    """

    def __init__(self, window: int, stride: int, align: int = 1, channels: int = 1):
        if not 0 < stride <= window:
            raise ValueError(f"stride must be in (0, window], got stride {stride} for window {window}.")
        self.window, self.stride, self.align, self.channels = window, stride, align, channels
        self.received = 0  # input samples pushed so far
        self.emitted = 0  # output samples given out so far
        self.ended = False
        self._input = np.zeros((channels, 0), np.float32)  # input samples [_input_start, received)
        self._input_start = 0
        self._next = 0  # index k of the next regular window (starting at k * stride)
        self._starts: list[int] = []  # starts of the windows returned so far
        # Windows added and still overlapping samples not given out: start -> [fade_in, fade_out | None, enhanced].
        self._pending: dict[int, list] = {}

    @property
    def buffered_samples(self) -> int:
        """Samples per channel held: the input kept for later windows plus the enhanced windows pending."""
        return self._input.shape[1] + sum(entry[2].shape[1] for entry in self._pending.values())

    def _window_audio(self, start: int) -> np.ndarray:
        """`(channels, window)` input samples of the window at `start`, mirrored past the signal's end as
        `pad_reflect` does in the pipeline."""
        offset = start - self._input_start
        return pad_reflect(self._input[:, offset : offset + self.window], self.window).copy()

    def _next_start_bound(self) -> int:
        """A lower bound on the start of every window not yet returned: output before it is final."""
        if not self._starts:
            return 0
        last_possible = int(math.ceil((self.received - self.window) / self.align) * self.align)
        return max(self.emitted, min(self._next * self.stride, last_possible))

    def _returned(self, start: int, fade_in: int) -> tuple[int, np.ndarray]:
        if self._starts and self._starts[-1] in self._pending:  # its fade-out is its overlap with this window
            self._pending[self._starts[-1]][1] = self._starts[-1] + self.window - start
        self._pending[start] = [fade_in, None, None]
        self._starts.append(start)
        return start, self._window_audio(start)

    def push(self, audio: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Appends `(channels, samples)` input; returns `(start, (channels, window) samples)` of each window that is
        now complete, in order. Enhance each and give it back with `add` before calling `pop_ready`."""
        if self.ended:
            raise ValueError("the input has ended: push after finish.")
        self._input = np.concatenate([self._input, np.asarray(audio, np.float32)], axis=1)
        self.received += audio.shape[1]
        ready = []
        while self.received >= self._next * self.stride + self.window:
            start = self._next * self.stride
            ready.append(self._returned(start, self.window - self.stride if self._next else 0))
            self._next += 1
        self._trim_input()
        return ready

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """Ends the input; returns the windows still to enhance (`window_starts` of the whole signal past the ones
        already returned: the last window, aligned to the end, or the only one of a signal shorter than a window),
        and fixes every window's fades to `overlaps` of the whole signal."""
        if self.ended:
            return []
        self.ended = True
        if self.received == 0:
            return []
        starts = window_starts(self.received, self.window, self.stride, self.align)
        fades = dict(zip(starts, overlaps(starts, self.window)))
        for start, entry in self._pending.items():  # the last returned window's fade-out is known now
            entry[1] = fades[start][1]
        ready = []
        for start in starts:
            if not self._starts or start > self._starts[-1]:
                ready.append(self._returned(start, fades[start][0]))
                self._pending[start][1] = fades[start][1]
        self._trim_input()
        return ready

    def add(self, start: int, enhanced: np.ndarray) -> None:
        """Gives back the enhanced `(channels, window)` samples of the window returned at `start`."""
        if start not in self._pending or self._pending[start][2] is not None:
            raise ValueError(f"no window at {start} is waiting to be added.")
        self._pending[start][2] = np.asarray(enhanced, np.float32)

    def pop_ready(self) -> np.ndarray:
        """The output samples `(channels, samples)` that are final now, after those given out before (all of them,
        up to the signal's length, once the input has ended); possibly none."""
        end = self.received if self.ended else self._next_start_bound()
        if any(entry[2] is None for entry in self._pending.values()):
            raise ValueError("every window returned by push/finish must be added before pop_ready.")
        out = np.zeros((self.channels, max(0, end - self.emitted)), np.float32)
        for start in sorted(self._pending):
            fade_in, fade_out, enhanced = self._pending[start]
            lo, hi = max(start, self.emitted), min(start + self.window, end)
            if lo < hi:
                # Before the next window's start its fade-out is not in the weights, known yet or not.
                weights = crossfade_weights(self.window, fade_in, fade_out or 0)
                out[:, lo - self.emitted : hi - self.emitted] += (
                    weights[lo - start : hi - start] * enhanced[:, lo - start : hi - start]
                )
        self.emitted = max(self.emitted, end)
        self._pending = {s: e for s, e in self._pending.items() if s + self.window > self.emitted}
        return out

    def _trim_input(self) -> None:
        keep_from = self.received if self.ended else self._next_start_bound()
        if keep_from > self._input_start:
            self._input = self._input[:, keep_from - self._input_start :].copy()
            self._input_start = keep_from


FIT_TOLERANCE = 0.05  # a window shorter than the trained one must save more than this share of the computation


def window_geometry(
    trained_frames: int,
    hop: int,
    factor: int,
    multiple: int,
    sampling_rate: int,
    window_seconds: float | None = None,
    overlap_seconds: float | None = None,
    lengths: Sequence[int] | None = None,
) -> tuple[int, int]:
    """`(window_samples, stride_samples)` of the overlapping windows.

    Args:
        trained_frames: STFT frames of the window the UNet was trained on (the default length).
        hop: STFT hop in samples; factor: STFT frames per latent frame; multiple: window frames must be a multiple
            of this for the VAE and the UNet to round-trip shapes.
        sampling_rate: of the model, in Hz.
        window_seconds: another window length (the algorithmic latency of a stream), rounded to a whole
            `multiple` of frames (256 ms steps for fuse-small), at least one.
        overlap_seconds: the cross-fade between neighbours, rounded to whole latent frames, at least one; default
            1/32 of the window (8 frames, 64 ms for fuse-small's 2.04 s).
        lengths: without `window_seconds`, the clips' lengths in samples: the window is then fitted to them
            ([`fitted_window_frames`]) instead of being the trained one.

    Raises:
        ValueError: a window that is not a positive number of seconds, an overlap below 0 or above half the window.
    """
    frames = trained_frames
    if window_seconds is not None:
        if isinstance(window_seconds, bool) or not (math.isfinite(float(window_seconds)) and window_seconds > 0):
            raise ValueError(f"window_seconds must be a positive number of seconds, got {window_seconds!r}.")
        frames = max(multiple, round((window_seconds * sampling_rate / hop + 1) / multiple) * multiple)
    elif lengths is not None:
        frames = fitted_window_frames(lengths, trained_frames, hop, factor, multiple, overlap_seconds, sampling_rate)
    return _geometry(frames, hop, factor, sampling_rate, overlap_seconds)


def _geometry(frames: int, hop: int, factor: int, sampling_rate: int, overlap_seconds: float | None) -> tuple[int, int]:
    """`(window_samples, stride_samples)` of windows of `frames` STFT frames ([`window_geometry`])."""
    if overlap_seconds is None:
        # Windows are enhanced independently, so the overlap is pure cost: 1/32 of a window (8 frames, 64 ms for
        # fuse-small) is enough for the cross-fade, and lets a 4 s clip take 2 windows instead of 3 (with 1/8).
        overlap_frames = max(factor, (frames // 32) // factor * factor)
    else:
        if isinstance(overlap_seconds, bool) or not (math.isfinite(float(overlap_seconds)) and overlap_seconds >= 0):
            raise ValueError(f"overlap_seconds must be a number >= 0, got {overlap_seconds!r}.")
        overlap_frames = max(factor, round(overlap_seconds * sampling_rate / hop / factor) * factor)
    if overlap_frames > frames // 2:
        window = (frames - 1) * hop / sampling_rate
        raise ValueError(
            f"overlap_seconds {overlap_seconds} must be at most half the window ({window:.3f} s): each sample is "
            "cross-faded between two windows at most."
        )
    # A window of (frames - 1) hops yields exactly `frames` STFT frames with centred frames.
    return (frames - 1) * hop, (frames - overlap_frames) * hop


def fitted_window_frames(
    lengths: Sequence[int],
    trained_frames: int,
    hop: int,
    factor: int,
    multiple: int,
    overlap_seconds: float | None,
    sampling_rate: int,
) -> int:
    """STFT frames of the window, between half the trained one and the trained one (in steps of `multiple`), that
    covers clips of `lengths` samples with the fewest frames enhanced in all; the longest window within
    `FIT_TOLERANCE` of that fewest, since each window also has a fixed cost and the trained length is the model's own.

    Every window costs the networks in proportion to its length, and the trained window rarely divides a clip: a
    7 s clip takes four 2.04 s windows (8.2 s of work) but also four 1.78 s ones (7.1 s), and a 1.5 s clip is one
    window, of 2.04 s with half a second mirrored in or of 1.53 s. Windows down to half the trained length enhance
    as well as it (within 0.02 PESQ-WB and 0.001 ESTOI at 1.02 s on the stranger split,
    `benchmarks/results/streaming.md`).
    """
    if not lengths:
        return trained_frames
    shortest = max(multiple, math.ceil(trained_frames / 2 / multiple) * multiple)
    costs = {}
    for frames in range(trained_frames, shortest - 1, -multiple):
        try:
            window, stride = _geometry(frames, hop, factor, sampling_rate, overlap_seconds)
        except ValueError:
            if frames == trained_frames:
                raise
            break  # an overlap longer than half of this window, and of every shorter one
        costs[frames] = frames * sum(len(window_starts(n, window, stride, align=hop * factor)) for n in lengths)
    least = min(costs.values())
    return max(frames for frames, cost in costs.items() if cost <= least * (1 + FIT_TOLERANCE))
