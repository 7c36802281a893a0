# Copyright 2026 The fuse-hf authors. Licensed under the Apache License, Version 2.0.
"""Training data for FUSE: paired folders, on-the-fly mixing and Hugging Face `datasets`.

Every dataset here yields the same item: ``dict(clean=Tensor (samples,), noisy=Tensor (samples,))``, float32
waveforms in [-1, 1] at ``sample_rate`` (16 kHz by default), mono, of a fixed length ``segment_samples``.
`collate` stacks a list of items into ``(batch, samples)`` tensors.

Three sources, chosen by `build_dataset` / `build_train_dataset` (exactly one per run):

* `PairedFolderDataset`: ``clean/`` + ``noisy/`` folders with matching relative names (VoiceBank-DEMAND, sgmse's
  ``base/{train,valid,test}/{clean,noisy}``).
* `MixingDataset`: speech and noise files mixed on the fly at random SNRs, with the augmentations of `AugmentConfig`
  (synthetic noises, reverberation, EQ and band-limiting of the input, random level).
* `HFAudioDataset` / `HFStreamingAudioDataset`: a Hugging Face dataset (Hub name, local parquet/arrow files or a
  `save_to_disk` folder) with a clean and a noisy audio column, or a speech column mixed with noise files.

Determinism: item ``i`` at epoch ``e`` is a pure function of ``(seed, e, i)``; every random draw comes from
``numpy.random.default_rng([seed, e, i])``, never from global state, so DataLoader workers and resumed runs see the
same data. Call ``dataset.set_epoch(e)`` before each epoch (with ``persistent_workers=True`` the workers keep the
epoch they were started with, so leave it off or rebuild the loader).

Bad data policy: a missing folder, paired folders with unpaired names or an unknown column is a `ValueError` at
construction. A non-audio file in a folder is skipped with an `AudioDataWarning` when the file list is built. A file
that cannot be decoded, holds NaN/inf or is shorter than ``min_duration_s`` is found when it is first read: it is
skipped with an `AudioDataWarning` and the item is drawn again from another file, chosen deterministically, so an
epoch never stops in the middle.

Audio is decoded with soundfile (libsndfile) and resampled with soxr; torchaudio and torchcodec are not used (they do
not load here, and `datasets`' own audio decoding needs torchcodec, hence ``Audio(decode=False)`` below).
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf
import torch
from scipy import signal as sps

from .audio import SAMPLE_RATE, resample

# Extensions libsndfile decodes (soundfile.available_formats() plus their usual aliases). Opus lives in Ogg.
AUDIO_EXTENSIONS = frozenset(
    {
        ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc", ".au", ".snd",
        ".caf", ".w64", ".rf64", ".htk", ".sph", ".nist", ".voc", ".mat", ".paf", ".pvf", ".sd2", ".xi", ".ircam",
    }
)

# Errors soundfile/soxr raise for unreadable or malformed audio (LibsndfileError is a RuntimeError).
_DECODE_ERRORS = (RuntimeError, OSError, ValueError, EOFError, TypeError)

PathLike = Union[str, os.PathLike]
Item = Dict[str, torch.Tensor]


class AudioDataWarning(UserWarning):
    """A file or example was skipped (not audio, unreadable, too short, non-finite samples)."""


class BadAudioError(ValueError):
    """Internal: one file or example cannot be used. Datasets catch it, warn and draw another item."""


class _KnownBadFile(BadAudioError):
    """A file already reported as bad: redraw without warning again."""


# ---------------------------------------------------------------------------------------------------------------
# Files and manifests
# ---------------------------------------------------------------------------------------------------------------


def _check_dir(path: PathLike, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ValueError(f"{what} `{path}`: folder not found. Pass an existing folder of audio files.")
    return path


def list_audio_files(folder: PathLike, warn_skipped: bool = True) -> List[Path]:
    """Audio files under `folder`, recursively, sorted by relative path.

    Files are selected by extension (`AUDIO_EXTENSIONS`, case-insensitive); hidden files and folders are ignored. Other
    files are skipped with one `AudioDataWarning` that names a few of them (``warn_skipped=False`` silences it).

    Raises:
        ValueError: `folder` does not exist.
    """
    root = _check_dir(folder, "Audio folder")
    audio, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            (audio if path.suffix.lower() in AUDIO_EXTENSIONS else skipped).append(path)
    if skipped and warn_skipped:
        examples = ", ".join(str(p.relative_to(root)) for p in sorted(skipped)[:3])
        warnings.warn(
            f"{root}: skipped {len(skipped)} non-audio file(s) (e.g. {examples}).", AudioDataWarning, stacklevel=2
        )
    return sorted(audio, key=lambda p: p.relative_to(root).as_posix())


def _as_file_list(source: Union[PathLike, Sequence[PathLike], None], what: str) -> List[Path]:
    """A folder (listed recursively) or an explicit sequence of files -> list of paths."""
    if source is None:
        return []
    if isinstance(source, (str, os.PathLike)):
        return list_audio_files(source)
    files = [Path(p).expanduser() for p in source]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise ValueError(f"{what}: {len(missing)} file(s) not found, e.g. {missing[:3]}. Check the paths.")
    return files


def read_manifest(manifest: PathLike) -> Dict[str, Dict[str, str]]:
    """The corpus ``manifest.csv`` (``path,...,split,rms_dbfs,hf4k_db,...``) as ``{absolute path: row}``.

    Paths in the manifest are relative to its folder.
    """
    manifest = Path(manifest).expanduser()
    if not manifest.is_file():
        raise ValueError(f"Manifest `{manifest}`: file not found. Pass the corpus' manifest.csv.")
    root = os.path.abspath(manifest.parent)  # abspath, not resolve: keep symlinked folders as the user wrote them
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "path" not in rows[0]:
        raise ValueError(f"Manifest `{manifest}`: no `path` column (found {sorted(rows[0])}).")
    return {os.path.join(root, os.path.normpath(row["path"])): row for row in rows}


def find_manifest(folder: PathLike, max_up: int = 2) -> Optional[Path]:
    """``manifest.csv`` in `folder` or up to `max_up` parents (``corpus/speech/train`` -> ``corpus``), else None."""
    folder = Path(os.path.abspath(Path(folder).expanduser()))
    for candidate in [folder, *folder.parents][: max_up + 1]:
        if (candidate / "manifest.csv").is_file():
            return candidate / "manifest.csv"
    return None


def corpus_files(corpus_root: PathLike, kind: str, split: Optional[str] = None) -> List[Path]:
    """Files of the fuse corpus (``../shared/corpus/build_corpus.sh``) selected through its manifest.

    Args:
        corpus_root: folder holding ``manifest.csv`` (e.g. ``~/.cache/fuse-corpus``).
        kind: ``"speech"``, ``"noise"`` or ``"speech_narrowband"`` (the top-level folder).
        split: ``"train"``, ``"valid"`` or None for all (the narrowband prompts have no split).

    Returns:
        Sorted absolute paths.
    """
    kinds = ("speech", "noise", "speech_narrowband")
    if kind not in kinds:
        raise ValueError(f"corpus_files: unknown kind {kind!r}. Use one of {kinds}.")
    rows = read_manifest(Path(corpus_root).expanduser() / "manifest.csv")
    files = [
        Path(p)
        for p, row in rows.items()
        if row["path"].split("/", 1)[0] == kind and (split is None or row.get("split") == split)
    ]
    if not files:
        raise ValueError(f"corpus_files: no {kind!r} files with split={split!r} in {corpus_root}/manifest.csv.")
    return sorted(files)


def wideband_weights(
    files: Sequence[PathLike], manifest: PathLike, factor: float = 4.0, min_hf4k_db: float = -30.0
) -> np.ndarray:
    """Sampling weights that favour wideband speech: `factor` for files whose ``hf4k_db`` > `min_hf4k_db`, else 1.

    ``hf4k_db`` is the energy above 4 kHz relative to the total (dB); band-limited audio sits below -40 dB. Files
    missing from the manifest get weight 1.

    Returns:
        float64 array (len(files),), normalised to sum to 1.
    """
    rows = read_manifest(manifest)
    weights = np.ones(len(files))
    for k, path in enumerate(files):
        row = rows.get(os.path.abspath(Path(path).expanduser()))
        if row is not None and row.get("hf4k_db") not in (None, "") and float(row["hf4k_db"]) > min_hf4k_db:
            weights[k] = factor
    return weights / weights.sum()


# ---------------------------------------------------------------------------------------------------------------
# Decoding and cropping
# ---------------------------------------------------------------------------------------------------------------


def _to_mono(audio: np.ndarray) -> np.ndarray:
    """(samples, channels) -> (samples,) float32; channels are averaged."""
    return audio.mean(axis=1, dtype=np.float32) if audio.ndim == 2 else audio.astype(np.float32, copy=False)


def _check_audio(audio: np.ndarray, name: str, min_samples: int) -> np.ndarray:
    if len(audio) < min_samples:
        raise BadAudioError(f"{name}: too short ({len(audio)} samples < {min_samples}).")
    if not np.all(np.isfinite(audio)):
        raise BadAudioError(f"{name}: contains NaN or inf samples.")
    return audio


def decode_audio(source: Union[PathLike, bytes, io.IOBase], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a file, a path or encoded bytes with soundfile -> mono float32 (samples,) at `sample_rate` Hz.

    Raises:
        BadAudioError: the data cannot be decoded.
    """
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        audio, sr = sf.read(source, dtype="float32", always_2d=True)
    except _DECODE_ERRORS as err:
        raise BadAudioError(f"{name}: cannot decode audio ({err}).") from err
    return resample(_to_mono(audio), sr, sample_rate)


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
            raise BadAudioError(f"{value}: cannot open ({err}).") from err
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


def _pad_offset(length: int, num_samples: int, rng: np.random.Generator) -> int:
    # A clip shorter than the segment is placed at a random position, so the model also sees leading silence.
    return int(rng.integers(0, num_samples - length + 1)) if length < num_samples else 0


def load_segment(
    path: PathLike,
    num_samples: Optional[int],
    rng: np.random.Generator,
    sample_rate: int = SAMPLE_RATE,
    min_samples: int = 1,
) -> Tuple[np.ndarray, slice]:
    """Random crop of one file -> (segment (num_samples,) float32, slice where the clip lies in the segment).

    A clip longer than `num_samples` is cropped at a uniform random offset; a shorter one is zero-padded at a random
    position. When the file is already at `sample_rate`, only the crop is read from disk.
    ``num_samples=None`` returns the whole clip.

    Raises:
        BadAudioError: the file cannot be decoded, is shorter than `min_samples` or is not finite.
    """
    name = str(path)
    try:
        info = sf.info(str(path))
    except _DECODE_ERRORS as err:
        raise BadAudioError(f"{name}: cannot decode audio ({err}).") from err
    if info.samplerate == sample_rate and num_samples is not None and info.frames > 0:
        if info.frames < min_samples:
            raise BadAudioError(f"{name}: too short ({info.frames} samples < {min_samples}).")
        start = random_crop_offset(info.frames, num_samples, rng)
        try:
            audio, _ = sf.read(str(path), start=start, frames=num_samples, dtype="float32", always_2d=True)
        except _DECODE_ERRORS as err:
            raise BadAudioError(f"{name}: cannot decode audio ({err}).") from err
        audio = _check_audio(_to_mono(audio), name, 1)  # a truncated file can hold fewer frames than its header says
    else:
        audio = _check_audio(decode_audio(path, sample_rate), name, min_samples)
        if num_samples is None:
            return audio, slice(0, len(audio))
        start = random_crop_offset(len(audio), num_samples, rng)
        audio = audio[start : start + num_samples]
    offset = _pad_offset(len(audio), num_samples, rng)
    return pad_to(audio, num_samples, offset), slice(offset, offset + len(audio))


def crop_pair(
    clean: np.ndarray, noisy: np.ndarray, num_samples: Optional[int], rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray]:
    """Crop/pad two aligned (samples,) signals with the same offset -> two (num_samples,) float32 arrays.

    Signals of different lengths are first cut to the shorter one (the tail of the longer one has no partner).
    """
    length = min(len(clean), len(noisy))
    if num_samples is None:
        return clean[:length], noisy[:length]
    start = random_crop_offset(length, num_samples, rng)
    clean, noisy = clean[start : start + min(length, num_samples)], noisy[start : start + min(length, num_samples)]
    offset = _pad_offset(len(clean), num_samples, rng)
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


# ---------------------------------------------------------------------------------------------------------------
# Augmentations: small pure functions of (signal, parameters, rng). Signals are float (samples,) arrays.
# ---------------------------------------------------------------------------------------------------------------


def power(x: np.ndarray) -> float:
    """Mean power of (samples,) (linear)."""
    return float(np.mean(np.square(x, dtype=np.float64))) if len(x) else 0.0


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level in dBFS (a full-scale sine is -3 dBFS); -inf for silence."""
    p = power(x)
    return 10 * math.log10(p) if p > 0 else -math.inf


def mix_at_snr(
    speech: np.ndarray, noise: np.ndarray, snr_db: float, speech_region: Optional[slice] = None
) -> Tuple[np.ndarray, np.ndarray]:
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
    fundamental_hz: Optional[float] = None,
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


def apply_rir(speech: np.ndarray, rir: np.ndarray, early_s: Optional[float] = 0.05, sample_rate: int = SAMPLE_RATE):
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


def apply_lowpass(x: np.ndarray, cutoff_hz: float, sample_rate: int = SAMPLE_RATE, order: int = 8) -> np.ndarray:
    """Zero-phase Butterworth low-pass of (samples,) at `cutoff_hz` Hz (band-limiting, e.g. 3.4 kHz = telephone).

    Zero phase (forward-backward) keeps the input aligned with the target. A cutoff at or above 0.99 * Nyquist is a
    no-op.
    """
    if cutoff_hz >= 0.99 * sample_rate / 2:
        return np.asarray(x, dtype=np.float32)
    sos = sps.butter(order // 2, cutoff_hz, btype="low", fs=sample_rate, output="sos")  # filtfilt doubles the order
    return sps.sosfiltfilt(sos, x).astype(np.float32)


def set_level(reference: np.ndarray, target_dbfs: float) -> float:
    """Gain (linear) that brings the RMS of `reference` to `target_dbfs` dBFS (1.0 for silence)."""
    p = power(reference)
    return 10 ** (target_dbfs / 20) / math.sqrt(p) if p > 0 else 1.0


def avoid_clipping(*signals: np.ndarray, peak: float = 0.99) -> Tuple[np.ndarray, ...]:
    """Scale all signals by the same gain if any |sample| exceeds `peak`; never clip (it would change the target)."""
    top = max(float(np.max(np.abs(s))) if len(s) else 0.0 for s in signals)
    if top <= peak:
        return signals
    gain = np.float32(peak / top)
    return tuple((s * gain).astype(np.float32) for s in signals)


# ---------------------------------------------------------------------------------------------------------------
# The mixer
# ---------------------------------------------------------------------------------------------------------------

SYNTHETIC_NOISES = ("white", "pink", "brown", "hum", "babble")


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the `Mixer`'s augmentations. ``AugmentConfig.none()`` turns them all off.

    Levels in dBFS, SNRs in dB, frequencies in Hz, times in seconds.
    """

    snr_db: Tuple[float, float] = (-5.0, 20.0)  # uniform
    level_dbfs: Optional[Tuple[float, float]] = (-35.0, -15.0)  # RMS of the noisy input (None: keep the level)
    synthetic_noise_prob: float = 0.3  # use a synthetic noise instead of a recorded one
    synthetic_noises: Tuple[str, ...] = SYNTHETIC_NOISES
    second_noise_prob: float = 0.2  # add a second (synthetic) noise, 0..10 dB below the first
    babble_talkers: Tuple[int, int] = (3, 7)  # [low, high) talkers in babble
    reverb_prob: float = 0.3
    rt60_s: Tuple[float, float] = (0.2, 1.0)
    drr_db: Tuple[float, float] = (-3.0, 10.0)
    # Target of reverberant items: "early" = direct path + first 50 ms of reflections (the model removes the late
    # reverb but keeps the room's colouring, which is easier to learn and sounds natural); "dry" = the anechoic speech.
    reverb_target: str = "early"
    eq_prob: float = 0.3  # random EQ of the noisy input only
    eq_max_gain_db: float = 8.0
    lowpass_prob: float = 0.2  # band-limit the noisy input only, to teach robustness to narrowband input
    lowpass_hz: Tuple[float, float] = (3400.0, 8000.0)
    clip_peak: float = 0.99

    def __post_init__(self):
        unknown = set(self.synthetic_noises) - set(SYNTHETIC_NOISES)
        if unknown:
            raise ValueError(f"AugmentConfig.synthetic_noises: unknown {sorted(unknown)}. Use {SYNTHETIC_NOISES}.")
        if self.reverb_target not in ("early", "dry"):
            raise ValueError(f"AugmentConfig.reverb_target={self.reverb_target!r}: use 'early' or 'dry'.")
        if self.snr_db[0] > self.snr_db[1]:
            raise ValueError(f"AugmentConfig.snr_db={self.snr_db}: low > high.")

    @classmethod
    def none(cls, snr_db: Tuple[float, float] = (-5.0, 20.0), **overrides) -> "AugmentConfig":
        """Plain mixing: recorded noise at a random SNR and level, nothing else."""
        off = dict(synthetic_noise_prob=0.0, second_noise_prob=0.0, reverb_prob=0.0, eq_prob=0.0, lowpass_prob=0.0)
        return cls(snr_db=tuple(snr_db), **{**off, **overrides})


class Mixer:
    """Turns a clean speech segment into a (clean target, noisy input) pair; all randomness comes from `rng`.

    Args:
        noise_files: recorded noises (any length; looped or cropped). Empty: synthetic noise only.
        config: `AugmentConfig`.
        sample_rate: Hz.
        min_samples: noise files shorter than this are skipped.
    """

    def __init__(self, noise_files: Sequence[PathLike], config: AugmentConfig, sample_rate: int = SAMPLE_RATE,
                 min_samples: int = 1):
        self.noise_files = [Path(p) for p in noise_files]
        self.config = config
        self.sample_rate = sample_rate
        self.min_samples = min_samples
        self._bad: set = set()
        if not self.noise_files and not config.synthetic_noises:
            raise ValueError("Mixer: no noise files and no synthetic noises. Pass a noise folder or synthetic kinds.")

    def _recorded_noise(self, num_samples: int, rng: np.random.Generator) -> Optional[np.ndarray]:
        """A recorded noise crop; unreadable files are skipped with a warning (another file is drawn)."""
        for _ in range(8):
            path = self.noise_files[int(rng.integers(len(self.noise_files)))]
            if path in self._bad:
                continue
            try:
                noise = _check_audio(decode_audio(path, self.sample_rate), str(path), self.min_samples)
            except BadAudioError as err:
                self._bad.add(path)
                warnings.warn(f"skipping noise file: {err}", AudioDataWarning, stacklevel=3)
                continue
            return tile_to(noise, num_samples, rng)
        return None

    def synthetic_noise(
        self, kind: str, num_samples: int, rng: np.random.Generator,
        babble_source: Optional[Callable[[np.random.Generator, int], List[np.ndarray]]] = None,
    ) -> np.ndarray:
        """Unit-RMS synthetic noise of `kind` (one of `SYNTHETIC_NOISES`) -> (num_samples,) float32."""
        if kind == "white":
            return white_noise(num_samples, rng)
        if kind == "pink":
            return pink_noise(num_samples, rng)
        if kind == "brown":
            return brown_noise(num_samples, rng)
        if kind == "hum":
            return mains_hum(num_samples, rng, self.sample_rate)
        if kind == "babble" and babble_source is not None:
            talkers = babble_source(rng, int(rng.integers(*self.config.babble_talkers)))
            if talkers:
                return babble(talkers)
        return pink_noise(num_samples, rng)  # babble without a speech pool

    def _noise(self, num_samples, rng, babble_source) -> Tuple[np.ndarray, str]:
        cfg = self.config
        kinds = [k for k in cfg.synthetic_noises if k != "babble" or babble_source is not None]
        use_synthetic = bool(kinds) and (not self.noise_files or rng.random() < cfg.synthetic_noise_prob)
        noise = None if use_synthetic else self._recorded_noise(num_samples, rng)
        if noise is not None:
            kind = "recorded"
        else:
            kind = str(rng.choice(kinds)) if kinds else "pink"
            noise = self.synthetic_noise(kind, num_samples, rng, babble_source)
        if kinds and rng.random() < cfg.second_noise_prob:
            extra_kind = str(rng.choice(kinds))
            extra = self.synthetic_noise(extra_kind, num_samples, rng, babble_source)
            noise = noise / (np.sqrt(power(noise)) + 1e-8) + extra * np.float32(10 ** (-rng.uniform(0, 10) / 20))
            kind += "+" + extra_kind
        return noise.astype(np.float32), kind

    def __call__(
        self,
        speech: np.ndarray,
        rng: np.random.Generator,
        speech_region: Optional[slice] = None,
        babble_source: Optional[Callable[[np.random.Generator, int], List[np.ndarray]]] = None,
    ) -> Dict[str, Any]:
        """Mix one segment.

        Args:
            speech: clean (samples,) float32 segment (zero-padded outside `speech_region`).
            rng: the item's generator; every draw comes from it.
            speech_region: where the clip lies in the segment (for the SNR), default all of it.
            babble_source: ``f(rng, n) -> n`` other speech segments of the same length, for babble noise.

        Returns:
            dict(clean (samples,), noisy (samples,) float32, snr_db, noise_kind, reverb (bool)).
        """
        cfg, n = self.config, len(speech)
        speech = np.asarray(speech, dtype=np.float32)
        # 1. Room: the mixture holds the reverberant speech; the target is dry or early-reverberant speech.
        wet, target, reverb = speech, speech, False
        if rng.random() < cfg.reverb_prob:
            rir = synth_rir(rng.uniform(*cfg.rt60_s), rng, self.sample_rate, drr_db=rng.uniform(*cfg.drr_db))
            wet, target = apply_rir(speech, rir, 0.05 if cfg.reverb_target == "early" else None, self.sample_rate)
            reverb = True
        # 2. Noise at a uniform random SNR relative to the speech that is in the mixture.
        noise, kind = self._noise(n, rng, babble_source)
        snr_db = float(rng.uniform(*cfg.snr_db))
        noisy, _ = mix_at_snr(wet, noise, snr_db, speech_region)
        # 3. Channel of the *input* only: the model must undo colouring and bandwidth loss, so the target stays clean.
        if rng.random() < cfg.eq_prob:
            noisy = random_eq(noisy, rng, self.sample_rate, cfg.eq_max_gain_db)
        if rng.random() < cfg.lowpass_prob:
            noisy = apply_lowpass(noisy, rng.uniform(*cfg.lowpass_hz), self.sample_rate)
        # 4. Level: one gain for both keeps their relation; then scale down (never clip) if a peak is too high.
        if cfg.level_dbfs is not None:
            gain = np.float32(set_level(noisy, rng.uniform(*cfg.level_dbfs)))
            noisy, target = noisy * gain, target * gain
        noisy, target = avoid_clipping(noisy.astype(np.float32), target.astype(np.float32), peak=cfg.clip_peak)
        return dict(clean=target, noisy=noisy, snr_db=snr_db, noise_kind=kind, reverb=reverb)


def _augment_config(augment: Union[AugmentConfig, bool, None], snr_db: Optional[Tuple[float, float]]):
    """AugmentConfig from the datasets' `augment` argument: a config, True/None (all on) or False (plain mixing)."""
    if isinstance(augment, AugmentConfig):
        return augment if snr_db is None else replace(augment, snr_db=tuple(snr_db))
    snr = tuple(snr_db) if snr_db is not None else AugmentConfig.snr_db
    return AugmentConfig.none(snr_db=snr) if augment is False else AugmentConfig(snr_db=snr)


# ---------------------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------------------


def _item(clean: np.ndarray, noisy: np.ndarray) -> Item:
    return dict(clean=torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32)),
                noisy=torch.from_numpy(np.ascontiguousarray(noisy, dtype=np.float32)))


class _SeededDataset(torch.utils.data.Dataset):
    """Shared seed/epoch handling and the skip-and-redraw loop for bad files."""

    max_redraws = 16

    def __init__(self, seed: int, sample_rate: int, min_duration_s: float):
        self.seed = int(seed)
        self.epoch = 0
        self.sample_rate = int(sample_rate)
        self.min_samples = max(1, int(round(min_duration_s * sample_rate)))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: item i at epoch e is a pure function of (seed, e, i)."""
        self.epoch = int(epoch)

    def rng(self, index: int, attempt: int = 0) -> np.random.Generator:
        key = [self.seed, self.epoch, int(index)] + ([attempt] if attempt else [])
        return np.random.default_rng(key)

    def _warn_skip(self, err: Exception) -> None:
        warnings.warn(f"skipping bad example: {err}", AudioDataWarning, stacklevel=3)

    def _get(self, index: int, rng: np.random.Generator) -> Item:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        # A bad example is replaced by another index drawn from rng(index, attempt): still a pure function of
        # (seed, epoch, index), so a corrupted file never stops an epoch nor breaks determinism.
        for attempt in range(self.max_redraws):
            rng = self.rng(index, attempt)
            candidate = int(rng.integers(len(self))) if attempt else index
            try:
                return self._get(candidate, rng)
            except BadAudioError as err:
                self._warn_skip(err)
        raise RuntimeError(f"{type(self).__name__}: {self.max_redraws} bad examples in a row near index {index}; "
                           "the data looks mostly unreadable.")


class PairedFolderDataset(_SeededDataset):
    """Paired ``clean/`` + ``noisy/`` folders with matching relative file names, randomly cropped.

    Layouts: ``root/{clean,noisy}`` (VoiceBank-DEMAND) or ``root/<split>/{clean,noisy}`` (sgmse's
    ``base/{train,valid,test}``). Files pair by relative path without extension (``a/b.wav`` pairs ``a/b.flac``).

    Args:
        root: the folder holding ``clean/`` and ``noisy/``, or its parent when `split` is given.
        segment_samples: crop length in samples (None: whole clips, batch size 1).
        sample_rate: output rate in Hz; other rates are resampled with soxr.
        seed: base seed.
        split: optional sub-folder (``"train"``, ``"valid"``, ``"test"``).
        min_duration_s: shorter clips are skipped with a warning.

    Raises:
        ValueError: a folder is missing, is empty, or some names have no partner (the first few are listed). Unpaired
            files are an error rather than skipped because they usually mean a wrong folder or an incomplete copy.

    Item: ``dict(clean=(segment_samples,), noisy=(segment_samples,))`` float32, cropped at the same offset.
    """

    def __init__(self, root: PathLike, segment_samples: Optional[int], sample_rate: int = SAMPLE_RATE, seed: int = 0,
                 split: Optional[str] = None, min_duration_s: float = 0.02):
        super().__init__(seed, sample_rate, min_duration_s)
        base = _check_dir(root, "Paired data folder")
        if split is not None:
            base = _check_dir(base / split, f"Split `{split}` of")
        for sub in ("clean", "noisy"):
            if not (base / sub).is_dir():
                found = sorted(p.name for p in base.iterdir() if p.is_dir())
                raise ValueError(f"Paired data folder `{base}`: no `{sub}/` sub-folder (found {found}). Expected "
                                 "`clean/` and `noisy/` with matching file names, or pass split=train/valid/test.")
        self.root = base
        self.segment_samples = segment_samples
        self.pairs = self._pair(list_audio_files(base / "clean"), list_audio_files(base / "noisy"))

    def _pair(self, clean: List[Path], noisy: List[Path]) -> List[Tuple[Path, Path]]:
        def keyed(files, sub):
            keys = {}
            for p in files:
                key = p.relative_to(self.root / sub).with_suffix("").as_posix()
                if key in keys:
                    raise ValueError(f"{self.root / sub}: `{keys[key].name}` and `{p.name}` share the name `{key}`. "
                                     "Keep one file per name.")
                keys[key] = p
            return keys

        c, n = keyed(clean, "clean"), keyed(noisy, "noisy")
        if not c:
            raise ValueError(f"{self.root / 'clean'}: no audio files found.")
        only_clean, only_noisy = sorted(set(c) - set(n)), sorted(set(n) - set(c))
        if only_clean or only_noisy:
            raise ValueError(
                f"Paired data folder `{self.root}`: {len(only_clean)} clean file(s) without a noisy partner "
                f"(e.g. {only_clean[:3]}) and {len(only_noisy)} noisy file(s) without a clean partner "
                f"(e.g. {only_noisy[:3]}). Names must match between clean/ and noisy/.")
        return [(c[k], n[k]) for k in sorted(c)]

    def __len__(self) -> int:
        return len(self.pairs)

    def _get(self, index: int, rng: np.random.Generator) -> Item:
        clean_path, noisy_path = self.pairs[index]
        clean = _check_audio(self._read(clean_path), str(clean_path), self.min_samples)
        noisy = _check_audio(self._read(noisy_path), str(noisy_path), self.min_samples)
        return _item(*crop_pair(clean, noisy, self.segment_samples, rng))

    def _read(self, path: Path) -> np.ndarray:
        # Whole files: VoiceBank clips are a few seconds. Reading both fully keeps their alignment exact, even when
        # they are stored at different sample rates.
        return decode_audio(path, self.sample_rate)


class MixingDataset(_SeededDataset):
    """Speech mixed with noise on the fly (see `Mixer` and `AugmentConfig`).

    Args:
        speech: a folder (listed recursively) or a list of speech files; these are the clean targets.
        noise: a folder or list of recorded noises; None or empty: synthetic noises only.
        segment_samples: fixed item length in samples.
        snr_db: uniform SNR range in dB; None: ``augment.snr_db`` (default -5..20 dB).
        sample_rate: Hz.
        seed: base seed.
        augment: `AugmentConfig`, or False for plain mixing (`AugmentConfig.none`). Default: all augmentations.
        length: items per epoch (default: the number of speech files).
        manifest: the corpus' ``manifest.csv``: speech files with ``hf4k_db > wideband_min_hf4k_db`` are drawn
            `wideband_weight` times as often (the corpus' Dutch speech is band-limited near 4 kHz).
        speech_weights: explicit sampling weights (len(speech),), instead of a manifest.
        min_duration_s: shorter speech files are skipped with a warning.

    Item i at epoch e: ``dict(clean=(segment_samples,), noisy=(segment_samples,))`` float32, a pure function of
    (seed, e, i). Speech files are drawn with replacement (weighted), so epochs differ in content, not only in order.
    """

    def __init__(
        self,
        speech: Union[PathLike, Sequence[PathLike]],
        noise: Union[PathLike, Sequence[PathLike], None],
        segment_samples: int,
        snr_db: Optional[Tuple[float, float]] = None,
        sample_rate: int = SAMPLE_RATE,
        seed: int = 0,
        augment: Union[AugmentConfig, bool, None] = None,
        length: Optional[int] = None,
        manifest: Optional[PathLike] = None,
        wideband_weight: float = 4.0,
        wideband_min_hf4k_db: float = -30.0,
        speech_weights: Optional[Sequence[float]] = None,
        min_duration_s: float = 0.02,
    ):
        super().__init__(seed, sample_rate, min_duration_s)
        if segment_samples is None or int(segment_samples) <= 0:
            raise ValueError(f"MixingDataset: segment_samples={segment_samples}; pass a positive length in samples.")
        self.speech_files = _as_file_list(speech, "Speech files")
        if not self.speech_files:
            raise ValueError(f"MixingDataset: no speech audio files in {speech}.")
        noise_files = _as_file_list(noise, "Noise files")
        self.mixer = Mixer(noise_files, _augment_config(augment, snr_db), sample_rate, self.min_samples)
        self.segment_samples = int(segment_samples)
        self.length = int(length) if length is not None else len(self.speech_files)
        if speech_weights is not None:
            w = np.asarray(speech_weights, dtype=np.float64)
            if w.shape != (len(self.speech_files),) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError(
                    f"MixingDataset: speech_weights must be {len(self.speech_files)} non-negative numbers.")
            self.weights = w / w.sum()
        elif manifest is not None:
            self.weights = wideband_weights(self.speech_files, manifest, wideband_weight, wideband_min_hf4k_db)
        else:
            self.weights = None
        self._bad: set = set()

    @property
    def noise_files(self) -> List[Path]:
        return self.mixer.noise_files

    def __len__(self) -> int:
        return self.length

    def _draw_speech(self, rng: np.random.Generator) -> int:
        n = len(self.speech_files)
        return int(rng.choice(n, p=self.weights)) if self.weights is not None else int(rng.integers(n))

    def _babble_source(self, exclude: int) -> Callable[[np.random.Generator, int], List[np.ndarray]]:
        def source(rng: np.random.Generator, talkers: int) -> List[np.ndarray]:
            out = []
            for _ in range(talkers):
                k = int(rng.integers(len(self.speech_files)))
                if k == exclude or self.speech_files[k] in self._bad:
                    continue
                try:
                    # Loop each talker so babble covers the segment (no gaps where the SNR would jump).
                    segment, region = load_segment(self.speech_files[k], None, rng, self.sample_rate, self.min_samples)
                    out.append(tile_to(segment, self.segment_samples, rng))
                except BadAudioError:
                    self._bad.add(self.speech_files[k])
            return out

        return source

    def mix(self, rng: np.random.Generator, speech_index: Optional[int] = None) -> Dict[str, Any]:
        """One mixture from `rng`: dict(clean, noisy (samples,) float32, snr_db, noise_kind, reverb, speech (path)).

        The speech file is drawn from `rng` (weighted) unless `speech_index` is given.
        """
        k = self._draw_speech(rng) if speech_index is None else int(speech_index)
        path = self.speech_files[k]
        if path in self._bad:
            raise _KnownBadFile(f"{path}: known bad file.")
        try:
            speech, region = load_segment(path, self.segment_samples, rng, self.sample_rate, self.min_samples)
        except BadAudioError:
            self._bad.add(path)
            raise
        out = self.mixer(speech, rng, region, self._babble_source(k))
        out["speech"] = path
        return out

    def _get(self, index: int, rng: np.random.Generator) -> Item:
        out = self.mix(rng)
        return _item(out["clean"], out["noisy"])

    def _warn_skip(self, err: Exception) -> None:
        if not isinstance(err, _KnownBadFile):  # warn once per file
            super()._warn_skip(err)


def make_validation_pairs(
    speech_files: Sequence[PathLike],
    noise_files: Sequence[PathLike],
    n: int,
    segment_samples: int,
    seed: int = 0,
    snr_db: Tuple[float, float] = (-5.0, 15.0),
    sample_rate: int = SAMPLE_RATE,
    synthetic_noises: Tuple[str, ...] = ("white", "pink", "babble"),
    synthetic_noise_prob: float = 0.3,
) -> List[Dict[str, Any]]:
    """A fixed, seeded validation set: the same `n` pairs on every call.

    Speech files are spread evenly over `speech_files` (pair i uses file ``i * len // n``), each cropped to
    `segment_samples` (zero-padded if shorter); noise is a recorded file or, with `synthetic_noise_prob`, white or
    pink noise or babble of other validation speech; SNR uniform in `snr_db`; no reverb, EQ or band-limiting (they
    would blur what the metrics measure). A fixed RMS level of -25 dBFS keeps the pairs comparable.

    Returns:
        list of dict(clean (segment_samples,) np.float32, noisy (segment_samples,) np.float32, snr_db (float),
        name (str, e.g. ``"val003_<speech stem>_pink_+4.2dB"``)).
    """
    speech_files = [Path(p) for p in speech_files]
    if not speech_files:
        raise ValueError("make_validation_pairs: no speech files.")
    config = AugmentConfig.none(snr_db=snr_db, synthetic_noise_prob=synthetic_noise_prob,
                                synthetic_noises=tuple(synthetic_noises), level_dbfs=(-25.0, -25.0))
    dataset = MixingDataset(speech_files, list(noise_files), segment_samples, None, sample_rate, seed, config)
    pairs, skipped = [], 0
    i = 0
    while len(pairs) < n:
        # Spread the pairs over the whole list (files sorted by name cluster by scene/speaker); a bad file shifts
        # the following pairs to the next files.
        k = (i * len(speech_files) // n + skipped) % len(speech_files)
        try:
            out = dataset.mix(np.random.default_rng([seed, 0, i, skipped]), speech_index=k)
        except BadAudioError as err:
            warnings.warn(f"skipping bad validation file: {err}", AudioDataWarning, stacklevel=2)
            skipped += 1
            if skipped > len(speech_files):
                raise ValueError("make_validation_pairs: no readable speech files.") from err
            continue
        name = f"val{i:03d}_{speech_files[k].stem}_{out['noise_kind']}_{out['snr_db']:+.1f}dB"
        pairs.append(dict(clean=out["clean"], noisy=out["noisy"], snr_db=out["snr_db"], name=name))
        i += 1
    return pairs


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face datasets
# ---------------------------------------------------------------------------------------------------------------


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def load_hf_dataset(
    dataset_name_or_path: str,
    split: str = "train",
    streaming: bool = False,
    config_name: Optional[str] = None,
    data_files: Any = None,
    cache_dir: Optional[str] = None,
):
    """Load a `datasets` split: a `save_to_disk` folder (`load_from_disk`), else `load_dataset` (Hub name, local
    folder of parquet/arrow/csv files, or a builder name such as ``"parquet"`` with `data_files`).

    ``streaming=True`` returns an `IterableDataset` (a saved folder is converted with ``to_iterable_dataset``).
    """
    import datasets

    path = Path(dataset_name_or_path).expanduser()
    if _is_saved_dataset(path):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"Dataset `{path}`: no split {split!r} (found {sorted(ds)}). Pass one of them.")
            ds = ds[split]
        return ds.to_iterable_dataset(num_shards=max(1, min(64, len(ds)))) if streaming else ds
    try:
        return datasets.load_dataset(dataset_name_or_path, config_name, split=split, streaming=streaming,
                                     data_files=data_files, cache_dir=cache_dir)
    except Exception as err:  # datasets wraps the ImportError in a DatasetGenerationError
        if _mentions_torchcodec(err):
            raise ValueError(
                f"Dataset `{dataset_name_or_path}`: `datasets` needs torchcodec to build audio columns from an "
                "audio folder, and it does not load here. Use --train_data_dir (clean/ + noisy/ folders) or "
                "--speech_dir/--noise_dir for folders of audio, or a dataset saved as parquet/arrow.") from err
        raise


def _node_shard(dataset, dataset_name_or_path, split, streaming, config_name, data_files, cache_dir, rank, world_size):
    """The given `datasets` object (or the loaded split), cut to this node's shard when `world_size > 1`."""
    ds = dataset if dataset is not None or dataset_name_or_path is None else load_hf_dataset(
        dataset_name_or_path, split, streaming, config_name, data_files, cache_dir)
    if world_size > 1:
        from datasets.distributed import split_dataset_by_node

        ds = split_dataset_by_node(ds, rank=rank, world_size=world_size)
    return ds


def _mentions_torchcodec(err: BaseException) -> bool:
    while err is not None:
        if "torchcodec" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def _undecoded(ds, columns: Sequence[str]):
    """Cast Audio columns to ``Audio(decode=False)``: rows then hold {bytes, path} (datasets' decoding needs
    torchcodec, which does not load here)."""
    from datasets import Audio

    features = getattr(ds, "features", None)
    if features is None:  # a stream with unknown features: values arrive undecoded anyway
        return ds
    missing = [c for c in columns if c not in features]
    if missing:
        raise ValueError(f"Dataset: no column {missing} (found {sorted(features)}). Set clean_column/noisy_column.")
    for c in columns:
        if isinstance(features[c], Audio) and features[c].decode:
            ds = ds.cast_column(c, Audio(sampling_rate=features[c].sampling_rate, decode=False))
    return ds


class _HFExample:
    """Decode + crop (+ mix) one row of a `datasets` split -> (clean, noisy) (samples,) float32."""

    def __init__(self, clean_column, noisy_column, segment_samples, sample_rate, min_samples, mixer):
        self.clean_column, self.noisy_column = clean_column, noisy_column
        self.segment_samples, self.sample_rate, self.min_samples = segment_samples, sample_rate, min_samples
        self.mixer = mixer

    def decode(self, row: Mapping[str, Any], column: str) -> np.ndarray:
        cell = row[column]
        where = f"column {column!r}" + (f" ({cell['path']})" if isinstance(cell, Mapping) and cell.get("path") else "")
        try:
            audio = decode_audio_value(cell, self.sample_rate)
        except BadAudioError as err:
            raise BadAudioError(f"{where}: {err}") from err
        return _check_audio(audio, where, self.min_samples)

    def __call__(self, row, rng, babble_source=None) -> Tuple[np.ndarray, np.ndarray]:
        clean = self.decode(row, self.clean_column)
        if self.noisy_column is not None:
            return crop_pair(clean, self.decode(row, self.noisy_column), self.segment_samples, rng)
        start = random_crop_offset(len(clean), self.segment_samples, rng)
        clip = clean[start : start + self.segment_samples]
        offset = _pad_offset(len(clip), self.segment_samples, rng)
        speech = pad_to(clip, self.segment_samples, offset)
        out = self.mixer(speech, rng, slice(offset, offset + len(clip)), babble_source)
        return out["clean"], out["noisy"]


def _hf_setup(ds, clean_column, noisy_column, noise, segment_samples, sample_rate, min_duration_s, augment, snr_db):
    if ds is None:
        raise ValueError("HF dataset: pass a dataset name or path (or an already loaded `dataset=`).")
    if noisy_column is None and noise is None:
        raise ValueError("HF dataset: noisy_column=None (speech only) needs `noise` files or folder to mix with, "
                         "or pass noisy_column.")
    if segment_samples is None and noisy_column is None:
        raise ValueError("HF dataset: mixing needs a fixed segment_samples.")
    ds = _undecoded(ds, [c for c in (clean_column, noisy_column) if c is not None])
    mixer = None
    if noisy_column is None:
        mixer = Mixer(_as_file_list(noise, "Noise files"), _augment_config(augment, snr_db), sample_rate)
    min_samples = max(1, int(round(min_duration_s * sample_rate)))
    return ds, _HFExample(clean_column, noisy_column, segment_samples, sample_rate, min_samples, mixer)


class HFAudioDataset(_SeededDataset):
    """A map-style Hugging Face dataset of (clean, noisy) audio columns, or of speech mixed with noise files.

    Args:
        dataset_name_or_path: Hub name, local folder of data files, or a `save_to_disk` folder.
        split: e.g. ``"train"``, ``"validation"``.
        segment_samples: crop length in samples (None: whole clips, paired only).
        clean_column, noisy_column: audio columns. ``noisy_column=None``: clean speech only, mixed with `noise`
            (babble from other rows of the split).
        noise: noise folder or files for speech-only datasets.
        rank, world_size: keep only this node's contiguous shard (``datasets.distributed.split_dataset_by_node``).
            Leave at 0/1 when a distributed sampler (Accelerate) already shards the indices.
        augment, snr_db: as in `MixingDataset` (speech-only datasets).
        dataset: an already loaded `datasets.Dataset` instead of a name.

    Audio cells are read with ``Audio(decode=False)`` and decoded with soundfile. Unreadable or too short rows are
    skipped with an `AudioDataWarning` (another row is drawn deterministically).
    """

    def __init__(self, dataset_name_or_path: Optional[str], split: str = "train",
                 segment_samples: Optional[int] = None, clean_column: str = "clean",
                 noisy_column: Optional[str] = "noisy", noise: Union[PathLike, Sequence[PathLike], None] = None,
                 sample_rate: int = SAMPLE_RATE, seed: int = 0, rank: int = 0, world_size: int = 1,
                 augment: Union[AugmentConfig, bool, None] = None, snr_db: Optional[Tuple[float, float]] = None,
                 config_name: Optional[str] = None, data_files: Any = None, cache_dir: Optional[str] = None,
                 min_duration_s: float = 0.02, dataset=None):
        super().__init__(seed, sample_rate, min_duration_s)
        ds = _node_shard(dataset, dataset_name_or_path, split, False, config_name, data_files, cache_dir, rank,
                         world_size)
        self.dataset, self.example = _hf_setup(ds, clean_column, noisy_column, noise, segment_samples, sample_rate,
                                               min_duration_s, augment, snr_db)
        if len(self.dataset) == 0:
            raise ValueError(f"Dataset `{dataset_name_or_path}` split {split!r}: no rows.")

    def __len__(self) -> int:
        return len(self.dataset)

    def _babble_source(self, exclude: int):
        def source(rng, talkers):
            out = []
            for _ in range(talkers):
                k = int(rng.integers(len(self.dataset)))
                if k == exclude:
                    continue
                try:
                    out.append(tile_to(self.example.decode(self.dataset[k], self.example.clean_column),
                                       self.example.segment_samples, rng))
                except BadAudioError:
                    pass
            return out

        return source

    def _get(self, index: int, rng: np.random.Generator) -> Item:
        babble_source = self._babble_source(index) if self.example.mixer is not None else None
        try:
            return _item(*self.example(self.dataset[index], rng, babble_source))
        except BadAudioError as err:
            raise BadAudioError(f"row {index}, {err}") from err


class HFStreamingAudioDataset(torch.utils.data.IterableDataset):
    """A streamed Hugging Face dataset (``streaming=True``) yielding the same items as `HFAudioDataset`.

    Multi-node: each of `world_size` ranks reads its own shards (``split_dataset_by_node``); DataLoader workers split
    the shards of their rank further (datasets does this itself). ``shuffle_buffer > 0`` shuffles with
    ``seed + epoch``. Crops are drawn from ``default_rng([seed, epoch, rank, worker, k])`` for the k-th row a worker
    reads, so a run is reproducible for a fixed (world_size, num_workers). There is no babble for speech-only
    streams (no random access to other rows). Bad rows are skipped with an `AudioDataWarning`.
    """

    def __init__(self, dataset_name_or_path: Optional[str], split: str = "train",
                 segment_samples: Optional[int] = None, clean_column: str = "clean",
                 noisy_column: Optional[str] = "noisy", noise: Union[PathLike, Sequence[PathLike], None] = None,
                 sample_rate: int = SAMPLE_RATE, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle_buffer: int = 0, augment: Union[AugmentConfig, bool, None] = None,
                 snr_db: Optional[Tuple[float, float]] = None, config_name: Optional[str] = None,
                 data_files: Any = None, cache_dir: Optional[str] = None, min_duration_s: float = 0.02,
                 dataset=None):
        super().__init__()
        ds = _node_shard(dataset, dataset_name_or_path, split, True, config_name, data_files, cache_dir, rank,
                         world_size)
        self.dataset, self.example = _hf_setup(ds, clean_column, noisy_column, noise, segment_samples, sample_rate,
                                               min_duration_s, augment, snr_db)
        self.seed, self.epoch, self.rank, self.shuffle_buffer = int(seed), 0, int(rank), int(shuffle_buffer)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[Item]:
        ds = self.dataset
        if self.shuffle_buffer > 0:
            ds = ds.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
        ds.set_epoch(self.epoch)  # datasets reshuffles shards/buffer with seed + epoch
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        for k, row in enumerate(ds):
            rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, k])
            try:
                yield _item(*self.example(row, rng))
            except BadAudioError as err:
                warnings.warn(f"skipping bad example: {err}", AudioDataWarning, stacklevel=2)


# ---------------------------------------------------------------------------------------------------------------
# Factory and collate
# ---------------------------------------------------------------------------------------------------------------


def build_dataset(
    *,
    train_data_dir: Optional[PathLike] = None,
    speech_dir: Union[PathLike, Sequence[PathLike], None] = None,
    noise_dir: Union[PathLike, Sequence[PathLike], None] = None,
    dataset_name: Optional[str] = None,
    segment_samples: int,
    split: Optional[str] = None,
    sample_rate: int = SAMPLE_RATE,
    seed: int = 0,
    snr_db: Tuple[float, float] = (-5.0, 20.0),
    augment: Union[AugmentConfig, bool, None] = None,
    manifest: Union[PathLike, str, None] = "auto",
    wideband_weight: float = 4.0,
    length: Optional[int] = None,
    dataset_config_name: Optional[str] = None,
    clean_column: str = "clean",
    noisy_column: Optional[str] = "noisy",
    streaming: bool = False,
    shuffle_buffer: int = 0,
    rank: int = 0,
    world_size: int = 1,
    cache_dir: Optional[str] = None,
):
    """The training dataset from exactly one source:

    * ``train_data_dir``: `PairedFolderDataset` (``split`` selects ``root/<split>`` when given);
    * ``speech_dir`` (+ optional ``noise_dir``): `MixingDataset`; ``manifest="auto"`` looks for the corpus'
      ``manifest.csv`` next to or above ``speech_dir`` to weight wideband speech up (None disables);
    * ``dataset_name``: `HFAudioDataset`, or `HFStreamingAudioDataset` with ``streaming=True``
      (``split`` defaults to ``"train"``; ``noise_dir`` mixes a speech-only dataset when ``noisy_column=None``).

    Raises:
        ValueError: none or several sources are given.
    """
    given = [name for name, v in (("train_data_dir", train_data_dir), ("speech_dir", speech_dir),
                                  ("dataset_name", dataset_name)) if v]
    if len(given) != 1:
        raise ValueError(
            f"Training data: got {given or 'no source'}. Pass exactly one of --train_data_dir (clean/ + noisy/ "
            "folders), --speech_dir with --noise_dir (on-the-fly mixing) or --dataset_name (Hugging Face datasets).")
    if noise_dir and given[0] == "train_data_dir":
        raise ValueError("Training data: --noise_dir is used with --speech_dir or --dataset_name, not with "
                         "--train_data_dir.")
    if train_data_dir:
        return PairedFolderDataset(train_data_dir, segment_samples, sample_rate, seed, split=split)
    if speech_dir:
        if manifest == "auto":
            manifest = find_manifest(speech_dir) if isinstance(speech_dir, (str, os.PathLike)) else None
        if not noise_dir:
            warnings.warn("Training data: no --noise_dir; mixing with synthetic noises only (white, pink, brown, hum, "
                          "babble).", UserWarning, stacklevel=2)
        return MixingDataset(speech_dir, noise_dir, segment_samples, snr_db, sample_rate, seed, augment, length,
                             manifest=manifest, wideband_weight=wideband_weight)
    kwargs = dict(split=split or "train", segment_samples=segment_samples, clean_column=clean_column,
                  noisy_column=noisy_column, noise=noise_dir, sample_rate=sample_rate, seed=seed, rank=rank,
                  world_size=world_size, augment=augment, snr_db=snr_db, config_name=dataset_config_name,
                  cache_dir=cache_dir)
    if streaming:
        return HFStreamingAudioDataset(dataset_name, shuffle_buffer=shuffle_buffer, **kwargs)
    return HFAudioDataset(dataset_name, **kwargs)


def build_train_dataset(args: Any):
    """`build_dataset` from an argparse Namespace / config object (missing attributes take their defaults).

    Reads: train_data_dir, speech_dir, noise_dir, dataset_name, dataset_config_name, train_split, segment_samples
    (or segment_seconds), sample_rate, seed, snr_db_min/snr_db_max, augment (bool), manifest, wideband_weight,
    clean_column, noisy_column, streaming, shuffle_buffer, rank/world_size (0/1: let Accelerate shard), cache_dir.
    """
    def get(name, default=None):
        value = getattr(args, name, None)
        return default if value is None else value

    sample_rate = int(get("sample_rate", SAMPLE_RATE))
    segment = get("segment_samples")
    if segment is None:
        seconds = get("segment_seconds")
        if seconds is None:
            raise ValueError("Training data: set segment_samples or segment_seconds (the crop length).")
        segment = int(round(float(seconds) * sample_rate))
    augment = get("augment")
    return build_dataset(
        train_data_dir=get("train_data_dir"), speech_dir=get("speech_dir"), noise_dir=get("noise_dir"),
        dataset_name=get("dataset_name"), segment_samples=int(segment), split=get("train_split"),
        sample_rate=sample_rate, seed=int(get("seed", 0)),
        snr_db=(float(get("snr_db_min", -5.0)), float(get("snr_db_max", 20.0))),
        augment=None if augment is None or augment is True else bool(augment),
        manifest=get("manifest", "auto"), wideband_weight=float(get("wideband_weight", 4.0)),
        dataset_config_name=get("dataset_config_name"), clean_column=get("clean_column", "clean"),
        noisy_column=get("noisy_column", "noisy") if get("noisy_column", "noisy") != "none" else None,
        streaming=bool(get("streaming", False)), shuffle_buffer=int(get("shuffle_buffer", 0)),
        rank=int(get("rank", 0)), world_size=int(get("world_size", 1)), cache_dir=get("cache_dir"),
    )


def collate(batch: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Stack items into ``dict(clean=(batch, samples), noisy=(batch, samples))``; other keys become lists.

    Raises:
        ValueError: items of different lengths (use a fixed segment_samples, or batch size 1 for whole clips).
    """
    if not batch:
        raise ValueError("collate: empty batch.")
    lengths = {int(item["clean"].shape[-1]) for item in batch} | {int(item["noisy"].shape[-1]) for item in batch}
    if len(lengths) != 1:
        raise ValueError(f"collate: items have different lengths {sorted(lengths)}. Set a fixed segment_samples.")
    out: Dict[str, Any] = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        out[key] = torch.stack([torch.as_tensor(v) for v in values]) if key in ("clean", "noisy") else values
    return out


__all__ = [
    "AUDIO_EXTENSIONS", "AudioDataWarning", "AugmentConfig", "HFAudioDataset", "HFStreamingAudioDataset",
    "MixingDataset", "Mixer", "PairedFolderDataset", "SAMPLE_RATE", "apply_lowpass", "apply_rir", "avoid_clipping",
    "babble", "brown_noise", "build_dataset", "build_train_dataset", "collate", "colored_noise", "corpus_files",
    "crop_pair", "decode_audio", "decode_audio_value", "find_manifest", "list_audio_files", "load_hf_dataset",
    "load_segment", "mains_hum", "make_validation_pairs", "mix_at_snr", "pad_to", "pink_noise", "power",
    "random_crop_offset", "random_eq", "read_manifest", "rms_dbfs", "set_level", "synth_rir", "tile_to",
    "white_noise", "wideband_weights",
]
