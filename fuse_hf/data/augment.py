# Copyright 2026 The fuse-hf authors. Licensed under the Apache License, Version 2.0.
"""Augmentations: small pure functions of (signal, parameters, rng). Signals are float (samples,) arrays.

Levels and mixing (`power`, `rms_dbfs`, `set_level`, `mix_at_snr`), synthetic noises (`colored_noise` and its white,
pink and brown cases, `mains_hum`, `babble`), reverberation (`synth_rir`, `apply_rir`) and the input channel
(`random_eq`, `apply_lowpass`, `apply_highpass`). The peak limiter is `fuse_hf.audio.avoid_clipping`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import signal as sps

from ..audio import SAMPLE_RATE


def power(x: np.ndarray) -> float:
    """Mean power of (samples,) (linear)."""
    return float(np.mean(np.square(x, dtype=np.float64))) if len(x) else 0.0


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level in dBFS (a full-scale sine is -3 dBFS); -inf for silence."""
    p = power(x)
    return 10 * math.log10(p) if p > 0 else -math.inf


def mix_at_snr(
    speech: np.ndarray, noise: np.ndarray, snr_db: float, speech_region: slice | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Scale `noise` so that ``10 log10(P_speech / P_noise) = snr_db`` and add it -> (mixture, scaled noise).

    Args:
        speech, noise: (samples,) arrays of the same length.
        snr_db: target SNR in dB.
        speech_region: where the speech clip lies (its zero padding is left out of P_speech, so a short clip padded
            into a long segment keeps the requested SNR where it is heard). P_noise is taken over the same region.

    Silent noise is added unscaled (SNR +inf). With silent speech the noise is scaled to unit power (the caller sets
    the level).
    """
    region = speech_region or slice(None)
    p_noise = power(noise[region])
    if p_noise <= 0:
        return speech + noise, noise
    p_speech = power(speech[region])
    target = p_speech / 10 ** (snr_db / 10) if p_speech > 0 else 1.0
    scaled = noise * np.float32(math.sqrt(target / p_noise))
    return speech + scaled, scaled


def colored_noise(num_samples: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectral density ~ 1/f**exponent, unit RMS -> (num_samples,) float32.

    exponent 0 = white, 1 = pink, 2 = brown (red). Shaped in the frequency domain; DC is zeroed.
    """
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0
    spectrum *= freqs ** (-exponent / 2)  # amplitude ~ f^(-exponent/2) gives power ~ f^-exponent
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=num_samples)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def white_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    return colored_noise(num_samples, 0.0, rng)


def pink_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    return colored_noise(num_samples, 1.0, rng)


def brown_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    return colored_noise(num_samples, 2.0, rng)


def mains_hum(
    num_samples: int,
    rng: np.random.Generator,
    sample_rate: int = SAMPLE_RATE,
    fundamental_hz: float | None = None,
    max_harmonics: int = 12,
) -> np.ndarray:
    """Mains hum: 50 or 60 Hz (random when None) with decaying harmonics and random phases, unit RMS (num_samples,).

    Odd harmonics are stronger, like the buzz of transformers and ground loops; a slow amplitude wobble and a little
    frequency drift keep it from being a perfect line spectrum.
    """
    f0 = fundamental_hz or float(rng.choice([50.0, 60.0]))
    f0 *= 1 + rng.uniform(-0.002, 0.002)
    t = np.arange(num_samples) / sample_rate
    n_harm = int(rng.integers(3, max_harmonics + 1))
    decay = rng.uniform(0.3, 0.9)
    hum = np.zeros(num_samples)
    for k in range(1, n_harm + 1):
        if k * f0 >= sample_rate / 2:
            break
        amp = decay ** (k - 1) * (1.0 if k % 2 else rng.uniform(0.2, 0.6))
        hum += amp * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    hum *= 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 1.0) * t)
    return (hum / (np.sqrt(np.mean(hum**2)) + 1e-12)).astype(np.float32)


def babble(talkers: Sequence[np.ndarray]) -> np.ndarray:
    """Sum of (samples,) speech signals, each normalised to unit RMS first, result at unit RMS."""
    out = np.zeros(len(talkers[0]), dtype=np.float64)
    for x in talkers:
        out += x / (np.sqrt(power(x)) + 1e-8)
    return (out / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)


def synth_rir(
    rt60_s: float,
    rng: np.random.Generator,
    sample_rate: int = SAMPLE_RATE,
    drr_db: float = 3.0,
    predelay_s: float = 0.002,
    max_length_s: float = 1.0,
) -> np.ndarray:
    """Synthetic room impulse response: a unit direct path at sample 0, then exponentially decaying noise.

    The tail decays by 60 dB in `rt60_s` (amplitude ``exp(-6.91 t / rt60)``), starts `predelay_s` after the direct
    path, and holds ``10**(-drr_db/10)`` of the direct energy (direct-to-reverberant ratio `drr_db` in dB).

    Returns:
        (taps,) float32, ``taps = min(1.2 * rt60, max_length_s) * sample_rate``.
    """
    taps = max(int(min(1.2 * rt60_s, max_length_s) * sample_rate), 2)
    start = min(max(1, int(predelay_s * sample_rate)), taps - 1)
    t = np.arange(taps - start) / sample_rate
    tail = rng.standard_normal(taps - start) * np.exp(-6.908 * t / rt60_s)
    tail *= math.sqrt(10 ** (-drr_db / 10) / (np.sum(tail**2) + 1e-12))
    rir = np.zeros(taps)
    rir[0] = 1.0
    rir[start:] = tail
    return rir.astype(np.float32)


def apply_rir(speech: np.ndarray, rir: np.ndarray, early_s: float | None = 0.05, sample_rate: int = SAMPLE_RATE):
    """Convolve (samples,) speech with a RIR -> (reverberant, target), both (samples,) float32.

    `target` is the speech convolved with the first `early_s` seconds of the RIR (direct path + early reflections),
    or the dry speech when `early_s` is None. The direct path is at sample 0, so both stay aligned with `speech`.
    """
    n = len(speech)
    wet = sps.fftconvolve(speech, rir)[:n]
    if early_s is None:
        target = speech
    else:
        early = rir[: max(1, int(early_s * sample_rate))]
        target = sps.fftconvolve(speech, early)[:n] if len(early) > 1 else speech * early[0]
    return wet.astype(np.float32), np.asarray(target, dtype=np.float32)


def random_eq(
    x: np.ndarray, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE, max_gain_db: float = 8.0, bands: int = 3
) -> np.ndarray:
    """Zero-phase random equaliser: a spectral tilt plus `bands` bell curves, each within ±`max_gain_db` dB.

    Applied in the frequency domain over the whole (samples,) signal; zero phase keeps the input aligned with the
    target. Bells are Gaussian in log-frequency, centred log-uniformly in 100 Hz .. 0.8 * Nyquist.
    """
    n = len(x)
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    logf = np.log2(np.maximum(freqs, 20.0) / 1000.0)  # octaves re 1 kHz
    gain_db = rng.uniform(-max_gain_db, max_gain_db) / 4 * logf  # tilt in dB/octave, limited to a few octaves' worth
    for _ in range(bands):
        centre = np.log2(np.exp(rng.uniform(np.log(100.0), np.log(0.4 * sample_rate))) / 1000.0)
        width = rng.uniform(0.3, 1.5)  # octaves
        gain_db = gain_db + rng.uniform(-max_gain_db, max_gain_db) * np.exp(-0.5 * ((logf - centre) / width) ** 2)
    gain_db = np.clip(gain_db, -2 * max_gain_db, 2 * max_gain_db)
    return np.fft.irfft(np.fft.rfft(x) * 10 ** (gain_db / 20), n=n).astype(np.float32)


def _zero_phase_butterworth(x: np.ndarray, cutoff_hz: float, btype: str, sample_rate: int, order: int) -> np.ndarray:
    # Forward-backward filtering keeps the output aligned with its input and doubles the order.
    sos = sps.butter(order // 2, cutoff_hz, btype=btype, fs=sample_rate, output="sos")
    return sps.sosfiltfilt(sos, x).astype(np.float32)


def apply_lowpass(x: np.ndarray, cutoff_hz: float, sample_rate: int = SAMPLE_RATE, order: int = 8) -> np.ndarray:
    """Zero-phase Butterworth low-pass of (samples,) at `cutoff_hz` Hz (band-limiting, e.g. 3.4 kHz = telephone).

    Zero phase (forward-backward) keeps the input aligned with the target. A cutoff at or above 0.99 * Nyquist is a
    no-op.
    """
    if cutoff_hz >= 0.99 * sample_rate / 2:
        return np.asarray(x, dtype=np.float32)
    return _zero_phase_butterworth(x, cutoff_hz, "low", sample_rate, order)


def apply_highpass(x: np.ndarray, cutoff_hz: float, sample_rate: int = SAMPLE_RATE, order: int = 8) -> np.ndarray:
    """Zero-phase Butterworth high-pass of (samples,) at `cutoff_hz` Hz (-6 dB there); removes DC too.

    At 20 Hz and order 8 it takes out drift and infrasound (-48 dB at 10 Hz) and leaves speech alone (-0.03 dB at
    40 Hz).
    """
    return _zero_phase_butterworth(x, cutoff_hz, "high", sample_rate, order)


def set_level(reference: np.ndarray, target_dbfs: float) -> float:
    """Gain (linear) that brings the RMS of `reference` to `target_dbfs` dBFS (1.0 for silence)."""
    p = power(reference)
    return 10 ** (target_dbfs / 20) / math.sqrt(p) if p > 0 else 1.0
