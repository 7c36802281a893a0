"""The quality benchmark's systems and runs: enhance every pair with every system, score it, time the systems.

Systems: ``identity`` (the noisy input), ``noisereduce``, ``deepfilternet3`` (`benchmarks.peers`) and FUSE settings
named ``fuse@N[-gG][-nS][-wW][-aA][-u]`` (`fuse_settings`, the one place of this grammar): N DDIM steps, ``-gG`` the
guidance scale (1: BEATs guidance as trained, the default; 0: guidance off; above 1: classifier-free guidance),
``-nS`` the noise scale (default: the pipeline's), ``-wW`` windows of W seconds (a stream's latency), ``-aA`` an
attenuation limit of A dB, ``-u`` uncapped (``max_gain_db=None``: the decoded spectrum as it is, where the default
caps each bin at the input's).
Every system is an ``enhance(noisy, sr, seed) -> enhanced`` function (`make_enhancer`), so that scoring and timing
treat them alike. Besides the metrics of `fuse_hf.metrics`, every output gets `high_band_db` (its energy above 4 kHz
against the clean speech's), and `silence_check` runs digital silence through the FUSE systems.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fuse_hf import data as D
from fuse_hf import metrics as M
from fuse_hf.audio import SAMPLE_RATE, save_audio

from .. import peers
from .evaluation_set import pair_audio, pair_title

PEER_SYSTEMS = ("identity", "noisereduce", "deepfilternet3")
FUSE_STEPS = (1, 2, 4, 6, 10)
CFG_SCALES = (2, 3)  # classifier-free guidance scales of the named systems (any other: fuse@6-g1.5 and so on)
FUSE_SYSTEMS = (
    tuple(f"fuse@{s}" for s in FUSE_STEPS) + ("fuse@6-g0",) + tuple(f"fuse@6-g{g}" for g in CFG_SCALES) + ("fuse@6-n1",)
)
ALL_SYSTEMS = PEER_SYSTEMS + FUSE_SYSTEMS
# The stranger split's headline set (issue 12): the peers, fuse-small at 6 and 1 steps, guidance off and CFG scales.
HEADLINE_SYSTEMS = PEER_SYSTEMS + ("fuse@1", "fuse@6", "fuse@6-g0") + tuple(f"fuse@6-g{g}" for g in CFG_SCALES)
GROUPS = {"peers": PEER_SYSTEMS, "fuse": FUSE_SYSTEMS, "headline": HEADLINE_SYSTEMS, "all": ALL_SYSTEMS}
REFERENCE = "deepfilternet3"
MAIN_FUSE = "fuse@6"
TIMING_CLIP_SECONDS = 4
HIGH_BAND_HZ = 4000.0
SILENCE_SECONDS = 2.0
_FUSE_NAME = re.compile(r"fuse@([1-9][0-9]*)((?:-(?:[gnwa][0-9]+(?:\.[0-9]+)?|u))*)")
_FUSE_OPTIONS = {"g": "guidance_scale", "n": "noise_scale", "w": "window_seconds", "a": "attenuation_limit_db"}

Enhancer = Callable[[np.ndarray, int, int], np.ndarray]


def parse_systems(text: str) -> list[str]:
    """``"peers,fuse@6"`` -> the list of system names: the named ones in the canonical order (`ALL_SYSTEMS`), then
    other FUSE settings of the grammar (``fuse@3``, ``fuse@6-g1.5``) in the order given."""
    wanted = []
    for name in (t.strip() for t in text.split(",") if t.strip()):
        if name in GROUPS:
            wanted += GROUPS[name]
            continue
        if name not in PEER_SYSTEMS:
            fuse_settings(name, "--systems")  # raises for a name outside the grammar
        wanted.append(name)
    return [s for s in ALL_SYSTEMS if s in wanted] + list(dict.fromkeys(s for s in wanted if s not in ALL_SYSTEMS))


def fuse_settings(system: str, what: str = "system") -> dict[str, float]:
    """Pipeline arguments of a FUSE system name ``fuse@N[-gG][-nS][-wW][-aA][-u]``: ``fuse@6`` -> 6 steps; ``-g0`` sets
    ``guidance_scale``, ``-n1`` sets ``noise_scale``, ``-w0.5`` sets ``window_seconds``, ``-a20`` sets
    ``attenuation_limit_db``, ``-u`` sets
    ``max_gain_db=None``; what is not named keeps the pipeline's default.

    Raises:
        ValueError: not such a name (``what`` names the option in the message).
    """
    match = _FUSE_NAME.fullmatch(system)
    if match is None:
        raise ValueError(
            f"{what}: unknown system {system!r}. Choose from {', '.join(PEER_SYSTEMS)}, fuse@N[-gG][-nS][-wW][-aA][-u] "
            f"(e.g. {', '.join(FUSE_SYSTEMS[-4:])}) or {', '.join(GROUPS)}."
        )
    options = match.group(2).split("-")[1:]
    if len({o[0] for o in options}) < len(options):
        raise ValueError(f"{what}: {system!r} sets an option twice.")
    settings = {_FUSE_OPTIONS[o[0]]: float(o[1:]) for o in options if o != "u"}
    if "u" in options:
        settings["max_gain_db"] = None
    return {"num_inference_steps": int(match.group(1)), **settings}


def guidance_variants(systems: Sequence[str], steps: int = 6) -> list[tuple[float, str]]:
    """``(guidance scale, name)`` of the FUSE systems at ``steps`` steps that differ only in their guidance scale,
    by scale: ``["fuse@6-g0", "fuse@6", "fuse@6-g2"]`` -> ``[(0.0, "fuse@6-g0"), (1.0, "fuse@6"), (2.0, ...)]``."""
    settings = {s: fuse_settings(s) for s in systems if s.startswith("fuse@")}
    return sorted(
        (v.get("guidance_scale", 1.0), s)
        for s, v in settings.items()
        if v["num_inference_steps"] == steps and set(v) <= {"num_inference_steps", "guidance_scale"}
    )


def make_enhancer(system: str, pipe=None) -> Enhancer:
    """``enhance(noisy, sr, seed) -> enhanced`` for ``system`` (same length and rate); FUSE systems need ``pipe``."""
    if system in PEER_SYSTEMS:
        fn = peers.get_peer(system)
        return lambda audio, sr, seed: fn(audio, sr)
    import torch

    settings = fuse_settings(system)

    def enhance(audio, sr, seed):
        with torch.inference_mode():
            out = pipe(audio, sampling_rate=sr, generator=torch.Generator().manual_seed(seed), **settings).audios
        return np.asarray(out, dtype=np.float32).reshape(-1)[: audio.size]

    return enhance


def high_band_db(
    clean: np.ndarray, output: np.ndarray, sr: int = SAMPLE_RATE, cutoff_hz: float = HIGH_BAND_HZ
) -> float:
    """Energy of ``output`` above ``cutoff_hz`` relative to the clean speech's, in dB (0: the high band as loud as in
    the clean speech; -10: 10 dB too little, a band-limited output). Over the whole clip, from the magnitude spectrum
    (Parseval: the sum of the band's squared FFT bins is its energy). NaN when the clean speech has no energy there;
    an output with none reads -120 dB."""
    n = min(clean.size, output.size)
    freqs = np.fft.rfftfreq(n, 1.0 / sr)

    def energy(x):
        return float(np.sum(np.abs(np.fft.rfft(np.asarray(x[:n], np.float64)))[freqs >= cutoff_hz] ** 2))

    ref = energy(clean)
    return 10.0 * math.log10(max(energy(output) / ref, 1e-12)) if ref > 0 else math.nan


def score_pairs(
    pairs: list[dict],
    corpora: dict[str, Path],
    enhancers: dict[str, Enhancer],
    metrics: Sequence[str],
    example_ids: Sequence[str] = (),
    save_audio_dir: Path | None = None,
) -> dict:
    """Loads every pair (`evaluation_set.pair_audio`: ``corpora["v2"]`` for the stranger split, ``corpora["v1"]``
    for the others), enhances it with every system and scores the output against the clean reference: the
    ``metrics`` and ``hf4k_db`` (`high_band_db`).

    Adds ``seconds`` (the pair's duration) to each pair specification.

    Returns:
        ``{"scores": {system: [per-pair metric dicts]}, "clean_scores": [DNSMOS of each clean reference, when
        dnsmos is scored], "enhance_wall": {system: seconds spent enhancing}, "audio_seconds": total duration,
        "examples": {title: {"noisy", "clean", system: audio}} for the pairs of ``example_ids``}``.
    """
    from tqdm.auto import tqdm

    systems = list(enhancers)
    scores = {s: [] for s in systems}
    clean_scores, enhance_wall, examples, audio_seconds = [], {s: 0.0 for s in systems}, {}, 0.0
    for spec in tqdm(pairs, desc="pairs", unit="pair"):
        clean, noisy = pair_audio(spec, corpora)
        spec["seconds"] = clean.size / SAMPLE_RATE
        audio_seconds += spec["seconds"]
        seed = spec["seed"] % (2**31)
        if "dnsmos" in metrics:  # DNSMOS of the clean reference: the ceiling of the non-intrusive scores
            mos = M.dnsmos(clean, SAMPLE_RATE)
            clean_scores.append({"dnsmos_sig": mos["SIG"], "dnsmos_bak": mos["BAK"], "dnsmos_ovrl": mos["OVRL"]})
        example = (
            examples.setdefault(pair_title(spec), {"noisy": noisy, "clean": clean})
            if spec["id"] in example_ids
            else None
        )
        for system in systems:
            t0 = time.perf_counter()
            enhanced = enhancers[system](noisy, SAMPLE_RATE, seed)
            enhance_wall[system] += time.perf_counter() - t0
            if enhanced.shape != noisy.shape:
                raise RuntimeError(f"{system}: output shape {enhanced.shape} != input shape {noisy.shape}")
            scores[system].append(
                {**M.compute_metrics(clean, enhanced, SAMPLE_RATE, metrics), "hf4k_db": high_band_db(clean, enhanced)}
            )
            if example is not None and system in (REFERENCE, MAIN_FUSE):
                example[system] = enhanced
            if save_audio_dir is not None:
                save_audio(save_audio_dir / system / f"{spec['id']}.wav", enhanced, SAMPLE_RATE, subtype="FLOAT")
        if save_audio_dir is not None:
            save_audio(save_audio_dir / "clean" / f"{spec['id']}.wav", clean, SAMPLE_RATE, subtype="FLOAT")
            save_audio(save_audio_dir / "noisy" / f"{spec['id']}.wav", noisy, SAMPLE_RATE, subtype="FLOAT")
    return {
        "scores": scores,
        "clean_scores": clean_scores,
        "enhance_wall": enhance_wall,
        "audio_seconds": audio_seconds,
        "examples": examples,
    }


def silence_check(enhancers: dict[str, Enhancer], seconds: float = SILENCE_SECONDS) -> dict[str, dict[str, float]]:
    """Digital silence (``seconds`` of zeros) through every FUSE system: ``{system: {"rms_dbfs", "peak_dbfs"}}`` of
    the output (-200 dBFS: exact zeros back). A full-scale sine is -3 dBFS RMS, as in `fuse_hf.data.rms_dbfs`."""
    zeros = np.zeros(int(seconds * SAMPLE_RATE), np.float32)
    result = {}
    for system, enhance in enhancers.items():
        if system.startswith("fuse"):
            out = np.asarray(enhance(zeros, SAMPLE_RATE, 0), np.float64)
            peak = float(np.max(np.abs(out))) if out.size else 0.0
            result[system] = {
                "rms_dbfs": max(D.rms_dbfs(out), -200.0),
                "peak_dbfs": 20.0 * math.log10(peak) if peak > 1e-10 else -200.0,
            }
    return result


def timing_clips(pairs: list[dict], corpora: dict[str, Path], count: int, seed: int) -> list[np.ndarray]:
    """Fixed 4 s noisy clips cut from the first ``count`` pairs (tiled when shorter), seeded by ``seed``."""
    clip_rng = np.random.default_rng(seed)
    return [D.tile_to(pair_audio(p, corpora)[1], TIMING_CLIP_SECONDS * SAMPLE_RATE, clip_rng) for p in pairs[:count]]


def time_system(system: str, enhance: Enhancer, clips: Sequence[np.ndarray], repeats: int) -> dict[str, float]:
    """Real-time factor (wall seconds / audio seconds) of ``system``: one warm-up call, then
    ``repeats`` timed calls per clip; median over all timed calls. DeepFilterNet3's per-stream
    processor (~0.1 s to create) is made outside the timer, like a loaded model."""
    rtfs, setup = [], []
    enhance(clips[0], SAMPLE_RATE, 0)  # warm-up: lazy imports, ONNX/torch initialisation
    for clip in clips:
        for r in range(repeats):
            if system == "deepfilternet3":
                t0 = time.perf_counter()
                proc = peers.new_deepfilternet3_processor()
                setup.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                peers.deepfilternet3(clip, SAMPLE_RATE, processor=proc)
            else:
                t0 = time.perf_counter()
                enhance(clip, SAMPLE_RATE, r)
            rtfs.append((time.perf_counter() - t0) / (clip.size / SAMPLE_RATE))
    result = {"rtf": statistics.median(rtfs), "rtf_min": min(rtfs), "rtf_max": max(rtfs), "runs": len(rtfs)}
    if setup:
        result["setup_s"] = statistics.median(setup)
    return result
