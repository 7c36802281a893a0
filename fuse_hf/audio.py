"""Audio front end of FUSE: file I/O, resampling, the compressed STFT and its exact inverse.

Everything here is a small pure function of arrays. Conventions:

* waveforms are float32 in [-1, 1], shaped `(channels, samples)` for files and `(batch, samples)` for models;
* the models run at :data:`SAMPLE_RATE` (16 kHz); other rates are resampled with soxr on the way in and out;
* spectra follow sgmse: a periodic Hann STFT with ``n_fft=510`` (256 bins) and ``hop=128`` (8 ms), normalised,
  then magnitude compression ``0.15 * |X| ** 0.5`` with the phase kept. A complex spectrum is handed to the VAE
  as two real channels ``(batch, 2, freq=256, frames)``; the magnitude representation is one channel
  ``(batch, 1, 256, frames)`` and borrows its phase from the noisy input at synthesis.

This module imports only numpy and torch at the top; soundfile and soxr are imported where files are read or
rates are changed, so that the spectral functions can travel with the pipeline as Hub remote code.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

SAMPLE_RATE = 16000
N_FFT = 510
HOP_LENGTH = 128
NUM_FREQ_BINS = N_FFT // 2 + 1  # 256
SPEC_FACTOR = 0.15
SPEC_EXPONENT = 0.5
REPRESENTATIONS = ("complex", "magnitude")

# Shortest input we pad rather than reject: below ~5 ms there is no speech to enhance.
MIN_SAMPLES_16K = 80


# ----------------------------------------------------------------------------------------------- files


def load_audio(path: str | os.PathLike) -> Tuple[np.ndarray, int]:
    """Reads any file libsndfile can decode (wav, flac, ogg/vorbis, opus, mp3).

    Returns:
        `(audio, sampling_rate)`: float32 array `(channels, samples)` in [-1, 1] and the file's rate in Hz.

    Raises:
        ValueError: the file is missing, unreadable, empty, or holds NaN/Inf samples.
    """
    import soundfile as sf

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder, expected an audio file.")
    try:
        data, sampling_rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile's errors are RuntimeError/LibsndfileError with cryptic text
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: cannot be read as audio ({reason}).") from None
    audio = np.ascontiguousarray(data.T)
    if audio.shape[1] == 0:
        raise ValueError(f"{path}: holds no samples.")
    if not np.isfinite(audio).all():
        raise ValueError(f"{path}: contains NaN or Inf samples.")
    return audio, int(sampling_rate)


def save_audio(
    path: str | os.PathLike, audio: np.ndarray, sampling_rate: int, subtype: Optional[str] = None
) -> None:
    """Writes `(channels, samples)` or `(samples,)` float audio; the format follows the file extension.

    `subtype` is a libsndfile subtype such as ``"PCM_16"`` (default: the format's default).
    """
    import soundfile as sf

    audio = np.asarray(audio, dtype=np.float32)
    data = audio if audio.ndim == 1 else audio.T
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    sf.write(os.fspath(path), data, int(sampling_rate), subtype=subtype)


def audio_info(path: str | os.PathLike) -> Tuple[int, int, str]:
    """Returns `(sampling_rate, channels, subtype)` of a file without decoding it."""
    import soundfile as sf

    try:
        info = sf.info(os.fspath(path))
    except Exception as err:  # LibsndfileError (a RuntimeError) for corrupted or unknown files
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{os.fspath(path)}: cannot be read as audio ({reason}).") from None
    return int(info.samplerate), int(info.channels), info.subtype


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resamples along the last axis with soxr (HQ); `(..., samples)` float32 in and out."""
    if orig_sr == target_sr:
        return np.asarray(audio, dtype=np.float32)
    import soxr

    audio = np.asarray(audio, dtype=np.float32)
    flat = audio.reshape(-1, audio.shape[-1])
    # soxr wants (samples, channels) and resamples all channels in one call.
    out = soxr.resample(flat.T, orig_sr, target_sr, quality="HQ")
    out = np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, flat.shape[0]).T)
    return out.reshape(*audio.shape[:-1], out.shape[-1])


def check_sampling_rate(sampling_rate, name: str = "sampling_rate") -> int:
    """Validates a sample rate in Hz: a positive integer (an integral float is accepted)."""
    if sampling_rate is None:
        raise ValueError(f"{name} is required for arrays and tensors: pass e.g. sampling_rate=16000.")
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive integer in Hz, got {sampling_rate!r}.")
    if not float(sampling_rate).is_integer() or sampling_rate <= 0:
        raise ValueError(f"{name} must be a positive integer in Hz, got {sampling_rate!r}.")
    return int(sampling_rate)


def prevent_clipping(audio: np.ndarray, peak: float = 0.99) -> Tuple[np.ndarray, float]:
    """Scales `audio` down (never up) so that its peak is at most `peak`; returns `(audio, gain)`."""
    current = float(np.max(np.abs(audio))) if audio.size else 0.0
    if current <= peak:
        return audio, 1.0
    gain = peak / current
    return (audio * gain).astype(np.float32), gain


# ------------------------------------------------------------------------------------------- spectra


def stft(waveform: torch.Tensor) -> torch.Tensor:
    """Complex STFT of `(batch, samples)` 16 kHz audio -> `(batch, 256, frames)`, frames = samples // 128 + 1."""
    window = torch.hann_window(N_FFT, periodic=True, device=waveform.device, dtype=waveform.dtype)
    return torch.stft(
        waveform, N_FFT, HOP_LENGTH, window=window, center=True, normalized=True, return_complex=True
    )


def istft(spec: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of :func:`stft`: `(batch, 256, frames)` complex -> `(batch, length)` samples."""
    window = torch.hann_window(N_FFT, periodic=True, device=spec.device, dtype=spec.real.dtype)
    return torch.istft(spec, N_FFT, HOP_LENGTH, window=window, center=True, normalized=True, length=length)


def compress_spectrogram(spec: torch.Tensor) -> torch.Tensor:
    """Magnitude compression `0.15 * |X| ** 0.5`, phase kept; lifts quiet speech harmonics out of the floor."""
    magnitude = spec.abs()
    return SPEC_FACTOR * magnitude.pow(SPEC_EXPONENT) * torch.exp(1j * spec.angle())


def decompress_spectrogram(spec: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`compress_spectrogram`."""
    magnitude = (spec.abs() / SPEC_FACTOR).pow(1.0 / SPEC_EXPONENT)
    return magnitude * torch.exp(1j * spec.angle())


def complex_to_channels(spec: torch.Tensor) -> torch.Tensor:
    """`(batch, freq, frames)` complex -> `(batch, 2, freq, frames)` real (real, imaginary)."""
    return torch.stack([spec.real, spec.imag], dim=1)


def channels_to_complex(channels: torch.Tensor) -> torch.Tensor:
    """`(batch, 2, freq, frames)` real -> `(batch, freq, frames)` complex."""
    return torch.complex(channels[:, 0].float(), channels[:, 1].float())


def to_spectrogram(waveform: torch.Tensor, representation: str = "complex", input_scale: float = 1.0):
    """Waveform -> the VAE's input representation, normalised by `input_scale`.

    Args:
        waveform: `(batch, samples)` float at 16 kHz.
        representation: ``"complex"`` -> `(batch, 2, 256, frames)`; ``"magnitude"`` -> `(batch, 1, 256, frames)`.
        input_scale: divides the compressed values (a few hundredths raw) to about unit spread.

    Returns:
        `(features, compressed)`: the model input and the compressed complex spectrum `(batch, 256, frames)`
        whose phase :func:`to_waveform` reuses for the magnitude representation.
    """
    compressed = compress_spectrogram(stft(waveform))
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
    phase_from: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Inverse of :func:`to_spectrogram`: model-domain spectrogram -> `(batch, length)` waveform at 16 kHz.

    For ``"magnitude"``, `phase_from` (a compressed complex spectrum `(batch, 256, frames)`, usually the noisy
    input's) supplies the phase; negative magnitudes predicted by the decoder are clipped to zero.
    """
    features = features.float() * input_scale
    if representation == "complex":
        compressed = channels_to_complex(features)
    elif representation == "magnitude":
        if phase_from is None:
            raise ValueError("the magnitude representation needs `phase_from` (the noisy compressed spectrum).")
        magnitude = features[:, 0].clamp_min(0.0)
        compressed = magnitude * torch.exp(1j * phase_from.angle())
    else:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}.")
    return istft(decompress_spectrogram(compressed), length)


def pad_frames(spec: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pads the last (frames) axis up to a multiple of `multiple` (AutoencoderKL drops odd frames)."""
    frames = spec.shape[-1]
    target = int(math.ceil(frames / multiple) * multiple)
    if target == frames:
        return spec
    return torch.nn.functional.pad(spec, (0, target - frames))


# --------------------------------------------------------------------------------- windows for long audio


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
        (max(0, starts[k - 1] + window - start) if k > 0 else 0,
         max(0, start + window - starts[k + 1]) if k + 1 < len(starts) else 0)
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


def as_channels_first(audio: np.ndarray, max_channels: int = 16) -> np.ndarray:
    """Checks rank and layout of an in-memory clip and returns `(channels, samples)` float32.

    Accepts `(samples,)` or `(channels, samples)`; rejects `(samples, channels)` with a hint.
    """
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None]
    elif audio.ndim != 2:
        raise ValueError(
            f"audio must be 1-D (samples,) or 2-D (channels, samples), got shape {tuple(audio.shape)}."
        )
    if audio.shape[0] > max_channels:
        raise ValueError(
            f"audio of shape {tuple(audio.shape)} has {audio.shape[0]} channels; arrays are (channels, samples). "
            "If yours is (samples, channels), pass audio.T."
        )
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must hold floats in [-1, 1], got dtype {audio.dtype}.")
    if audio.shape[1] == 0:
        raise ValueError("audio holds no samples.")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or Inf samples.")
    return np.ascontiguousarray(audio, dtype=np.float32)


__all__: Sequence[str] = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP_LENGTH",
    "load_audio",
    "save_audio",
    "audio_info",
    "resample",
    "check_sampling_rate",
    "prevent_clipping",
    "stft",
    "istft",
    "compress_spectrogram",
    "decompress_spectrogram",
    "complex_to_channels",
    "channels_to_complex",
    "to_spectrogram",
    "to_waveform",
    "pad_frames",
    "window_starts",
    "crossfade_weights",
    "overlaps",
    "pad_reflect",
    "as_channels_first",
]
