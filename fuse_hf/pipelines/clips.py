"""Audio in and out of [`FUSEPipeline`]: each input (a file path, an array or a tensor, at any sample rate and channel
count) loaded as a `Clip` at the model's rate, and the enhanced audio given back at the input's rate, length and
layout (with the input's own band above the model's, `fullband.py`, for inputs above the model's rate).

Imports numpy, torch, diffusers' logging and `fuse_hf.audio`, `fuse_hf.windows` and `fullband`, so that it travels with
the pipeline as Hub remote code.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.utils import logging

from ..audio import (
    MIN_SAMPLES_16K,
    SAMPLE_RATE,
    as_channels_first,
    avoid_clipping,
    check_sampling_rate,
    limit_attenuation,
    load_audio,
    resample,
)
from ..windows import pad_reflect
from .fullband import carry_high_band, uses_full_band

__all__ = ["AudioInput", "Clip", "as_output", "check_length", "gather_windows", "load_clips", "restore_clip"]

logger = logging.get_logger(__name__)

AudioInput = str | os.PathLike | np.ndarray | torch.Tensor


@dataclass
class Clip:
    """One input clip at the model's rate, plus what is needed to give it back at its own rate and layout."""

    audio: np.ndarray  # (channels, samples) at the model's rate
    original: np.ndarray  # (channels, samples) at the input rate
    sampling_rate: int
    was_1d: bool


def load_clips(audio: AudioInput | list[AudioInput], sampling_rate: int | None, model_rate: int) -> list[Clip]:
    """Loads every clip as `(channels, samples)` float32 and resamples it to `model_rate` (Hz).

    `sampling_rate` is the rate of array and tensor inputs; files are read at their own.

    Raises:
        ValueError: a file that cannot be read, an array of the wrong rank or with NaN/Inf, a clip too short.
    """
    clips = []
    for item in audio if isinstance(audio, (list, tuple)) else [audio]:
        if isinstance(item, (str, os.PathLike)):
            original, rate = load_audio(item)
            was_1d = False
        else:
            rate = check_sampling_rate(sampling_rate)
            array = item.detach().cpu().float().numpy() if isinstance(item, torch.Tensor) else item
            was_1d = np.ndim(array) == 1
            original = as_channels_first(array)
        resampled = resample(original, rate, model_rate)
        check_length(original.shape[1], rate, resampled.shape[1], model_rate)
        clips.append(Clip(audio=resampled, original=original, sampling_rate=rate, was_1d=was_1d))
    return clips


def gather_windows(clips: list[Clip], batch, window: int) -> torch.Tensor:
    """Stacks the windows of `batch` (`(clip index, channel, start, fades)` tuples) as `(batch, window)` float32. Only
    clips shorter than a window (or the last few milliseconds of a clip) run short; they are extended by mirroring,
    never by silence."""
    return torch.from_numpy(
        np.stack([pad_reflect(clips[i].audio[ch, start : start + window], window) for i, ch, start, _ in batch])
    )


def check_length(samples: int, rate: int, resampled: int, model_rate: int) -> None:
    """Raises a one-line ValueError when a clip of `samples` samples at `rate` Hz, `resampled` at `model_rate`, is
    too short to enhance (under 5 ms)."""
    if resampled < math.ceil(MIN_SAMPLES_16K * model_rate / SAMPLE_RATE):
        raise ValueError(
            f"audio is {samples} samples long ({1000 * samples / rate:.1f} ms); "
            f"at least {1000 * MIN_SAMPLES_16K / SAMPLE_RATE:.0f} ms is needed."
        )


def as_output(audio: np.ndarray, was_1d: bool, output_type: str = "np"):
    """`(channels, samples)` float32 -> the input's layout (`(samples,)` when it was 1-D), as numpy (`"np"`) or
    torch (`"pt"`)."""
    if was_1d:
        audio = audio[0]
    if output_type == "pt":
        return torch.from_numpy(np.ascontiguousarray(audio))
    return audio


def restore_clip(
    clip: Clip,
    enhanced: np.ndarray,
    model_rate: int,
    attenuation_limit_db: float | None = None,
    output_type="np",
    full_band: bool | None = None,
):
    """`(channels, samples)` at `model_rate` -> the clip's rate, length and layout, as numpy (`output_type="np"`)
    or torch (`"pt"`); gives a clip above `model_rate` its own high band back unless `full_band` is False
    ([`carry_high_band`]), mixes the input back for `attenuation_limit_db` and scales the result down if it would
    clip."""
    enhanced = resample(enhanced, model_rate, clip.sampling_rate)
    length = clip.original.shape[1]
    if enhanced.shape[1] < length:
        enhanced = np.pad(enhanced, ((0, 0), (0, length - enhanced.shape[1])))
    enhanced = enhanced[:, :length]
    if uses_full_band(full_band, clip.sampling_rate, model_rate):
        enhanced = carry_high_band(clip.original, enhanced, clip.sampling_rate)
    enhanced = limit_attenuation(enhanced, clip.original, attenuation_limit_db)
    (limited,) = avoid_clipping(enhanced)
    if limited is not enhanced:
        gain = float(np.max(np.abs(limited)) / np.max(np.abs(enhanced)))
        logger.warning(f"The enhanced audio peaked above 0 dBFS; scaled it by {20 * np.log10(gain):.1f} dB.")
    return as_output(limited, clip.was_1d, output_type)
