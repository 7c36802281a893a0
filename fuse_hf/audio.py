"""Audio in and out of FUSE: the one home of audio I/O.

Which files are audio (`AUDIO_EXTENSIONS`, `is_audio_file`, `list_audio_files`), reading and writing them
(`load_audio`, `load_mono`, `save_audio`, `audio_info`), resampling (`resample`, and `StreamingResampler` for
audio that arrives in pieces), checking arrays and sample rates (`as_channels_first`, `as_mono`,
`check_sampling_rate`), levels (`avoid_clipping`, `RunningPeakLimiter`, `limit_attenuation`) and the one-line form
of an error (`first_line`). Everything else in `fuse_hf` calls these instead of soundfile, soxr or its own checks.

Waveforms are float in [-1, 1], shaped `(channels, samples)` for files and `(samples,)` for mono signals. The models
run at :data:`SAMPLE_RATE` (16 kHz); other rates are resampled with soxr on the way in and out. The spectral front
end is in :mod:`fuse_hf.spectral`, windows for long audio in :mod:`fuse_hf.windows`.

This module imports only the standard library and numpy at the top; soundfile and soxr are imported where files are
read or rates are changed, so that the array checks can travel with the pipeline as Hub remote code.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from .spectral import SAMPLE_RATE  # re-exported: the rate the models run at

# Shortest input we pad rather than reject: below ~5 ms there is no speech to enhance.
MIN_SAMPLES_16K = 80

# Suffix -> (libsndfile format, subtype or None for the format's default). Every suffix is read (libsndfile finds
# the format from the header) and written: soundfile guesses the format only from its own names (.wav, .aiff, ...),
# so the usual aliases (.oga, .aif, .opus, ...) are spelled out here. Opus lives in Ogg. Left out: HTK and XI, a
# speech-feature and an instrument format that hold one channel only and (XI) no sample rate.
_FORMATS: dict[str, tuple[str, str | None]] = {
    ".wav": ("WAV", None),
    ".wave": ("WAV", None),
    ".flac": ("FLAC", None),
    ".ogg": ("OGG", None),
    ".oga": ("OGG", None),
    ".opus": ("OGG", "OPUS"),
    ".mp3": ("MP3", None),
    ".aiff": ("AIFF", None),
    ".aif": ("AIFF", None),
    ".aifc": ("AIFF", None),
    ".au": ("AU", None),
    ".snd": ("AU", None),
    ".caf": ("CAF", None),
    ".w64": ("W64", None),
    ".rf64": ("RF64", None),
    ".sph": ("NIST", None),
    ".nist": ("NIST", None),
    ".voc": ("VOC", None),
    ".mat": ("MAT5", None),
    ".paf": ("PAF", None),
    ".pvf": ("PVF", None),
    ".sd2": ("SD2", None),
    ".ircam": ("IRCAM", None),
}

AUDIO_EXTENSIONS: frozenset[str] = frozenset(_FORMATS)
"""Lower-case suffixes (with the dot) that `load_audio` reads and `save_audio` writes."""

_MONO_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

AudioSource = str | os.PathLike | IO[bytes]

__all__ = [
    "AUDIO_EXTENSIONS",
    "MIN_SAMPLES_16K",
    "SAMPLE_RATE",
    "RunningPeakLimiter",
    "StreamingResampler",
    "AudioDataWarning",
    "AudioInfo",
    "as_channels_first",
    "as_mono",
    "audio_info",
    "avoid_clipping",
    "check_sampling_rate",
    "first_line",
    "is_audio_file",
    "limit_attenuation",
    "list_audio_files",
    "load_audio",
    "load_mono",
    "resample",
    "save_audio",
]


class AudioDataWarning(UserWarning):
    """A file or example was skipped (not audio, unreadable, too short, non-finite samples)."""


class AudioInfo(NamedTuple):
    """What a file's header says: rate in Hz, channel count, libsndfile subtype (e.g. ``"PCM_16"``), length in
    samples per channel."""

    sampling_rate: int
    channels: int
    subtype: str
    frames: int


# ----------------------------------------------------------------------------------------------- errors


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty.

    libsndfile, torch and the Hub client write messages of several lines; a one-line report such as
    ``f"{path}: cannot be read as audio ({first_line(err)})."`` keeps only the line that names the problem.
    """
    text = str(err).strip()
    return text.splitlines()[0].strip() if text else type(err).__name__


# ----------------------------------------------------------------------------------------------- listing


def is_audio_file(path: str | os.PathLike) -> bool:
    """Whether `path` has an audio suffix (`AUDIO_EXTENSIONS`, case-insensitive); the file is not opened."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def list_audio_files(folder: str | os.PathLike, recursive: bool = True, *, warn_skipped: bool = False) -> list[Path]:
    """Audio files under `folder` (`is_audio_file`), sorted by their path relative to `folder`.

    Hidden files and folders (a leading dot, e.g. macOS ``._x.wav`` resource forks) are ignored; symbolic links to
    folders are not followed.

    Args:
        folder: the folder to list (``~`` is expanded).
        recursive: also list sub-folders.
        warn_skipped: give one `AudioDataWarning` naming a few of the non-audio files that were left out.

    Raises:
        ValueError: `folder` does not exist or is not a folder.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"Audio folder `{root}`: folder not found. Pass an existing folder of audio files.")
    found, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in filenames:
            if not name.startswith("."):
                path = Path(dirpath) / name
                (found if is_audio_file(path) else skipped).append(path)
    if skipped and warn_skipped:
        examples = ", ".join(str(p.relative_to(root)) for p in sorted(skipped)[:3])
        warnings.warn(
            f"{root}: skipped {len(skipped)} non-audio file(s) (e.g. {examples}).", AudioDataWarning, stacklevel=2
        )
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


# ----------------------------------------------------------------------------------------------- reading


def _source_name(source: AudioSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", None) or "<bytes>")


def _check_file(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder, expected an audio file.")
    return path


def _read(source: AudioSource, dtype: np.dtype, start: int = 0, frames: int | None = None) -> tuple[np.ndarray, int]:
    """Decodes `(samples, channels)` in `dtype` with libsndfile; every failure is a ValueError naming the source."""
    import soundfile as sf

    name = _source_name(source)
    if isinstance(source, (str, os.PathLike)):
        source = _check_file(source)
    try:
        data, sampling_rate = sf.read(
            source, frames=-1 if frames is None else frames, start=start, dtype=dtype.name, always_2d=True
        )
    except Exception as err:  # libsndfile's errors are RuntimeError/LibsndfileError with cryptic text
        raise ValueError(f"{name}: cannot be read as audio ({first_line(err)}).") from None
    if data.shape[0] == 0:
        raise ValueError(f"{name}: holds no samples.")
    if not np.isfinite(data).all():
        raise ValueError(f"{name}: contains NaN or Inf samples.")
    return data, int(sampling_rate)


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Reads any file libsndfile can decode (wav, flac, ogg/vorbis, opus, mp3, aiff, ...).

    Returns:
        `(audio, sampling_rate)`: float32 array `(channels, samples)` in [-1, 1] and the file's rate in Hz.

    Raises:
        ValueError: the file is missing, unreadable, empty, or holds NaN/Inf samples.
    """
    data, sampling_rate = _read(path, np.dtype(np.float32))
    return np.ascontiguousarray(data.T), sampling_rate


def load_mono(
    source: AudioSource,
    sampling_rate: int | None = None,
    *,
    dtype: type[np.floating] = np.float32,
    start: int = 0,
    frames: int | None = None,
) -> np.ndarray:
    """Reads a file (or a binary file object) as one channel: the mean of its channels, resampled when asked.

    Decoding, the channel mean and resampling all run in `dtype`, so that float32 reproduces the training data and
    float64 the quality benchmark's evaluation set bit for bit.

    Args:
        source: a path, or a binary file object such as ``io.BytesIO(encoded_bytes)``.
        sampling_rate: rate of the result in Hz; None keeps the file's rate.
        dtype: ``np.float32`` or ``np.float64``.
        start, frames: read only `frames` samples from sample `start`, counted at the file's rate (default: all).

    Returns:
        `(samples,)` array of `dtype`.

    Raises:
        ValueError: the file is missing, unreadable, empty or holds NaN/Inf samples; a bad rate or dtype.
    """
    dtype = np.dtype(dtype)
    if dtype not in _MONO_DTYPES:
        raise ValueError(f"load_mono: dtype must be float32 or float64, got {dtype}.")
    data, file_rate = _read(source, dtype, start, frames)
    mono = data.mean(axis=1, dtype=dtype)
    if sampling_rate is None:
        return mono
    return _resample(mono, file_rate, check_sampling_rate(sampling_rate))


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """The header of a file (`AudioInfo`: rate, channels, subtype, frames) without decoding it.

    Raises:
        ValueError: the file is missing or not audio.
    """
    import soundfile as sf

    path = _check_file(path)
    try:
        info = sf.info(path)
    except Exception as err:  # LibsndfileError (a RuntimeError) for corrupted or unknown files
        raise ValueError(f"{path}: cannot be read as audio ({first_line(err)}).") from None
    return AudioInfo(int(info.samplerate), int(info.channels), info.subtype, int(info.frames))


# ----------------------------------------------------------------------------------------------- writing


def save_audio(path: str | os.PathLike, audio: np.ndarray, sampling_rate: int, subtype: str | None = None) -> None:
    """Writes `(channels, samples)` or `(samples,)` float audio; the format follows the suffix (`AUDIO_EXTENSIONS`).

    Args:
        path: the file to write; missing folders are created.
        audio: float samples in [-1, 1].
        sampling_rate: Hz.
        subtype: a libsndfile subtype such as ``"PCM_16"`` (default: the format's default, Opus for ``.opus``).

    Raises:
        ValueError: an unknown suffix, a bad array or rate, or a format that cannot hold this subtype or rate.
    """
    import soundfile as sf

    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(
            f"{path}: cannot write `{suffix or 'no suffix'}` files. Use one of {', '.join(sorted(AUDIO_EXTENSIONS))}."
        )
    file_format, default_subtype = _FORMATS[suffix]
    subtype = subtype or default_subtype
    audio = as_channels_first(audio)
    sampling_rate = check_sampling_rate(sampling_rate)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        sf.write(path, audio.T, sampling_rate, subtype=subtype, format=file_format)
    except Exception as err:  # libsndfile refuses some subtype/format/rate combinations (e.g. Opus at 44.1 kHz)
        kind = f"{file_format} {subtype}" if subtype else file_format
        raise ValueError(f"{path}: cannot write {kind} audio at {sampling_rate} Hz ({first_line(err)}).") from None


# ----------------------------------------------------------------------------------------------- resampling


def _resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """soxr HQ along the last axis of `(..., samples)`, in the array's own float dtype."""
    if orig_sr == target_sr:
        return audio
    import soxr

    flat = audio.reshape(-1, audio.shape[-1])
    # soxr wants (samples, channels) and resamples all channels in one call.
    out = soxr.resample(flat.T, orig_sr, target_sr, quality="HQ")
    out = np.ascontiguousarray(np.asarray(out, dtype=audio.dtype).reshape(-1, flat.shape[0]).T)
    return out.reshape(*audio.shape[:-1], out.shape[-1])


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resamples along the last axis with soxr (HQ); `(..., samples)` in, float32 `(..., samples')` out."""
    return _resample(np.asarray(audio, dtype=np.float32), orig_sr, target_sr)


class StreamingResampler:
    """`resample` for a signal that arrives in pieces: `(channels, samples)` float32 pieces in, the resampled samples
    that are ready out, keeping only soxr's filter state between calls.

    The pieces concatenated equal `resample` of the whole signal bit for bit (soxr's streaming and one-shot
    interfaces run the same filter), whatever their sizes; equal rates pass the audio through untouched.

    Args:
        orig_sr, target_sr: rates in Hz.
        channels: the channel count of every piece.
    """

    def __init__(self, orig_sr: int, target_sr: int, channels: int):
        self.orig_sr, self.target_sr, self.channels = int(orig_sr), int(target_sr), int(channels)
        self._stream = None
        if self.orig_sr != self.target_sr:
            import soxr

            self._stream = soxr.ResampleStream(
                self.orig_sr, self.target_sr, self.channels, dtype="float32", quality="HQ"
            )

    def __call__(self, audio: np.ndarray, last: bool = False) -> np.ndarray:
        """Resamples the next piece `(channels, samples)` (possibly empty); `last=True` also flushes the filter's
        tail. Returns `(channels, samples')` float32, possibly empty."""
        audio = np.asarray(audio, dtype=np.float32)
        if self._stream is None:
            return audio
        out = self._stream.resample_chunk(np.ascontiguousarray(audio.T), last=last)
        return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, self.channels).T)


# ----------------------------------------------------------------------------------------------- checks


def check_sampling_rate(sampling_rate, name: str = "sampling_rate") -> int:
    """Validates a sample rate in Hz: a positive integer (an integral float such as 16000.0 is accepted).

    Returns:
        The rate as an int.

    Raises:
        ValueError: None, a bool, a non-number, a fraction or a rate <= 0, naming `name`.
    """
    if sampling_rate is None:
        raise ValueError(f"{name} is required for arrays and tensors: pass e.g. {name}=16000.")
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive integer in Hz, got {sampling_rate!r}.")
    if not float(sampling_rate).is_integer() or sampling_rate <= 0:
        raise ValueError(f"{name} must be a positive integer in Hz, got {sampling_rate!r}.")
    return int(sampling_rate)


def as_channels_first(audio: np.ndarray, max_channels: int = 16) -> np.ndarray:
    """Checks rank, layout, dtype and values of an in-memory clip and returns `(channels, samples)` float32.

    Accepts `(samples,)` or `(channels, samples)`; rejects `(samples, channels)` (more than `max_channels` rows) with
    a hint, integer samples, empty clips and NaN/Inf.
    """
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None]
    elif audio.ndim != 2:
        raise ValueError(f"audio must be 1-D (samples,) or 2-D (channels, samples), got shape {tuple(audio.shape)}.")
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


def as_mono(
    audio: np.ndarray, name: str = "audio", *, dtype: type[np.floating] = np.float32, min_samples: int = 1
) -> np.ndarray:
    """Checks a one-channel waveform and returns it as a contiguous `(samples,)` array of `dtype`.

    Args:
        audio: `(samples,)` or `(1, samples)` float samples.
        name: what the waveform is, for the error message (e.g. ``"reference (clean)"`` or a file name).
        dtype: the float type of the result (metrics compute in float64).
        min_samples: shorter waveforms are an error.

    Raises:
        ValueError: several channels, integer samples, fewer than `min_samples` samples, or NaN/Inf; one line that
            starts with `name`.
    """
    x = np.asarray(audio)
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1:
        raise ValueError(
            f"{name}: expected a 1-D waveform (samples,), got shape {tuple(x.shape)}. Average or select channels first."
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: expected float samples in [-1, 1], got dtype {x.dtype}.")
    if x.size == 0:
        raise ValueError(f"{name}: holds no samples.")
    if x.size < min_samples:
        raise ValueError(f"{name}: too short ({x.size} samples < {min_samples}).")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or Inf samples.")
    return np.ascontiguousarray(x, dtype=dtype)


# ----------------------------------------------------------------------------------------------- levels


def avoid_clipping(*signals: np.ndarray, peak: float = 0.99) -> tuple[np.ndarray, ...]:
    """Scales all `signals` by one gain, so that the largest |sample| among them is `peak`, when it is above `peak`.

    Never clips (that would add distortion the signals do not have) and never scales up; one gain for all keeps
    their relation (a clean target stays the exact speech component of its noisy input).

    Returns:
        The signals themselves (the same objects) when none peaks above `peak`, else float32 copies times
        ``float32(peak / largest peak)``.
    """
    top = max((float(np.max(np.abs(s))) if np.size(s) else 0.0 for s in signals), default=0.0)
    if top <= peak:
        return signals
    gain = np.float32(peak / top)
    return tuple((s * gain).astype(np.float32) for s in signals)


def limit_attenuation(enhanced: np.ndarray, noisy: np.ndarray, attenuation_limit_db: float | None) -> np.ndarray:
    """Mixes the noisy input back so that at most `attenuation_limit_db` dB of noise are removed (DeepFilterNet's
    attenuation limit): ``floor * noisy + (1 - floor) * enhanced`` with ``floor = 10 ** (-dB / 20)``, sample by
    sample (so a stream can mix piece by piece). None: `enhanced` unchanged. Arrays of one shape, float32."""
    if attenuation_limit_db is None:
        return enhanced
    floor = 10.0 ** (-abs(float(attenuation_limit_db)) / 20.0)
    return floor * noisy + (1.0 - floor) * enhanced


class RunningPeakLimiter:
    """`avoid_clipping` for a signal given out piece by piece, before its loudest sample is known.

    Each piece is scaled by one gain computed from the largest |sample| seen so far, exactly as `avoid_clipping`
    computes it: pieces from the loudest one on get the gain `avoid_clipping` gives the whole signal (the same
    samples), earlier pieces the larger gain of their time (they are out already and cannot be turned down).
    Never clips, never scales up.
    """

    def __init__(self, peak: float = 0.99):
        self.peak = peak
        self.top = 0.0  # the largest |sample| seen so far

    @property
    def gain(self) -> float:
        """The gain the last piece got (1.0 until something peaked above `peak`)."""
        return 1.0 if self.top <= self.peak else float(np.float32(self.peak / self.top))

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Scales the next piece (any shape); returns it unchanged (the same object) while nothing peaked above
        `peak`."""
        if np.size(audio):
            self.top = max(self.top, float(np.max(np.abs(audio))))
        if self.top <= self.peak:
            return audio
        return (audio * np.float32(self.peak / self.top)).astype(np.float32)
