"""Per-file quality measures of the corpus, and the thresholds that drop bad speech targets.

Small pure functions of numpy arrays. Signals are `(samples,)` float arrays in [-1, 1] (clipping also accepts
`(channels, samples)`); levels are in dB relative to full scale (dBFS: a full-scale sine is -3 dBFS), frequencies
in Hz. The RMS level is `fuse_hf.data.rms_dbfs` (one home for it); everything else is defined here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from fuse_hf import data

# Floor of every level in dB: digital silence reads -120 dB instead of -inf, so that manifests hold numbers.
FLOOR_DB = -120.0
# Frames of the frame levels: 20 ms, one to a few pitch periods, shorter than a phoneme.
FRAME_S = 0.02
# Spectrum for the SNR and bandwidth measures: 32 ms Hann frames (31.25 Hz bins at 16 kHz), 50 % overlap.
N_FFT = 512
# SNR estimate (minimum statistics per band): the noise floor of each BAND_HZ band is the NOISE_PERCENTILE-th
# percentile of its power over the frames; the noise power is their sum. A tightly cut word has no pause, but
# each band has quiet moments (the high bands during vowels, the low bands during fricatives), so per-band
# floors find the noise where broadband frame levels cannot. The active level is the SIGNAL_PERCENTILE-th
# percentile of the frame powers. For stationary Gaussian noise the floor reads ~1 dB low (a low percentile of a
# chi-square power), the SNR 1-2 dB high.
BAND_HZ = 1000.0
NOISE_PERCENTILE = 10.0
SIGNAL_PERCENTILE = 95.0
# An SNR estimate above this is reported as this (digital silence in the pauses would give ~100 dB).
MAX_SNR_DB = 80.0
# A sample at or above this magnitude counts as "at the rail" (lossy decoders smear a clipped plateau to ~0.99-1.1).
CLIP_RAIL = 0.99
# Cutoff estimate. Levels are relative to the mean power of 100 Hz-4 kHz (the speech band), on the spectrum
# smoothed over SMOOTH_HZ. Content: a level within CONTENT_BELOW_REF_DB of it (wideband speech sits 10-30 dB
# below it at 4-7 kHz; the faded high band of low-bitrate Vorbis 35-60 dB; stop bands 60-100 dB). A steep edge: the
# level EDGE_HZ below it exceeds everything from EDGE_HZ above it on by EDGE_DROP_DB (natural speech slopes fall
# 3-10 dB per kHz, low-pass filters 50-100 dB within a few hundred Hz). Below MIN_CUTOFF_HZ nothing counts as a
# cutoff: the fall above a low voice's first harmonics is not a band limit.
SMOOTH_HZ = 150.0
CONTENT_BELOW_REF_DB = 35.0
EDGE_HZ = 250.0
EDGE_DROP_DB = 20.0
MIN_CUTOFF_HZ = 1000.0
# The reported edge: the highest frequency of the edge still within this many dB of the passband (the highest
# level of the kHz below the edge).
EDGE_LEVEL_DB = 10.0

# Bandwidth classes. A wideband target has content up to at least 6 kHz: 16 kHz audio resampled from 44.1 kHz ends
# near 7.6 kHz at soxr's anti-alias edge, native 16 kHz recordings at 6.5-8 kHz (festvox-ru 6.6, G.722 8);
# telephone and 8 kHz-sourced speech ends near 3.4-4 kHz, 11 kHz sources near 5.3 kHz.
WIDEBAND_MIN_CUTOFF_HZ = 6000.0

# Thresholds that drop a speech target (noise is only dropped when too short or silent).
MIN_SPEECH_S = 0.5  # single words (digits, letters) are 0.5-1 s; shorter clips are mostly fragments
MIN_NOISE_S = 1.0
MIN_SPEECH_RMS_DBFS = -45.0  # quieter recordings are mostly preamp noise once brought up to level
MIN_NOISE_RMS_DBFS = -60.0
MAX_CLIP_FRACTION = 1e-3  # 0.1 % of samples at the rail: audible clipping in speech
MIN_SPEECH_SNR_DB = 20.0  # estimated; below this the "clean" target carries its own audible noise


def rms_db(x: np.ndarray) -> float:
    """RMS level of `(samples,)` in dBFS, floored at :data:`FLOOR_DB` (never -inf)."""
    return max(float(data.rms_dbfs(np.asarray(x))), FLOOR_DB)


def peak(x: np.ndarray) -> float:
    """Largest absolute sample value (linear); 0.0 for an empty array."""
    x = np.asarray(x)
    return float(np.max(np.abs(x))) if x.size else 0.0


def clip_fraction(x: np.ndarray, rail: float = CLIP_RAIL) -> float:
    """Fraction of samples (over all channels) whose magnitude is at or above `rail` (linear full scale = 1).

    Measure it on the decoded file at its own rate: resampling rings around a clipped plateau and hides it.
    """
    x = np.asarray(x)
    return float(np.mean(np.abs(x) >= rail)) if x.size else 0.0


def frame_levels_db(x: np.ndarray, sampling_rate: int, frame_s: float = FRAME_S) -> np.ndarray:
    """Levels (dBFS, floored at :data:`FLOOR_DB`) of consecutive non-overlapping frames -> `(frames,)`.

    A clip shorter than one frame is one frame.
    """
    x = np.asarray(x, dtype=np.float64)
    size = max(1, int(round(frame_s * sampling_rate)))
    count = max(1, len(x) // size)
    frames = x[: count * size].reshape(count, -1) if len(x) >= size else x[None]
    power = np.mean(np.square(frames), axis=1)
    return np.maximum(10 * np.log10(np.maximum(power, 1e-30)), FLOOR_DB)


def stft_power(x: np.ndarray, sampling_rate: int, n_fft: int = N_FFT) -> tuple[np.ndarray, np.ndarray]:
    """Power spectrogram over Hann frames (hop n_fft/2) -> `(freqs (bins,) in Hz, power (frames, bins))`.

    Scaled so that a frame's power summed over bins is the mean square of the (unwindowed) signal in it: white
    noise of variance s2 gives s2 in total. A clip shorter than `n_fft` is zero-padded to one frame.
    """
    x = np.asarray(x, dtype=np.float64)
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    hop = n_fft // 2
    count = 1 + (len(x) - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    window = np.hanning(n_fft)
    power = np.abs(np.fft.rfft(x[index] * window, axis=1)) ** 2
    power[:, 1:-1] *= 2  # one-sided spectrum: the negative frequencies' half
    power /= n_fft * np.sum(window**2)
    return np.fft.rfftfreq(n_fft, 1.0 / sampling_rate), power


def band_powers(freqs: np.ndarray, power: np.ndarray, band_hz: float = BAND_HZ) -> np.ndarray:
    """Power of consecutive `band_hz` bands per frame -> `(frames, bands)` (summing to the frames' power)."""
    band = np.minimum((freqs // band_hz).astype(int), int(freqs[-1] // band_hz) - 1 if freqs[-1] >= band_hz else 0)
    out = np.zeros((power.shape[0], band.max() + 1))
    np.add.at(out.T, band, power.T)
    return out


def noise_floor_db(bands: np.ndarray) -> float:
    """Noise power (dBFS): the sum over bands of each band's :data:`NOISE_PERCENTILE`-th percentile over frames."""
    floor = float(np.sum(np.percentile(bands, NOISE_PERCENTILE, axis=0)))
    return max(10 * math.log10(floor) if floor > 0 else FLOOR_DB, FLOOR_DB)


def active_level_db(bands: np.ndarray) -> float:
    """Level of the active frames (dBFS): the :data:`SIGNAL_PERCENTILE`-th percentile of the frame powers."""
    active = float(np.percentile(bands.sum(axis=1), SIGNAL_PERCENTILE))
    return max(10 * math.log10(active) if active > 0 else FLOOR_DB, FLOOR_DB)


def snr_estimate_db(bands: np.ndarray) -> float:
    """Blind SNR estimate (dB) from band powers: active level minus noise floor, capped at :data:`MAX_SNR_DB`.

    For a signal present in more than 5 % of the frames and stationary noise, 0-2 dB above
    ``10 log10((P_signal + P_noise) / P_noise)``; speech without a single pause still finds its floor, band by band.
    """
    return min(active_level_db(bands) - noise_floor_db(bands), MAX_SNR_DB)


def power_spectrum(x: np.ndarray, sampling_rate: int, n_fft: int = N_FFT) -> tuple[np.ndarray, np.ndarray]:
    """Mean power spectrum over the frames of :func:`stft_power` -> `(freqs, power (n_fft//2+1,))`."""
    freqs, power = stft_power(x, sampling_rate, n_fft)
    return freqs, power.mean(axis=0)


def band_energy_db(freqs: np.ndarray, power: np.ndarray, above_hz: float) -> float:
    """Energy at and above `above_hz` relative to the total, in dB (floored at :data:`FLOOR_DB`).

    White noise gives ``10 log10(1 - above_hz / nyquist)``; wideband speech about -15 to -25 dB above 4 kHz.
    """
    total = float(np.sum(power))
    if total <= 0:
        return FLOOR_DB
    part = float(np.sum(power[freqs >= above_hz]))
    return max(10 * math.log10(part / total) if part > 0 else FLOOR_DB, FLOOR_DB)


def smoothed_spectrum_db(freqs: np.ndarray, power: np.ndarray, smooth_hz: float = SMOOTH_HZ) -> np.ndarray:
    """The power spectrum in dB, moving-averaged over `smooth_hz` (edges use the bins that exist) -> like `power`."""
    level = 10 * np.log10(np.maximum(power, 1e-30))
    step = float(freqs[1] - freqs[0])
    width = max(1, int(round(smooth_hz / step)) | 1)
    kernel = np.ones(width)
    sums = np.convolve(level, kernel, mode="same")
    counts = np.convolve(np.ones_like(level), kernel, mode="same")
    return sums / counts


def cutoff_hz(freqs: np.ndarray, power: np.ndarray) -> float:
    """Where the content ends (Hz): the highest steep edge of the spectrum, or where it sinks below content level.

    On the smoothed spectrum relative to the mean level of 100 Hz-4 kHz (see :data:`CONTENT_BELOW_REF_DB`):
    a steep edge at bin k has the level at k - EDGE_HZ within content level and at least :data:`EDGE_DROP_DB`
    above everything from k + EDGE_HZ on; the cutoff is then the highest frequency of the edge still within
    :data:`EDGE_LEVEL_DB` of the passband (the highest level of the kHz below the edge). Without a steep edge, the
    cutoff is the highest frequency still at content level: the Nyquist frequency for full-band content, lower
    for speech whose high band fades out (low-bitrate codecs). Never below :data:`MIN_CUTOFF_HZ`.
    """
    level = smoothed_spectrum_db(freqs, power)
    band = (freqs >= 100) & (freqs <= 4000)
    level -= 10 * math.log10(max(float(np.mean(power[band])), 1e-30)) if band.any() else float(level.max())
    content = -CONTENT_BELOW_REF_DB
    step = float(freqs[1] - freqs[0])
    half = max(1, int(round(EDGE_HZ / step)))
    lowest = max(half, int(np.searchsorted(freqs, MIN_CUTOFF_HZ)))
    above = np.maximum.accumulate(level[::-1])[::-1]  # above[i] = max(level[i:])
    for k in range(len(level) - 1 - half, lowest - 1, -1):
        below = level[k - half]
        if below >= content and below - above[k + half] >= EDGE_DROP_DB:
            window = np.arange(max(0, k - 4 * half), k + half + 1)
            passband = float(level[window[window <= k - half]].max())
            inside = window[level[window] >= passband - EDGE_LEVEL_DB]
            return float(freqs[inside.max()])
    at_content = np.flatnonzero(level[lowest:] >= content)
    return float(freqs[lowest + at_content.max()]) if at_content.size else float(freqs[lowest])


def bandwidth_class(cutoff: float) -> str:
    """ "wideband" when the content reaches :data:`WIDEBAND_MIN_CUTOFF_HZ`, else "narrowband"."""
    return "wideband" if cutoff >= WIDEBAND_MIN_CUTOFF_HZ else "narrowband"


@dataclass(frozen=True)
class Quality:
    """The measures of one output file (all at the output rate, except `clip_fraction`: the decoded source)."""

    seconds: float
    rms_dbfs: float
    peak: float
    clip_fraction: float
    noise_floor_dbfs: float
    snr_db: float
    hf4k_db: float
    hf7k_db: float
    cutoff_hz: float
    bandwidth: str

    def as_row(self) -> dict[str, str]:
        """Manifest cells, rounded so that two builds print identical text."""
        row = asdict(self)
        digits = {"seconds": 3, "peak": 4, "clip_fraction": 6, "cutoff_hz": 0}
        return {k: v if isinstance(v, str) else f"{v:.{digits.get(k, 1)}f}" for k, v in row.items()}


def measure(x: np.ndarray, sampling_rate: int, clipped: float = 0.0) -> Quality:
    """All measures of a `(samples,)` signal; `clipped` is the clip fraction of its decoded source."""
    freqs, power = stft_power(x, sampling_rate)
    bands = band_powers(freqs, power)
    mean_power = power.mean(axis=0)
    cutoff = cutoff_hz(freqs, mean_power)
    return Quality(
        seconds=len(x) / sampling_rate,
        rms_dbfs=rms_db(x),
        peak=peak(x),
        clip_fraction=clipped,
        noise_floor_dbfs=noise_floor_db(bands),
        snr_db=snr_estimate_db(bands),
        hf4k_db=band_energy_db(freqs, mean_power, 4000.0),
        hf7k_db=band_energy_db(freqs, mean_power, 7000.0),
        cutoff_hz=cutoff,
        bandwidth=bandwidth_class(cutoff),
    )


def drop_reason(quality: Quality, kind: str) -> str | None:
    """Why a file is not used ("short", "quiet", "clipped", "noisy"), or None to keep it.

    Speech targets must be long enough, loud enough, unclipped and clean; noise only long enough and not silent.
    The first failing test names the reason, in the order above.
    """
    if kind == "noise":
        if quality.seconds < MIN_NOISE_S:
            return "short"
        if quality.rms_dbfs < MIN_NOISE_RMS_DBFS:
            return "quiet"
        return None
    if kind != "speech":
        raise ValueError(f"kind must be 'speech' or 'noise', got {kind!r}.")
    if quality.seconds < MIN_SPEECH_S:
        return "short"
    if quality.rms_dbfs < MIN_SPEECH_RMS_DBFS:
        return "quiet"
    if quality.clip_fraction > MAX_CLIP_FRACTION:
        return "clipped"
    if quality.snr_db < MIN_SPEECH_SNR_DB:
        return "noisy"
    return None
