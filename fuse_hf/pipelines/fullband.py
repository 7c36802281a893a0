"""Full-band output: the band above the model's Nyquist frequency (8 kHz for a 16 kHz model), carried over from the
input under a gain that follows what the model removed just below it.

The model enhances 0-8 kHz; resampled back to a 44.1 or 48 kHz input's rate its output rolls off from ~7.3 kHz and
holds nothing above 8 kHz. Here, in a short-time Fourier transform at the input's rate (Hann windows of ~21 ms, hop a
quarter of that, exact overlap-add), every frame of output is

    Y = w * E + (1 - w) * g * X

with `E` the enhanced audio, `X` the input, `w` a raised-cosine cross-over (1 below 6 kHz, 0 above 7 kHz, below the
resampler's roll-off; `w` and `1 - w` add up to 1, so where the model leaves a bin as it is nothing changes) and
`g = sqrt(smoothed energy of E / smoothed energy of X)` in the reference band 4-7 kHz, at most 1 (the high band is
never made louder than the input's). The model keeps the input's phase (its spectrograms are magnitudes), so `E` and
`X` add coherently across the cross-over: no phase step, and no level step where `g` matches the model's own gain.

The energies are smoothed over +-`SMOOTHING_FRAMES` frames, so a frame's gain needs that many frames of look-ahead:
[`HighBandCarrier`] runs the same frames on audio that arrives in pieces (what `FUSEPipeline.stream` uses) and gives
the same samples as [`carry_high_band`] on the whole, bit for bit, a fixed `latency_samples` later.

Imports only numpy, so that it travels with the pipeline as Hub remote code.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CROSSOVER_HZ",
    "REFERENCE_HZ",
    "HighBandCarrier",
    "band_energy",
    "carry_high_band",
    "check_full_band",
    "crossover_weights",
    "frame_length",
    "high_band_gain",
    "smoothing_weights",
    "uses_full_band",
]

CROSSOVER_HZ = (6000.0, 7000.0)  # below soxr HQ's roll-off from 16 kHz (flat to 7.3 kHz, -13 dB at 7.6 kHz)
REFERENCE_HZ = (4000.0, 7000.0)  # where the model's gain is read: its upper band, within the flat pass band
SMOOTHING_FRAMES = 3  # each side: +-16 ms at 48 kHz, enough to steady the gain, short enough to follow syllables
FRAME_SECONDS = 0.016  # the frame is the power of two at or above this: 1024 samples at 44.1 and 48 kHz
_BLOCK_FRAMES = 64  # frames analysed together at most: a block's spectra (stereo: ~2 MB) stay in the cache
_EPS = 1e-10  # energy (sum of squared rfft bins) under which a band counts as silent: its gain is 1


def uses_full_band(full_band: bool | None, sampling_rate: int, model_rate: int) -> bool:
    """Whether an input at `sampling_rate` Hz gets its high band back: `full_band` when given, else whether the input
    has a band above the model's (`sampling_rate > model_rate`). Never at or below the model's rate (nothing to
    carry)."""
    return full_band is not False and sampling_rate > model_rate


def check_full_band(full_band) -> None:
    """A one-line ValueError unless `full_band` is True, False or None."""
    if full_band is not None and not isinstance(full_band, (bool, np.bool_)):
        raise ValueError(f"full_band must be True, False or None, got {full_band!r}.")


def frame_length(sampling_rate: int) -> int:
    """STFT frame (samples) at `sampling_rate` Hz: the power of two at or above `FRAME_SECONDS` (1024 at 44.1 and 48
    kHz: bins of 43-47 Hz, so that the 1 kHz cross-over spans ~20 bins)."""
    return int(2 ** np.ceil(np.log2(FRAME_SECONDS * sampling_rate)))


def crossover_weights(n_fft: int, sampling_rate: int, crossover_hz: tuple[float, float] = CROSSOVER_HZ) -> np.ndarray:
    """Weights `(n_fft // 2 + 1,)` of the enhanced audio per rfft bin: 1 below `crossover_hz[0]`, 0 above
    `crossover_hz[1]`, a raised cosine between (smooth, so no ripple in time); the input's high band gets `1 - w`."""
    low, high = crossover_hz
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sampling_rate)
    position = np.clip((freqs - low) / (high - low), 0.0, 1.0)
    return 0.5 + 0.5 * np.cos(np.pi * position)


def band_energy(spectrum: np.ndarray, n_fft: int, sampling_rate: int, band_hz: tuple[float, float]) -> np.ndarray:
    """Energy in `band_hz` (Hz, low inclusive, high exclusive) of rfft frames `(..., n_fft // 2 + 1)` complex ->
    `(...)` float64: the sum of the band's squared magnitudes, added in bin order (a cumulative sum: one fixed order,
    so that a frame's energy has the same bits however many frames are computed together and however they lie in
    memory, which `np.sum`'s pairwise, layout-dependent order does not promise)."""
    first, stop = _band_bins(n_fft, sampling_rate, band_hz)
    return _squares_in_order(spectrum[..., first:stop])


def _squares_in_order(selected: np.ndarray) -> np.ndarray:
    """`(..., bins)` complex -> `(...)` float64: the sum of the squared magnitudes, added bin after bin."""
    if selected.shape[-1] == 0:
        return np.zeros(selected.shape[:-1])
    return np.add.accumulate(selected.real**2 + selected.imag**2, axis=-1)[..., -1]


def _band_bins(n_fft: int, sampling_rate: int, band_hz: tuple[float, float]) -> tuple[int, int]:
    """The rfft bins `[first, stop)` of `band_hz` (low inclusive, high exclusive) at `n_fft` and `sampling_rate`."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sampling_rate)
    first, stop = np.searchsorted(freqs, band_hz, side="left")
    return int(first), int(max(stop, first))


def smoothing_weights(frames: int = SMOOTHING_FRAMES) -> np.ndarray:
    """Hann-shaped weights `(2 * frames + 1,)` of the frames around the current one (summing to 1)."""
    weights = np.hanning(2 * frames + 3)[1:-1]
    return weights / weights.sum()


def high_band_gain(enhanced_energy, input_energy) -> np.ndarray:
    """Amplitude gain for the input's high band from the (smoothed) reference-band energies of the enhanced audio and
    of the input (any matching shapes): `sqrt(enhanced / input)`, at most 1; 1 where both are silent."""
    ratio = (np.asarray(enhanced_energy, np.float64) + _EPS) / (np.asarray(input_energy, np.float64) + _EPS)
    return np.sqrt(np.minimum(ratio, 1.0))


class HighBandCarrier:
    """Full-band output of audio given in pieces: input and enhanced audio `(channels, samples)` at the input's rate
    in, as many full-band samples out as are final (those `latency_samples` behind; the rest on `last=True`).

    Frames are hops of the padded signal (`n_fft - hop` zeros in front, so that every sample is under four frames);
    a frame is analysed once both signals reach its end, given its gain once `SMOOTHING_FRAMES` more frames are
    analysed (or the signal ended: the smoothing then averages over the frames there are), and added to the output.

    The work is vectorised over frames: the frames available are analysed together (blocks of up to `_BLOCK_FRAMES`,
    which bound the memory a long clip takes: one batched rfft of both signals, band energies for all), and those
    whose gain is known are smoothed, mixed, inverse-transformed in one batched irfft and overlap-added hop by hop. A
    frame's arithmetic is the same sequence of elementwise operations whatever the batch (band energies are added in
    bin order, the smoothing and the overlap-add add frames in frame order), so the samples are the same, bit for
    bit, however the audio was cut.

    Args:
        sampling_rate: of the input and enhanced audio, in Hz (above the model's; 44.1 and 48 kHz in mind).
        channels: of every piece; each channel gets its own gain.
    """

    def __init__(self, sampling_rate: int, channels: int):
        self.sampling_rate, self.channels = int(sampling_rate), int(channels)
        self.n_fft = frame_length(self.sampling_rate)
        self.hop = self.n_fft // 4
        self._window = np.hanning(self.n_fft + 1)[:-1]  # periodic Hann: its squares at hop n_fft/4 sum to 1.5
        self._synthesis_window = self._window / 1.5
        self._weights = crossover_weights(self.n_fft, self.sampling_rate)
        # Bins [0, low) take the enhanced audio alone (w = 1), bins [high, n_fft // 2 + 1) the input's (w = 0).
        low = int(np.sum(np.cumprod(self._weights == 1.0)))
        high = self._weights.size - int(np.sum(np.cumprod(self._weights[::-1] == 0.0)))
        self._crossover = (low, max(high, low))
        self._crossover_parts = np.repeat(self._weights[low : self._crossover[1]], 2)  # per interleaved (re, im)
        self._reference = _band_bins(self.n_fft, self.sampling_rate, REFERENCE_HZ)
        self._smoothing = smoothing_weights()
        lead, bins = self.n_fft - self.hop, self.n_fft // 2 + 1
        self._buffer = np.zeros((2, channels, lead))  # input and enhanced audio, padded, from frame `_analysed` on
        self._analysed = 0  # frames analysed
        self._done = 0  # frames synthesised
        # Spectra (input/enhanced, channels, frames, bins) of frames `_done` to `_analysed`, at the front.
        self._spectra = np.zeros((2, channels, SMOOTHING_FRAMES + _BLOCK_FRAMES, bins), complex)
        self._frames = np.zeros((2, channels, SMOOTHING_FRAMES + _BLOCK_FRAMES, self.n_fft))  # work space
        # (2 * channels + 1, frames) from frame `_done - SMOOTHING_FRAMES` to `_analysed`: reference-band energies of
        # the input's channels, of the enhanced audio's, and 1 (0 for the frames before the first, which add nothing).
        self._energies = np.zeros((2 * channels + 1, SMOOTHING_FRAMES))
        self._output = np.zeros((channels, lead))  # overlap-add partial sums of the 3 hops from frame `_done` on
        self._received = 0  # samples of each signal received
        self._given = -lead  # padded samples given out (the lead is cut)

    @property
    def latency_samples(self) -> int:
        """How far the output trails the input at most (samples at `sampling_rate`): a frame plus the smoothing's
        look-ahead."""
        return self.n_fft + SMOOTHING_FRAMES * self.hop

    def __call__(self, original: np.ndarray, enhanced: np.ndarray, last: bool = False) -> np.ndarray:
        """Takes the next `(channels, samples)` of the input and of its enhanced audio (equal lengths, possibly 0);
        returns the full-band samples now final, `(channels, samples')` float32 (all the rest when `last`)."""
        if original.shape != enhanced.shape or original.shape[0] != self.channels:
            raise ValueError(
                f"original {original.shape} and enhanced {enhanced.shape} must both be ({self.channels}, samples)."
            )
        self._received += original.shape[1]
        end, pad = None, 0
        if last:  # zeros after the end, so that the last samples are under four frames as well
            end = -(-(self._received + self.n_fft - self.hop) // self.hop)  # frames starting before the padded end
            pad = (end - 1 - self._analysed) * self.hop + self.n_fft - self._buffer.shape[2] - original.shape[1]
        incoming = _Incoming(original, enhanced, max(pad, 0))
        pieces = []
        while True:
            analysed = self._analyse(incoming, end)
            ended = end is not None and self._analysed >= end  # every frame there will be is analysed
            stop = self._analysed if ended else self._analysed - SMOOTHING_FRAMES
            if stop > self._done:
                pieces.append(self._give(self._synthesise(stop)))
            elif not analysed:
                break
        self._buffer = incoming.take(self._buffer.shape[2] + incoming.left, self._buffer)
        if not pieces:
            return np.zeros((self.channels, 0), np.float32)
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)

    def _give(self, hops: np.ndarray) -> np.ndarray:
        """The samples of `hops` `(channels, samples)` (padded samples from `_given` on) that are the input's: the
        leading zeros and the padding past its end cut, as float32."""
        first, stop = max(self._given, 0), min(self._given + hops.shape[1], self._received)
        out = hops[:, first - self._given : max(stop, first) - self._given].astype(np.float32)
        self._given += hops.shape[1]
        return out

    def _analyse(self, incoming: _Incoming, end: int | None) -> int:
        """STFT of the next frames both signals now cover (at most `_BLOCK_FRAMES`; up to frame `end` when the input
        has ended): their spectra and reference-band energies are kept. Returns how many frames."""
        available = self._buffer.shape[2] + incoming.left
        count = max((available - self.n_fft) // self.hop + 1, 0)
        count = min(count, _BLOCK_FRAMES, count if end is None else max(end - self._analysed, 0))
        if count == 0:
            return 0
        signal = incoming.take((count - 1) * self.hop + self.n_fft, self._buffer)
        self._buffer = signal[:, :, count * self.hop :]
        # (2, channels, count, n_fft) views of the frames, windowed into a new array: one batched rfft.
        step = signal.strides[2]
        frames = np.lib.stride_tricks.as_strided(
            signal,
            (*signal.shape[:2], count, self.n_fft),
            (*signal.strides[:2], self.hop * step, step),
            writeable=False,
        )
        pending = self._analysed - self._done
        windowed = np.multiply(frames, self._window, out=self._frames[:, :, :count])
        spectra = np.fft.rfft(windowed, axis=-1, out=self._spectra[:, :, pending : pending + count])
        energies = _squares_in_order(spectra[..., slice(*self._reference)])  # band_energy: (2, channels, count)
        new = np.concatenate([energies.reshape(2 * self.channels, count), np.ones((1, count))])
        self._energies = np.concatenate([self._energies, new], axis=1)
        self._analysed += count
        return count

    def _synthesise(self, stop: int) -> np.ndarray:
        """Frames `_done` to `stop`: their gains, full-band spectra, inverse transforms and overlap-add. Returns the
        `(channels, (stop - _done) * hop)` padded samples now final."""
        count, channels, reach = stop - self._done, self.channels, SMOOTHING_FRAMES
        energies = self._energies
        if energies.shape[1] < count + 2 * reach:  # the input has ended: no frames past the last
            energies = np.pad(energies, ((0, 0), (0, count + 2 * reach - energies.shape[1])))
        # The smoothing: a 7-tap convolution along frames written out tap by tap, so that every frame adds its
        # neighbours in the same order; the frames outside the signal add 0 to the sums and to the weights' norm.
        totals = np.zeros((2 * channels + 1, count))
        for tap, weight in enumerate(self._smoothing):
            totals += weight * energies[:, tap : tap + count]
        norm = totals[-1]
        gain = high_band_gain(totals[channels:-1] / norm, totals[:channels] / norm)[:, :, None]  # (channels, count, 1)
        spectrum_x, spectrum_e = self._spectra[:, :, :count].view(np.float64)  # interleaved (re, im)
        # w * E + (1 - w) * g * X (w and g are real), written over X (these frames' spectra are not needed again): E
        # itself where w = 1, g * X where w = 0 (the same values as 1 * E + 0 * g * X and 0 * E + 1 * g * X), both
        # terms in the cross-over between.
        low, high = 2 * self._crossover[0], 2 * self._crossover[1]
        mixed = spectrum_e[..., low:high] * self._crossover_parts
        mixed += spectrum_x[..., low:high] * ((1.0 - self._crossover_parts) * gain)
        spectrum_x[..., low:high] = mixed
        spectrum_x[..., :low] = spectrum_e[..., :low]
        np.multiply(spectrum_x[..., high:], gain, out=spectrum_x[..., high:])
        frames = np.fft.irfft(self._spectra[0, :, :count], self.n_fft, axis=-1, out=self._frames[0, :, :count])
        frames *= self._synthesis_window
        # Overlap-add by hops: hop `b` takes part `p` of frame `b - p`, the oldest frame (the largest `p`) first.
        parts = self.n_fft // self.hop
        sums = np.concatenate([self._output, np.zeros((channels, count * self.hop))], axis=1)
        hops = sums.reshape(channels, count + parts - 1, self.hop)
        frames = frames.reshape(channels, count, parts, self.hop)  # a view (splits the last axis)
        for part in range(parts - 1, -1, -1):
            hops[:, part : part + count] += frames[:, :, part]
        self._output = sums[:, count * self.hop :]
        pending = self._analysed - stop
        self._spectra[:, :, :pending] = self._spectra[:, :, count : count + pending].copy()
        self._energies = self._energies[:, count:]
        self._done = stop
        return sums[:, : count * self.hop]


class _Incoming:
    """The audio of one call as it is taken block by block, with `pad` zeros after it, so that a long clip is never
    copied whole. `left`: the samples not taken yet."""

    def __init__(self, original: np.ndarray, enhanced: np.ndarray, pad: int):
        self._signals, self._position, self._length = (original, enhanced), 0, original.shape[1]
        self.left = self._length + pad

    def take(self, length: int, before: np.ndarray) -> np.ndarray:
        """`(2, channels, length)` float64 (input, enhanced): `before` `(2, channels, samples)`, then the next
        `length - samples` samples."""
        out = np.empty((*before.shape[:2], length))
        held = before.shape[2]
        out[:, :, :held] = before
        real = max(min(length - held, self._length - self._position), 0)
        for signal, into in zip(self._signals, out):
            into[:, held : held + real] = signal[:, self._position : self._position + real]
        out[:, :, held + real :] = 0.0
        self._position += length - held
        self.left -= length - held
        return out


def carry_high_band(original: np.ndarray, enhanced: np.ndarray, sampling_rate: int) -> np.ndarray:
    """The input's high band carried over to its enhanced audio (see the module's docstring): `original` and
    `enhanced` `(channels, samples)` at `sampling_rate` Hz (the enhanced audio resampled back from the model's rate and
    cut to the input's length) -> `(channels, samples)` float32. The same samples as [`HighBandCarrier`] given the
    audio in pieces."""
    carrier = HighBandCarrier(sampling_rate, original.shape[0])
    return carrier(np.asarray(original), np.asarray(enhanced), last=True)
