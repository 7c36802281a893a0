"""The spectral front end of FUSE: the compressed STFT and its exact inverse.

Spectra follow sgmse: a periodic Hann STFT with ``n_fft=510`` (256 bins) and ``hop_length=128`` (8 ms at 16 kHz),
normalised, then magnitude compression ``0.15 * |X| ** 0.5`` with the phase kept. A complex spectrum is handed to
the VAE as two real channels ``(batch, 2, freq, frames)``; the magnitude representation is one channel
``(batch, 1, freq, frames)`` and borrows its phase from the noisy input at synthesis.

These settings are saved with a model, in its VAE's config ([`SpectralAutoencoderKL`]); the constants below are
the defaults (the values fuse-small was trained with) and every function takes them as keyword arguments.
:func:`spectral_settings` reads them from a config.

This module imports only torch, so that it travels with the pipeline as Hub remote code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

SAMPLE_RATE = 16000
N_FFT = 510
HOP_LENGTH = 128
WINDOW = "hann"
NUM_FREQ_BINS = N_FFT // 2 + 1  # 256
SPEC_FACTOR = 0.15
SPEC_EXPONENT = 0.5
REPRESENTATIONS = ("complex", "magnitude")
# Periodic windows, as an STFT wants them (a symmetric one would not overlap-add to a constant).
WINDOWS = {"hann": torch.hann_window, "hamming": torch.hamming_window, "blackman": torch.blackman_window}
# The keyword arguments of `to_spectrogram`/`to_waveform` that describe the front end, with their defaults.
SPECTRAL_DEFAULTS: dict[str, Any] = {
    "n_fft": N_FFT,
    "hop_length": HOP_LENGTH,
    "window": WINDOW,
    "compression_exponent": SPEC_EXPONENT,
    "compression_factor": SPEC_FACTOR,
}


def spectral_settings(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The front-end keyword arguments (`n_fft`, `hop_length`, `window`, `compression_exponent`,
    `compression_factor`) found in `config` (a VAE config or any mapping), the defaults for those it lacks."""
    config = config or {}
    return {name: config.get(name, default) for name, default in SPECTRAL_DEFAULTS.items()}


def analysis_window(
    name: str, n_fft: int, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The periodic window `name` (one of `WINDOWS`) of `n_fft` samples."""
    if name not in WINDOWS:
        raise ValueError(f"window must be one of {tuple(WINDOWS)}, got {name!r}.")
    return WINDOWS[name](n_fft, periodic=True, device=device, dtype=dtype)


def stft(
    waveform: torch.Tensor, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH, window: str = WINDOW
) -> torch.Tensor:
    """Complex STFT of `(batch, samples)` audio -> `(batch, n_fft // 2 + 1, frames)`, frames = samples // hop + 1
    (centred frames, energy-normalised)."""
    weights = analysis_window(window, n_fft, device=waveform.device, dtype=waveform.dtype)
    return torch.stft(waveform, n_fft, hop_length, window=weights, center=True, normalized=True, return_complex=True)


def istft(
    spec: torch.Tensor, length: int, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH, window: str = WINDOW
) -> torch.Tensor:
    """Inverse of :func:`stft`: `(batch, n_fft // 2 + 1, frames)` complex -> `(batch, length)` samples."""
    weights = analysis_window(window, n_fft, device=spec.device, dtype=spec.real.dtype)
    return torch.istft(spec, n_fft, hop_length, window=weights, center=True, normalized=True, length=length)


def compress_spectrogram(
    spec: torch.Tensor, exponent: float = SPEC_EXPONENT, factor: float = SPEC_FACTOR
) -> torch.Tensor:
    """Magnitude compression `factor * |X| ** exponent`, phase kept; lifts quiet speech harmonics out of the floor."""
    magnitude = spec.abs()
    return factor * magnitude.pow(exponent) * torch.exp(1j * spec.angle())


def decompress_magnitude(
    magnitude: torch.Tensor, exponent: float = SPEC_EXPONENT, factor: float = SPEC_FACTOR
) -> torch.Tensor:
    """Inverse of the compression on magnitudes: `(magnitude / factor) ** (1 / exponent)`."""
    return (magnitude / factor).pow(1.0 / exponent)


def decompress_spectrogram(
    spec: torch.Tensor, exponent: float = SPEC_EXPONENT, factor: float = SPEC_FACTOR
) -> torch.Tensor:
    """Inverse of :func:`compress_spectrogram`."""
    return decompress_magnitude(spec.abs(), exponent, factor) * torch.exp(1j * spec.angle())


def complex_to_channels(spec: torch.Tensor) -> torch.Tensor:
    """`(batch, freq, frames)` complex -> `(batch, 2, freq, frames)` real (real, imaginary)."""
    return torch.stack([spec.real, spec.imag], dim=1)


def channels_to_complex(channels: torch.Tensor) -> torch.Tensor:
    """`(batch, 2, freq, frames)` real -> `(batch, freq, frames)` complex."""
    return torch.complex(channels[:, 0].float(), channels[:, 1].float())


def to_spectrogram(
    waveform: torch.Tensor,
    representation: str = "complex",
    input_scale: float = 1.0,
    *,
    n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
    window: str = WINDOW,
    compression_exponent: float = SPEC_EXPONENT,
    compression_factor: float = SPEC_FACTOR,
):
    """Waveform -> the VAE's input representation, normalised by `input_scale`.

    Args:
        waveform: `(batch, samples)` float at the model's sample rate.
        representation: ``"complex"`` -> `(batch, 2, freq, frames)`; ``"magnitude"`` -> `(batch, 1, freq, frames)`,
            with freq = n_fft // 2 + 1 and frames = samples // hop_length + 1.
        input_scale: divides the compressed values (a few hundredths raw) to about unit spread.
        n_fft, hop_length, window, compression_exponent, compression_factor: the front end (:func:`stft`,
            :func:`compress_spectrogram`); a model's own are `spectral_settings(vae.config)`.

    Returns:
        `(features, compressed)`: the model input and the compressed complex spectrum `(batch, freq, frames)`
        whose phase :func:`to_waveform` reuses for the magnitude representation.
    """
    spec = stft(waveform, n_fft, hop_length, window)
    compressed = compress_spectrogram(spec, compression_exponent, compression_factor)
    if representation == "complex":
        features = complex_to_channels(compressed)
    elif representation == "magnitude":
        features = compressed.abs().unsqueeze(1)
    else:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}.")
    return features / input_scale, compressed


def to_waveform(
    features: torch.Tensor,
    length: int,
    representation: str = "complex",
    input_scale: float = 1.0,
    phase_from: torch.Tensor | None = None,
    *,
    n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
    window: str = WINDOW,
    compression_exponent: float = SPEC_EXPONENT,
    compression_factor: float = SPEC_FACTOR,
    max_gain_db: float | None = None,
) -> torch.Tensor:
    """Inverse of :func:`to_spectrogram`: model-domain spectrogram -> `(batch, length)` waveform.

    For ``"magnitude"``, `phase_from` (a compressed complex spectrum `(batch, freq, frames)`, usually the noisy
    input's) supplies the phase; negative magnitudes predicted by the decoder are clipped to zero. With
    `max_gain_db`, every time-frequency bin is capped at that gain over the same bin of `phase_from`
    (:func:`limit_gain`). The front-end keywords must be those the spectrogram was made with.
    """
    features = features.float() * input_scale
    if representation == "magnitude":
        if phase_from is None:
            raise ValueError("the magnitude representation needs `phase_from` (the noisy compressed spectrum).")
        # The complex path below, in real arithmetic on magnitudes and one product with the input's unit phasor (a
        # bin of exact zeros has phase 0, as `angle` gives it): equal to float rounding, and 3x faster than angle,
        # complex exponentials and the cap's complex products (15 vs 44 ms for two 2 s windows).
        magnitude = features[:, 0].clamp_min(0.0)
        reference = phase_from.abs()
        if max_gain_db is not None:
            magnitude = torch.minimum(magnitude, max_magnitude(reference, max_gain_db, compression_exponent))
        phasor = torch.where(reference > 0, phase_from / reference.clamp_min(torch.finfo(reference.dtype).tiny), 1.0)
        magnitude = decompress_magnitude(magnitude, compression_exponent, compression_factor)
        return istft(magnitude * phasor, length, n_fft, hop_length, window)
    if representation != "complex":
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}.")
    compressed = channels_to_complex(features)
    if max_gain_db is not None and phase_from is not None:
        compressed = limit_gain(compressed, phase_from, max_gain_db, compression_exponent)
    spec = decompress_spectrogram(compressed, compression_exponent, compression_factor)
    return istft(spec, length, n_fft, hop_length, window)


# The pipeline's default cap: the output may only remove (see `limit_gain`).
DEFAULT_MAX_GAIN_DB = 0.0


def limit_gain(
    spectrum: torch.Tensor, reference: torch.Tensor, max_gain_db: float, compression_exponent: float = SPEC_EXPONENT
) -> torch.Tensor:
    """Scales each bin of the compressed complex `spectrum` `(batch, freq, frames)` down, phase kept, to at most
    `max_gain_db` (amplitude dB) above the same bin of the compressed `reference` (the noisy input).

    At 0 dB an enhancer may only remove: digital silence stays exact zeros, and no bin of clean speech comes back
    louder than it went in. A gain `g` on the
    amplitude is `g ** compression_exponent` on the compressed magnitude.
    """
    limit = max_magnitude(reference.abs(), max_gain_db, compression_exponent)
    magnitude = spectrum.abs()
    return spectrum * torch.clamp(limit / magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny), max=1.0)


def max_magnitude(
    reference: torch.Tensor, max_gain_db: float, compression_exponent: float = SPEC_EXPONENT
) -> torch.Tensor:
    """The largest compressed magnitude a bin may take: `max_gain_db` (amplitude dB) above the compressed magnitude
    `reference` of the same bin."""
    return reference * 10.0 ** (compression_exponent * max_gain_db / 20.0)


def pad_frames(spec: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pads the last (frames) axis up to a multiple of `multiple` (AutoencoderKL drops odd frames)."""
    frames = spec.shape[-1]
    target = int(math.ceil(frames / multiple) * multiple)
    if target == frames:
        return spec
    return torch.nn.functional.pad(spec, (0, target - frames))
