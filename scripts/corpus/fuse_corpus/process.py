"""One source -> 16 kHz mono PCM16 WAV(s) plus their measures, cached per file.

`process(source, cache)` runs in a worker process. It decodes the file at its own rate (libsndfile through
`fuse_hf.audio.load_audio`; G.722 and GSM through ffmpeg), measures clipping there, averages the channels,
resamples to 16 kHz (`fuse_hf.audio.resample`), removes DC and infrasound below :data:`INFRASOUND_HZ`
(`fuse_hf.data.apply_highpass`), cuts noise longer than
:data:`NOISE_SEGMENT_S` into equal segments, scales a segment whose peak exceeds 0.99 down
(`fuse_hf.audio.avoid_clipping`: never clipped), measures each output (`quality.measure`) and writes it
(`fuse_hf.audio.save_audio`).

The outputs and a JSON record go to `cache/files/<package>/<name>[__sNN].wav` and `<name>.json`. A record whose
key (process version, origin, file size and mtime) matches is returned without decoding anything, so a rerun or an
interrupted run only processes what is new. Nothing is dropped here: the thresholds are applied by the builder,
so changing them needs no reprocessing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fuse_hf import audio, data

from . import quality
from .sources import TYPING_SECONDS, Source

# Bump when the processing of a file changes: every cached record is then redone.
PROCESS_VERSION = "4"
SAMPLE_RATE = 16000
# Some recordings drift below hearing (tuxpaint's Romanian and Belarusian stamps: 3-7 % of their energy under 20 Hz on
# average, 82 % in one clip): no enhancer should reproduce it, and in a target it dominates SI-SDR. Speech starts
# near 70 Hz.
INFRASOUND_HZ = 20.0
MIN_FILTER_SAMPLES = 256
NOISE_SEGMENT_S = 30.0
PEAK = 0.99
# 50 ms energy envelope of a noise recording, for the near-duplicate check of the builder.
ENVELOPE_S = 0.05


def source_key(source: Source) -> str:
    """Cache key of a source: what it is and the state of its file(s) on disk."""
    stamps = []
    for path in source.parts or (source.path,):
        stat = os.stat(path)
        stamps.append(f"{stat.st_size}:{stat.st_mtime_ns}")
    text = "\n".join([PROCESS_VERSION, source.origin, source.decoder, *stamps])
    return hashlib.sha1(text.encode()).hexdigest()


def content_hash(source: Source) -> str:
    """sha1 of the source file's bytes (of all parts for a stitched source): exact duplicates share it."""
    hasher = hashlib.sha1()
    for path in source.parts or (source.path,):
        with open(path, "rb") as handle:
            hasher.update(handle.read())
    if source.parts:
        hasher.update(source.name.encode())  # takes of the same key presses differ by their seed
    return hasher.hexdigest()


def decode_with_ffmpeg(path: str, fmt: str) -> tuple[np.ndarray, int]:
    """Raw G.722 or GSM (which libsndfile cannot read) -> `(channels, samples)` float32 and rate, via ffmpeg."""
    with tempfile.TemporaryDirectory(prefix="fuse-corpus-") as tmp:
        wav = os.path.join(tmp, "decoded.wav")
        result = subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-f", fmt, "-i", path, "-c:a", "pcm_s16le", wav],
            capture_output=True,
        )
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip().splitlines()
            raise ValueError(f"{path}: ffmpeg cannot decode it as {fmt} ({message[-1] if message else 'no message'}).")
        return audio.load_audio(wav)


def key_presses(parts: tuple[str, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Bucklespring's `NN-0.wav` (press) and `NN-1.wav` (release) -> [(press, release)] mono at 16 kHz."""
    sounds = {}
    for path in parts:
        clip, rate = audio.load_audio(path)
        sounds[Path(path).stem] = audio.resample(clip.mean(axis=0), rate, SAMPLE_RATE)
    keys = sorted({stem.rsplit("-", 1)[0] for stem in sounds})
    return [(sounds[f"{k}-0"], sounds[f"{k}-1"]) for k in keys if f"{k}-0" in sounds and f"{k}-1" in sounds]


def stitch_typing(presses: list[tuple[np.ndarray, np.ndarray]], seconds: float, rng: np.random.Generator):
    """Lays key presses out as typing: words of 2-9 keys, 90-250 ms between keys, pauses between words.

    Returns `(samples,)` float32 at 16 kHz of length `seconds`. Each key: its press, then its release 50-150 ms
    later, at a level varied by +-3 dB.
    """
    length = int(seconds * SAMPLE_RATE)
    out = np.zeros(length + SAMPLE_RATE, dtype=np.float64)
    time = float(rng.uniform(0.05, 0.3))
    while time < seconds:
        for _ in range(int(rng.integers(2, 10))):
            press, release = presses[int(rng.integers(len(presses)))]
            gain = 10 ** (rng.uniform(-3, 3) / 20)
            start = int(time * SAMPLE_RATE)
            up = start + int(rng.uniform(0.05, 0.15) * SAMPLE_RATE)
            for clip, at in ((press, start), (release, up)):
                end = min(at + len(clip), len(out))
                out[at:end] += gain * clip[: end - at]
            time += float(rng.uniform(0.09, 0.25))
        time += float(rng.uniform(0.15, 0.6)) + (float(rng.uniform(0.8, 2.0)) if rng.random() < 0.1 else 0.0)
    return out[:length].astype(np.float32)


def decode(source: Source) -> tuple[np.ndarray, int]:
    """The source as `(channels, samples)` float32 and its sample rate."""
    if source.decoder == "soundfile":
        return audio.load_audio(source.path)
    if source.decoder in ("g722", "gsm"):
        return decode_with_ffmpeg(source.path, source.decoder)
    if source.decoder == "stitch":
        seed = int(hashlib.sha1(source.name.encode()).hexdigest()[:8], 16)
        typing = stitch_typing(key_presses(source.parts), TYPING_SECONDS, np.random.default_rng(seed))
        return typing[None], SAMPLE_RATE
    raise ValueError(f"{source.origin}: unknown decoder {source.decoder!r}.")


def segment_bounds(samples: int, max_samples: int) -> list[tuple[int, int]]:
    """Equal consecutive segments of at most `max_samples` covering `samples` -> [(start, stop)]."""
    count = max(1, math.ceil(samples / max_samples))
    edges = np.linspace(0, samples, count + 1).round().astype(int)
    return [(int(edges[i]), int(edges[i + 1])) for i in range(count)]


def envelope(x: np.ndarray) -> list[float]:
    """Log10 energy of consecutive 50 ms frames (rounded), the fingerprint of a noise recording."""
    size = int(ENVELOPE_S * SAMPLE_RATE)
    count = len(x) // size
    if count == 0:
        return []
    frames = np.asarray(x[: count * size], dtype=np.float64).reshape(count, size)
    return [round(float(v), 4) for v in np.log10(np.mean(frames**2, axis=1) + 1e-10)]


def _cache_paths(source: Source, cache: Path) -> tuple[Path, Path]:
    folder = cache / "files" / source.package
    return folder, folder / f"{source.name}.json"


def process(source: Source, cache: Path) -> dict:
    """Decodes, converts, measures and writes one source (or returns its cached record).

    Returns `{"key", "sha1", "seconds", "outputs": [{"file", "segment", "quality": {...}, "envelope"}], "error"}`;
    `error` is a one-line message when the file cannot be decoded (then there are no outputs).
    """
    folder, record_path = _cache_paths(source, cache)
    key = source_key(source)
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("key") == key and all((folder / o["file"]).is_file() for o in record["outputs"]):
            return record
    folder.mkdir(parents=True, exist_ok=True)
    record = {"key": key, "sha1": content_hash(source), "seconds": 0.0, "outputs": [], "error": ""}
    try:
        decoded, rate = decode(source)
    except ValueError as err:
        record["error"] = str(err).splitlines()[0]
        record_path.write_text(json.dumps(record))
        return record
    clipped = quality.clip_fraction(decoded)
    mono = audio.resample(decoded.mean(axis=0), rate, SAMPLE_RATE)
    # Forward-backward filtering needs a few dozen samples; shorter files are dropped as `short` anyway.
    if len(mono) > MIN_FILTER_SAMPLES:
        mono = data.apply_highpass(mono, INFRASOUND_HZ, SAMPLE_RATE)
    else:
        mono = (mono - mono.mean()).astype(np.float32)
    record["seconds"] = len(mono) / SAMPLE_RATE
    bounds = [(0, len(mono))]
    if source.kind == "noise":
        bounds = segment_bounds(len(mono), int(NOISE_SEGMENT_S * SAMPLE_RATE))
    for index, (start, stop) in enumerate(bounds):
        (segment,) = audio.avoid_clipping(mono[start:stop], peak=PEAK)
        name = source.name if len(bounds) == 1 else f"{source.name}__s{index:02d}"
        audio.save_audio(folder / f"{name}.wav", segment, SAMPLE_RATE, subtype="PCM_16")
        measures = quality.measure(segment, SAMPLE_RATE, clipped=clipped)
        record["outputs"].append(
            {
                "file": f"{name}.wav",
                "segment": index if len(bounds) > 1 else None,
                "quality": asdict(measures),
                "envelope": envelope(segment) if source.kind == "noise" and index == 0 else [],
            }
        )
    record_path.write_text(json.dumps(record))
    return record


def quality_of(output: dict) -> quality.Quality:
    """The :class:`quality.Quality` of an output of a record; the bandwidth class follows today's threshold."""
    measures = dict(output["quality"])
    measures["bandwidth"] = quality.bandwidth_class(measures["cutoff_hz"])
    return quality.Quality(**measures)
