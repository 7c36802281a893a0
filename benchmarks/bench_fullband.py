"""48 kHz evaluation of full-band output (issue 14): FUSE with and without `full_band`, DeepFilterNet3 beside it.

Pairs are built at 48 kHz from full-band sources of corpus v2's stranger split only (never training units):

* speech: tuxpaint's stamp descriptions (44.1 kHz Ogg, Belarusian and Romanian voices) of the `dev_stranger` units,
  read from the builder's extracted packages (``CORPUS/.cache/x``; the corpus' own WAVs are 16 kHz), downmixed,
  resampled to 48 kHz; three clips of one voice joined with 150 ms gaps, a pair of ~3-5 s;
* noise: the stranger noise recordings that are full band at their source: sonic-pi loops (44.1 kHz music),
  supertuxkart's restaurant babble (48 kHz) and bucklespring key presses laid out as typing (44.1 kHz). The other
  stranger noise, lincity-ng's, is 11-22 kHz at the source (nothing or little above 8 kHz) and is left out: noise
  without a high band would not test whether the high band's noise is removed.

SNR over the full band, 0/5/10 dB and clean input, round-robin. Scores: PESQ-WB and ESTOI at 16 kHz; above 8 kHz,
the log-spectral distance to the clean speech (LSD, dB, frames where the clean speech is within 50 dB of its loudest)
and the energy relative to the clean speech's (dB; an output without a high band reads about -100). The noisy input
itself (``noisy``) is scored as a baseline.

    python -m benchmarks.bench_fullband --num-pairs 16

writes ``benchmarks/results/fullband.json`` and ``fullband.md``.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from .common import BUNDLED_MODEL, DEFAULT_CORPUS_V2, RESULTS_DIR, machine_info, markdown_table, write_json

RATE = 48000
SNRS = (0.0, 5.0, 10.0, None)  # None: the clean speech as input
LEVEL_DBFS = -25.0
HIGH_HZ = 8000.0
LSD_TOP_HZ = 20000.0  # tuxpaint is 44.1 kHz: nothing above 22.05 kHz, and its encoder's low-pass near 20 kHz
FULL_BAND_NOISE = {
    "music": (
        "sonic-pi-samples/usr/share/sonic-pi/samples/loop_garzul.flac",
        "sonic-pi-samples/usr/share/sonic-pi/samples/loop_amen_full.flac",
        "sonic-pi-samples/usr/share/sonic-pi/samples/loop_safari.flac",
    ),
    "babble": ("supertuxkart-data/usr/share/games/supertuxkart/data/sfx/lenautile_restaurant.ogg",),
    "typing": ("bucklespring-data/usr/share/buckle/wav",),
}


def _seeded(seed: int, name: str) -> int:
    return zlib.crc32(f"{seed}:{name}".encode())


def source_path(corpus: Path, origin: str) -> Path:
    """`package:/path` of manifest.csv -> the builder's extracted file."""
    package, _, member = origin.partition(":")
    return corpus / ".cache" / "x" / package / member.lstrip("/")


def load_48k(path: Path) -> np.ndarray:
    """Any audio file -> mono float32 at 48 kHz."""
    from fuse_hf.audio import load_audio, resample

    audio, rate = load_audio(path)
    return resample(audio.mean(axis=0), rate, RATE)


def stranger_speech(corpus: Path, seed: int, groups: int) -> list[dict]:
    """`groups` sets of three tuxpaint clips of one voice from the stranger split (clips with energy above 8 kHz)."""
    with open(corpus / "manifest.csv", newline="") as f:
        rows = [
            r
            for r in csv.DictReader(f)
            if r["split"] == "dev_stranger" and r["kind"] == "speech" and r["package"] == "tuxpaint-stamps-default"
        ]
    by_voice: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: _seeded(seed, r["path"])):
        by_voice.setdefault(row["speaker"], []).append(row)
    voices, sets = sorted(by_voice), []
    for i in range(groups):
        pool = by_voice[voices[i % len(voices)]]
        chosen = []
        while len(chosen) < 3 and pool:
            row = pool.pop(0)
            path = source_path(corpus, row["origin"])
            if path.is_file() and full_band_db(load_48k(path)) > -45:  # keep clips that have a high band
                chosen.append(row)
        sets.append({"speaker": voices[i % len(voices)], "clips": [r["path"] for r in chosen], "rows": chosen})
    return sets


def full_band_db(audio: np.ndarray) -> float:
    """Energy above 8 kHz relative to the whole, in dB."""
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / RATE)
    return 10 * math.log10(spectrum[freqs >= HIGH_HZ].sum() / max(spectrum.sum(), 1e-20) + 1e-20)


def typing_noise(folder: Path, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Bucklespring's key presses (`NN-0.wav`) and releases (`NN-1.wav`) at 48 kHz laid out as typing: words of 2-9
    keys, 90-250 ms apart, pauses between words."""
    sounds = {p.stem: load_48k(p) for p in sorted(folder.glob("*.wav"))}
    keys = sorted(stem[:-2] for stem in sounds if stem.endswith("-0") and f"{stem[:-2]}-1" in sounds)
    out = np.zeros(int((seconds + 1) * RATE))
    at = rng.uniform(0.05, 0.3)
    while at < seconds:
        for _ in range(int(rng.integers(2, 10))):
            key = keys[int(rng.integers(len(keys)))]
            gain = 10 ** (rng.uniform(-3, 3) / 20)
            for suffix, delay in (("0", 0.0), ("1", rng.uniform(0.05, 0.15))):
                clip = sounds[f"{key}-{suffix}"]
                start = int((at + delay) * RATE)
                end = min(start + clip.size, out.size)
                out[start:end] += gain * clip[: end - start]
            at += rng.uniform(0.09, 0.25)
        at += rng.uniform(0.15, 0.6)
    return out[: int(seconds * RATE)].astype(np.float32)


def build_pairs(corpus: Path, num_pairs: int, seed: int) -> list[dict]:
    """`num_pairs` (clean, noisy) pairs at 48 kHz with their description."""
    from fuse_hf.audio import avoid_clipping

    rng = np.random.default_rng(seed)
    kinds = sorted(FULL_BAND_NOISE)
    pairs = []
    for i, group in enumerate(stranger_speech(corpus, seed, num_pairs)):
        gap = np.zeros(int(0.15 * RATE), np.float32)
        clean = np.concatenate(
            [part for row in group["rows"] for part in (load_48k(source_path(corpus, row["origin"])), gap)]
        )
        clean *= 10 ** (LEVEL_DBFS / 20) / np.sqrt(np.mean(clean**2))
        snr = SNRS[i % len(SNRS)]
        kind = kinds[(i // len(SNRS)) % len(kinds)]
        noisy, noise_name = clean.copy(), "none"
        if snr is not None:
            sources = FULL_BAND_NOISE[kind]
            source = sources[int(rng.integers(len(sources)))]
            path = corpus / ".cache" / "x" / source
            if kind == "typing":
                noise = typing_noise(path, clean.size / RATE, rng)
            else:
                noise = load_48k(path)
                noise = np.tile(noise, math.ceil(clean.size / noise.size) + 1)
                start = int(rng.integers(0, noise.size - clean.size))
                noise = noise[start : start + clean.size]
            noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2)) * 10 ** (-snr / 20)
            noisy, noise_name = clean + noise, "bucklespring typing" if kind == "typing" else Path(source).name
        clean, noisy = avoid_clipping(clean.astype(np.float32), noisy.astype(np.float32))
        pairs.append(
            dict(
                id=f"pair{i:02d}",
                speaker=group["speaker"],
                clips=group["clips"],
                snr_db=snr,
                noise_kind=kind if snr is not None else "none",
                noise=noise_name,
                seconds=clean.size / RATE,
                clean=clean,
                noisy=noisy,
                seed=_seeded(seed, f"pair{i}"),
            )
        )
    return pairs


# ------------------------------------------------------------------------------------------ measures


def _power_spectrogram(audio: np.ndarray, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """|STFT|^2 `(frames, n_fft // 2 + 1)` with a Hann window."""
    padded = np.pad(audio.astype(np.float64), (n_fft // 2, n_fft // 2))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop] * np.hanning(n_fft)
    return np.abs(np.fft.rfft(frames, axis=-1)) ** 2


def lsd_high(clean: np.ndarray, output: np.ndarray, low_hz: float = HIGH_HZ, high_hz: float = LSD_TOP_HZ) -> float:
    """Log-spectral distance (dB) between clean and output in [low_hz, high_hz), over the frames where the clean speech
    is within 50 dB of its loudest frame: mean over frames of the RMS over bins of the log-power difference. Powers get
    a floor 100 dB under the clean speech's loudest bin, so that an empty band reads as large, not as infinite."""
    n = min(clean.size, output.size)
    reference, estimate = _power_spectrogram(clean[:n]), _power_spectrogram(output[:n])
    freqs = np.fft.rfftfreq(2048, 1 / RATE)
    band = (freqs >= low_hz) & (freqs < high_hz)
    floor = reference.max() * 1e-10
    frame_energy = reference.sum(axis=1)
    active = frame_energy > frame_energy.max() * 1e-5
    difference = 10 * np.log10((reference[active][:, band] + floor) / (estimate[active][:, band] + floor))
    return float(np.mean(np.sqrt(np.mean(difference**2, axis=1))))


def score(clean: np.ndarray, output: np.ndarray) -> dict[str, float]:
    from fuse_hf import metrics as M
    from fuse_hf.audio import resample

    from .quality.run import high_band_db

    clean16, output16 = resample(clean, RATE, 16000), resample(output, RATE, 16000)
    return {
        "pesq_wb": M.pesq_wb(clean16, output16, 16000),
        "estoi": M.estoi(clean16, output16, 16000),
        "lsd_high_db": lsd_high(clean, output),
        "high_band_db": high_band_db(clean, output, RATE, HIGH_HZ),
    }


# ------------------------------------------------------------------------------------------ systems


def make_systems(model: str, steps: int) -> dict:
    import torch

    from fuse_hf import FUSEPipeline

    from . import peers

    pipe = FUSEPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)

    def fuse(full_band: bool):
        def enhance(noisy, seed):
            with torch.inference_mode():
                generator = torch.Generator().manual_seed(seed)
                return pipe(
                    noisy, sampling_rate=RATE, num_inference_steps=steps, generator=generator, full_band=full_band
                ).audios

        return enhance

    return {
        "noisy": lambda noisy, seed: noisy,
        f"fuse@{steps} (16 kHz, full_band=False)": fuse(False),
        f"fuse@{steps} + full band": fuse(True),
        "deepfilternet3 (48 kHz)": lambda noisy, seed: peers.deepfilternet3(noisy, RATE),
    }


def summarise(rows: list[dict], systems: list[str]) -> dict:
    keys = ("pesq_wb", "estoi", "lsd_high_db", "high_band_db")
    summary = {}
    for name in systems:
        for part, keep in (
            ("all", lambda r: True),
            ("noisy", lambda r: r["snr_db"] is not None),
            ("clean", lambda r: r["snr_db"] is None),
        ):
            chosen = [r["scores"][name] for r in rows if keep(r)]
            summary.setdefault(name, {})[part] = {k: float(np.nanmean([c[k] for c in chosen])) for k in keys}
            summary[name][part]["pairs"] = len(chosen)
    return summary


def markdown(result: dict) -> str:
    systems = list(result["summary"])
    lines = [
        "# Full band at 48 kHz (issue 14)",
        "",
        f"`{result['command']}`: {result['num_pairs']} pairs of stranger tuxpaint speech (44.1 kHz sources) with"
        " full-band stranger noise (music, babble, typing) at 0/5/10 dB and clean, at 48 kHz; "
        f"{result['machine']['cores']} CPUs ({result['machine']['cpu']}), {result['seconds']:.0f} s.",
        "",
        "PESQ-WB and ESTOI at 16 kHz; LSD: log-spectral distance to the clean speech over 8-20 kHz (lower is better);"
        " HB: energy above 8 kHz relative to the clean speech's (0 dB: as loud).",
        "",
    ]
    for part, title in (("noisy", "noisy input (0/5/10 dB)"), ("clean", "clean input"), ("all", "all pairs")):
        lines += [f"## {title}", ""]
        rows = []
        for name in systems:
            s = result["summary"][name][part]
            rows.append(
                [
                    name,
                    f"{s['pesq_wb']:.2f}",
                    f"{s['estoi']:.3f}",
                    f"{s['lsd_high_db']:.1f}",
                    f"{s['high_band_db']:+.1f}",
                ]
            )
        lines += [markdown_table(["system", "PESQ-WB", "ESTOI", "LSD >8 kHz (dB)", "HB vs clean (dB)"], rows, True), ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus-v2", type=Path, default=DEFAULT_CORPUS_V2)
    parser.add_argument("--model", default=str(BUNDLED_MODEL))
    parser.add_argument("--num-pairs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "fullband")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    machine = machine_info()
    pairs = build_pairs(args.corpus_v2.expanduser(), args.num_pairs, args.seed)
    systems = make_systems(args.model, args.steps)
    rows = []
    for pair in pairs:
        scores = {}
        for name, enhance in systems.items():
            output = np.asarray(enhance(pair["noisy"], pair["seed"]), np.float32).reshape(-1)[: pair["clean"].size]
            scores[name] = score(pair["clean"], output)
        rows.append({k: v for k, v in pair.items() if k not in ("clean", "noisy")} | {"scores": scores})
        print(pair["id"], pair["snr_db"], pair["noise"], {n: round(s["lsd_high_db"], 1) for n, s in scores.items()})
    result = dict(
        benchmark="fullband",
        command="python -m benchmarks.bench_fullband " + " ".join(argv if argv is not None else sys.argv[1:]),
        machine=machine,
        num_pairs=len(pairs),
        settings=dict(rate=RATE, steps=args.steps, seed=args.seed, snrs=SNRS, level_dbfs=LEVEL_DBFS),
        summary=summarise(rows, list(systems)),
        pairs=rows,
        seconds=time.perf_counter() - started,
    )
    write_json(args.out.with_suffix(".json"), result)
    text = markdown(result)
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
