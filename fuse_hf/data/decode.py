# Copyright 2026 The fuse-hf authors. Licensed under the Apache License, Version 2.0.
"""Decoding and cropping: audio files and `datasets` cells -> mono float32 at the training rate, cut to a segment.

Files are read through :mod:`fuse_hf.audio` (`load_mono`: channels averaged and resampled in float32). What makes
an example unusable there (unreadable, empty, non-finite, too short) is a `BadAudioError` here: the datasets catch
it, warn and draw another item.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE, as_mono, audio_info, first_line, load_mono, resample
from .files import PathLike


class BadAudioError(ValueError):
    """One file or example cannot be used. Datasets catch it, warn and draw another item."""


@contextmanager
def bad_audio() -> Iterator[None]:
    """Turns the ValueErrors of `fuse_hf.audio` (unreadable, empty, non-finite, too short) into `BadAudioError`."""
    try:
        yield
    except BadAudioError:
        raise
    except ValueError as err:
        raise BadAudioError(str(err)) from err


def checked(audio: np.ndarray, name: str, min_samples: int) -> np.ndarray:
    """`audio` (samples,) float32 if it has at least `min_samples` finite samples, else `BadAudioError` naming it."""
    with bad_audio():
        return as_mono(audio, name, min_samples=min_samples)


def decode_audio(source: PathLike | bytes | io.IOBase, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a path, a binary file object or encoded bytes -> mono float32 (samples,) at `sample_rate` Hz.

    Raises:
        BadAudioError: the data cannot be decoded, is empty or holds NaN/Inf.
    """
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    with bad_audio():
        return load_mono(source, sample_rate)


def decode_audio_value(value: Any, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode one `datasets` audio cell without `datasets`' own (torchcodec) decoding -> (samples,) float32.

    Accepts what ``Audio(decode=False)`` returns (``{"bytes": ..., "path": ...}``), a decoded
    ``{"array", "sampling_rate"}`` dict, raw bytes or a path/URL (URLs are opened through fsspec).
    """
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return decode_audio(value["bytes"], sample_rate)
        if value.get("array") is not None:
            if value.get("sampling_rate") is None:
                raise BadAudioError("audio dict has an `array` but no `sampling_rate`.")
            array = np.asarray(value["array"], dtype=np.float32)
            array = array.mean(axis=0) if array.ndim == 2 else array  # datasets stores (channels, samples)
            return resample(array, int(value["sampling_rate"]), sample_rate)
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return decode_audio(value, sample_rate)
    if isinstance(value, (str, os.PathLike)):
        if os.path.exists(value) or "://" not in str(value):
            return decode_audio(value, sample_rate)
        from datasets.utils.file_utils import xopen  # remote file of a Hub dataset (hf://, https://)

        try:
            with xopen(str(value), "rb") as f:
                return decode_audio(io.BytesIO(f.read()), sample_rate)
        except OSError as err:
            raise BadAudioError(f"{value}: cannot open ({first_line(err)}).") from err
    raise BadAudioError(f"cannot decode an audio cell of type {type(value).__name__}.")


def random_crop_offset(length: int, num_samples: int, rng: np.random.Generator) -> int:
    """Start of a uniform random crop of `num_samples` out of `length` samples (0 when it does not fit)."""
    return int(rng.integers(0, length - num_samples + 1)) if length > num_samples else 0


def pad_to(audio: np.ndarray, num_samples: int, offset: int) -> np.ndarray:
    """Zero-pad (samples,) to `num_samples`, the signal starting at `offset`. Longer input is cut."""
    out = np.zeros(num_samples, dtype=np.float32)
    chunk = audio[: num_samples - offset]
    out[offset : offset + len(chunk)] = chunk
    return out


def random_pad_offset(length: int, num_samples: int, rng: np.random.Generator) -> int:
    """Where a clip of `length` samples starts in a longer segment of `num_samples` (uniform; 0 when it fills it).

    A clip shorter than the segment is placed at a random position, so the model also sees leading silence.
    """
    return int(rng.integers(0, num_samples - length + 1)) if length < num_samples else 0


def load_segment(
    path: PathLike,
    num_samples: int | None,
    rng: np.random.Generator,
    sample_rate: int = SAMPLE_RATE,
    min_samples: int = 1,
) -> tuple[np.ndarray, slice]:
    """Random crop of one file -> (segment (num_samples,) float32, slice where the clip lies in the segment).

    A clip longer than `num_samples` is cropped at a uniform random offset; a shorter one is zero-padded at a random
    position. When the file is already at `sample_rate`, only the crop is read from disk.
    ``num_samples=None`` returns the whole clip.

    Raises:
        BadAudioError: the file cannot be decoded, is shorter than `min_samples` or is not finite.
    """
    name = str(path)
    with bad_audio():
        info = audio_info(path)
    if info.sampling_rate == sample_rate and num_samples is not None and info.frames > 0:
        if info.frames < min_samples:
            raise BadAudioError(f"{name}: too short ({info.frames} samples < {min_samples}).")
        start = random_crop_offset(info.frames, num_samples, rng)
        # Only the crop is read. A truncated file can hold fewer frames than its header says (even none: an error).
        with bad_audio():
            audio = load_mono(path, start=start, frames=num_samples)
    else:
        audio = checked(decode_audio(path, sample_rate), name, min_samples)
        if num_samples is None:
            return audio, slice(0, len(audio))
        start = random_crop_offset(len(audio), num_samples, rng)
        audio = audio[start : start + num_samples]
    offset = random_pad_offset(len(audio), num_samples, rng)
    return pad_to(audio, num_samples, offset), slice(offset, offset + len(audio))


def crop_pair(
    clean: np.ndarray, noisy: np.ndarray, num_samples: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Crop/pad two aligned (samples,) signals with the same offset -> two (num_samples,) float32 arrays.

    Signals of different lengths are first cut to the shorter one (the tail of the longer one has no partner).
    """
    length = min(len(clean), len(noisy))
    if num_samples is None:
        return clean[:length], noisy[:length]
    start = random_crop_offset(length, num_samples, rng)
    clean, noisy = clean[start : start + min(length, num_samples)], noisy[start : start + min(length, num_samples)]
    offset = random_pad_offset(len(clean), num_samples, rng)
    return pad_to(clean, num_samples, offset), pad_to(noisy, num_samples, offset)


def tile_to(audio: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Loop a (samples,) noise to at least `num_samples` and crop at a random offset -> (num_samples,).

    Noise is stationary enough that looping beats zero-padding (which would make the SNR vary inside a segment).
    """
    if len(audio) == 0:
        return np.zeros(num_samples, dtype=np.float32)
    reps = -(-(num_samples + len(audio)) // len(audio))
    looped = np.tile(audio, reps)
    start = int(rng.integers(0, len(audio)))
    return np.ascontiguousarray(looped[start : start + num_samples], dtype=np.float32)
