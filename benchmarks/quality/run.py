"""The quality benchmark's systems and runs: enhance every pair with every system, score it, time the systems.

Systems: ``identity`` (the noisy input), ``noisereduce``, ``deepfilternet3`` (`benchmarks.peers`), ``fuse@N``
(N DDIM steps, guidance 1.0, the pipeline's default noise scale), ``fuse@6-g0`` (``guidance_scale=0``) and
``fuse@6-n1`` (``noise_scale=1``). Every system is an ``enhance(noisy, sr, seed) -> enhanced`` function
(`make_enhancer`), so that scoring and timing treat them alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fuse_hf import data as D
from fuse_hf import metrics as M
from fuse_hf.audio import SAMPLE_RATE, save_audio

from .. import peers
from .evaluation_set import render_pair

PEER_SYSTEMS = ("identity", "noisereduce", "deepfilternet3")
FUSE_STEPS = (1, 2, 4, 6, 10)
FUSE_SYSTEMS = tuple(f"fuse@{s}" for s in FUSE_STEPS) + ("fuse@6-g0", "fuse@6-n1")
ALL_SYSTEMS = PEER_SYSTEMS + FUSE_SYSTEMS
REFERENCE = "deepfilternet3"
MAIN_FUSE = "fuse@6"
TIMING_CLIP_SECONDS = 4

Enhancer = Callable[[np.ndarray, int, int], np.ndarray]


def parse_systems(text: str) -> list[str]:
    """``"peers,fuse@6"`` -> the list of system names, in the canonical order."""
    groups = {"peers": PEER_SYSTEMS, "fuse": FUSE_SYSTEMS, "all": ALL_SYSTEMS}
    wanted = set()
    for name in (t.strip() for t in text.split(",") if t.strip()):
        if name in groups:
            wanted.update(groups[name])
        elif name in ALL_SYSTEMS:
            wanted.add(name)
        else:
            raise ValueError(
                f"--systems: unknown system {name!r}. Choose from {', '.join(ALL_SYSTEMS)} or peers, fuse, all."
            )
    return [s for s in ALL_SYSTEMS if s in wanted]


def fuse_settings(system: str) -> dict[str, float]:
    """Pipeline arguments of a system name: ``fuse@6`` -> 6 steps; ``-g0`` sets ``guidance_scale``, ``-n1``
    sets ``noise_scale``; what is not named keeps the pipeline's default."""
    steps, *options = system.split("@", 1)[1].split("-")
    names = {"g": "guidance_scale", "n": "noise_scale"}
    return {"num_inference_steps": int(steps), **{names[o[0]]: float(o[1:]) for o in options}}


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


def score_pairs(
    pairs: list[dict],
    corpus: Path,
    enhancers: dict[str, Enhancer],
    metrics: Sequence[str],
    example_ids: Sequence[str] = (),
    save_audio_dir: Path | None = None,
) -> dict:
    """Renders every pair, enhances it with every system and scores the output against the clean reference.

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
        clean, noisy = render_pair(spec, corpus)
        spec["seconds"] = clean.size / SAMPLE_RATE
        audio_seconds += spec["seconds"]
        seed = spec["seed"] % (2**31)
        if "dnsmos" in metrics:  # DNSMOS of the clean reference: the ceiling of the non-intrusive scores
            mos = M.dnsmos(clean, SAMPLE_RATE)
            clean_scores.append({"dnsmos_sig": mos["SIG"], "dnsmos_bak": mos["BAK"], "dnsmos_ovrl": mos["OVRL"]})
        if spec["id"] in example_ids:
            examples[f"{spec['id']} ({spec['noise_type']}, {spec['snr_db']:g} dB)"] = {"noisy": noisy, "clean": clean}
        for system in systems:
            t0 = time.perf_counter()
            enhanced = enhancers[system](noisy, SAMPLE_RATE, seed)
            enhance_wall[system] += time.perf_counter() - t0
            if enhanced.shape != noisy.shape:
                raise RuntimeError(f"{system}: output shape {enhanced.shape} != input shape {noisy.shape}")
            scores[system].append(M.compute_metrics(clean, enhanced, SAMPLE_RATE, metrics))
            if spec["id"] in example_ids and system in (REFERENCE, MAIN_FUSE):
                examples[next(k for k in examples if k.startswith(spec["id"]))][system] = enhanced
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


def timing_clips(pairs: list[dict], corpus: Path, count: int, seed: int) -> list[np.ndarray]:
    """Fixed 4 s noisy clips cut from the first ``count`` pairs (tiled when shorter), seeded by ``seed``."""
    clip_rng = np.random.default_rng(seed)
    return [D.tile_to(render_pair(p, corpus)[1], TIMING_CLIP_SECONDS * SAMPLE_RATE, clip_rng) for p in pairs[:count]]


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
