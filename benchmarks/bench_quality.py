"""Quality benchmark of fuse-small against the noisy input, noisereduce and DeepFilterNet3.

Builds a fixed, seeded evaluation set from the corpus *valid* splits (never used for training):

* in-domain: 60 pairs = 4 noise types (recorded valid noise, white, pink, babble of 4 other valid
  talkers) x 5 SNRs (-5, 0, 5, 10, 15 dB) x 3, with 20 wideband hedgewars voices and 40 Dutch
  (band-limited) fillets lines as speech;
* out-of-domain: 20 pairs with the narrowband French telephone prompts (``speech_narrowband/``) as
  speech, 4 noise types x 5 SNRs.

Then, on the same pairs and in one run, it enhances with every system, scores PESQ-WB, ESTOI,
SI-SDR and DNSMOS SIG/BAK/OVRL through `fuse_hf.metrics`, measures the real-time factor (torch and
ONNX at 2 threads, median over repeats on 4 s clips) and writes:

* ``--out`` JSON (per-pair scores, summaries, timings, configuration);
* ``<out-dir>/results.md``: overall / by SNR / by noise / by speech source / out-of-domain tables,
  each fuse-small figure with its ratio to DeepFilterNet3's, and the acceptance checks of issue 6;
* plots under ``<out-dir>/``: metrics vs steps, guidance on vs off, PESQ vs SNR, spectrograms.

```bash
python benchmarks/bench_quality.py                                     # everything, writes docs/
python benchmarks/bench_quality.py --limit 4 --systems peers --out-dir /tmp/bq   # quick check
python benchmarks/bench_quality.py --model pipelines/fuse-small --systems identity,deepfilternet3,fuse@6
```

Systems: ``identity`` (the noisy input), ``noisereduce``, ``deepfilternet3``, ``fuse@N`` (N DDIM
steps, guidance 1.0, the pipeline's default noise scale; N in 1, 2, 4, 6, 10), ``fuse@6-g0`` (guidance off,
``guidance_scale=0``) and ``fuse@6-n1`` (initial noise at full scale, ``noise_scale=1``: sampling at temperature 1).
Groups: ``peers``, ``fuse``, ``all``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# Fix the thread pools before numpy/torch/onnxruntime start them: timings are for 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fuse_hf import data as D  # noqa: E402
from fuse_hf import metrics as M  # noqa: E402
from fuse_hf import peers  # noqa: E402

SR = 16000
SNRS_DB = (-5.0, 0.0, 5.0, 10.0, 15.0)
NOISE_TYPES = ("recorded", "white", "pink", "babble")
PEER_SYSTEMS = ("identity", "noisereduce", "deepfilternet3")
FUSE_STEPS = (1, 2, 4, 6, 10)
FUSE_SYSTEMS = tuple(f"fuse@{s}" for s in FUSE_STEPS) + ("fuse@6-g0", "fuse@6-n1")
ALL_SYSTEMS = PEER_SYSTEMS + FUSE_SYSTEMS
REFERENCE = "deepfilternet3"
MAIN_FUSE = "fuse@6"
# Column order of every table: (result key, header, format).
COLUMNS = (
    ("pesq", "PESQ-WB", "{:.2f}"),
    ("estoi", "ESTOI", "{:.3f}"),
    ("si_sdr", "SI-SDR dB", "{:.2f}"),
    ("dnsmos_sig", "SIG", "{:.2f}"),
    ("dnsmos_bak", "BAK", "{:.2f}"),
    ("dnsmos_ovrl", "OVRL", "{:.2f}"),
)
METRIC_KEYS = tuple(c[0] for c in COLUMNS)
# Hedgewars "Laugh" takes are laughter, not speech: a speech benchmark should not score them.
EXCLUDE_NAME_PARTS = ("Laugh",)


# ================================================================================================
# evaluation set
# ================================================================================================
def read_manifest(corpus: Path) -> List[Dict[str, str]]:
    """Rows of ``corpus/manifest.csv`` (path, source_package, seconds, split, hf4k_db, ...)."""
    manifest = corpus / "manifest.csv"
    if not manifest.is_file():
        raise ValueError(
            f"{manifest}: not found. Build the corpus with `bash ../shared/corpus/build_corpus.sh` or pass --corpus DIR."
        )
    with open(manifest, newline="") as f:
        return list(csv.DictReader(f))


def load_mono(path: Path) -> np.ndarray:
    """A corpus file as float64 mono at 16 kHz (the corpus is 16 kHz mono; resample just in case)."""
    audio, sr = sf.read(path, dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != SR:
        import soxr

        audio = soxr.resample(audio, sr, SR, quality="HQ")
    return audio


def save_wav(path: Path, audio: np.ndarray) -> None:
    """Write a float32 WAV at 16 kHz, creating the folder (float, so nothing is clipped or requantised)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SR, subtype="FLOAT")


def crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n``-sample excerpt of ``x`` (all of it when shorter)."""
    start = D.random_crop_offset(x.size, n, rng)
    return x[start : start + n]


def mix(clean: np.ndarray, noise: np.ndarray, snr_db: float, level_dbfs: float) -> Tuple[np.ndarray, np.ndarray]:
    """Mix at ``snr_db`` (power over the clip) with the clean RMS at ``level_dbfs``, with the training mixer's own
    functions (`fuse_hf.data`). Returns float32 ``(clean, noisy)``; both are scaled down together if the mixture
    would clip, so that the clean reference stays the exact speech component of the noisy input."""
    clean = (clean * D.set_level(clean, level_dbfs)).astype(np.float32)
    noisy, _ = D.mix_at_snr(clean, noise.astype(np.float32), snr_db)
    clean, noisy = D.avoid_clipping(clean, noisy)
    return clean.astype(np.float32), noisy.astype(np.float32)


def plan_pairs(rows: List[Dict[str, str]], seed: int, num_pairs: int, num_ood: int, max_seconds: float) -> List[Dict]:
    """The evaluation set as a list of pair specifications (no audio yet), fully determined by ``seed``.

    In-domain pairs cycle through NOISE_TYPES x SNRS_DB so that every (noise, SNR) cell has the
    same count; a third of them use wideband hedgewars voices, the rest Dutch fillets lines.
    """
    rng = np.random.default_rng(seed)
    ok = lambda r: not any(p in r["path"] for p in EXCLUDE_NAME_PARTS) and float(r["seconds"]) >= 1.0  # noqa: E731
    speech = sorted((r for r in rows if r["path"].startswith("speech/valid/") and ok(r)), key=lambda r: r["path"])
    noise = sorted((r for r in rows if r["path"].startswith("noise/valid/")), key=lambda r: r["path"])
    narrow = sorted(
        (r for r in rows if r["path"].startswith("speech_narrowband/") and 1.5 <= float(r["seconds"])),
        key=lambda r: r["path"],
    )
    if not speech or not noise or not narrow:
        raise ValueError("corpus: the valid speech, valid noise or speech_narrowband folder is empty. Rebuild the corpus.")
    wide = [r for r in speech if r["source_package"].startswith("hedgewars")]
    dutch = [r for r in speech if not r["source_package"].startswith("hedgewars")]
    n_wide = min(len(wide), num_pairs // 3)
    chosen = [wide[i] for i in rng.permutation(len(wide))[:n_wide]]
    chosen += [dutch[i] for i in rng.permutation(len(dutch))[: num_pairs - n_wide]]
    chosen = [chosen[i] for i in rng.permutation(len(chosen))]
    if len(chosen) < num_pairs:
        raise ValueError(f"corpus: only {len(chosen)} valid speech files, {num_pairs} pairs requested. Lower --num-pairs.")
    ood = [narrow[i] for i in rng.permutation(len(narrow))[:num_ood]]

    cells = [(n, s) for n in NOISE_TYPES for s in SNRS_DB]
    pairs = []
    for subset, speech_rows in (("in-domain", chosen), ("out-of-domain", ood)):
        order = rng.permutation(len(cells))  # which cell each pair gets, balanced over the subset
        for i, row in enumerate(speech_rows):
            noise_type, snr = cells[order[i % len(cells)]]
            others = [r["path"] for r in speech if r["path"] != row["path"]]
            pairs.append(
                {
                    "id": f"{'ind' if subset == 'in-domain' else 'ood'}{i:03d}",
                    "subset": subset,
                    "speech": row["path"],
                    "source": "hedgewars" if row["source_package"].startswith("hedgewars")
                    else "asterisk-fr" if subset == "out-of-domain" else "fillets-nl",
                    "hf4k_db": float(row["hf4k_db"]),
                    "noise_type": noise_type,
                    "noise": noise[i % len(noise)]["path"] if noise_type == "recorded" else None,
                    "babble": [others[j] for j in rng.choice(len(others), 4, replace=False)] if noise_type == "babble" else None,
                    "snr_db": snr,
                    "level_dbfs": float(rng.uniform(-32.0, -20.0)),
                    "max_seconds": max_seconds,
                    "seed": int(rng.integers(0, 2**31 - 1)),
                }
            )
    return pairs


def render_pair(spec: Dict, corpus: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Audio of one pair specification: float32 ``(clean, noisy)`` at 16 kHz."""
    rng = np.random.default_rng(spec["seed"])
    speech = load_mono(corpus / spec["speech"])
    n_max = int(spec["max_seconds"] * SR)
    if speech.size > n_max:
        speech = crop(speech, n_max, rng)
    n = speech.size
    if spec["noise_type"] == "recorded":
        noise = D.tile_to(load_mono(corpus / spec["noise"]), n, rng)
    elif spec["noise_type"] == "white":
        noise = D.white_noise(n, rng)
    elif spec["noise_type"] == "pink":
        noise = D.pink_noise(n, rng)
    else:
        noise = D.babble([D.tile_to(load_mono(corpus / p), n, rng) for p in spec["babble"]])
    return mix(speech, noise, spec["snr_db"], spec["level_dbfs"])


# ================================================================================================
# systems
# ================================================================================================
def parse_systems(text: str) -> List[str]:
    """``"peers,fuse@6"`` -> the list of system names, in the canonical order."""
    groups = {"peers": PEER_SYSTEMS, "fuse": FUSE_SYSTEMS, "all": ALL_SYSTEMS}
    wanted = set()
    for name in (t.strip() for t in text.split(",") if t.strip()):
        if name in groups:
            wanted.update(groups[name])
        elif name in ALL_SYSTEMS:
            wanted.add(name)
        else:
            raise ValueError(f"--systems: unknown system {name!r}. Choose from {', '.join(ALL_SYSTEMS)} or peers, fuse, all.")
    return [s for s in ALL_SYSTEMS if s in wanted]


def fuse_settings(system: str) -> Dict[str, float]:
    """Pipeline arguments of a system name: ``fuse@6`` -> 6 steps; ``-g0`` sets ``guidance_scale``, ``-n1``
    sets ``noise_scale``; what is not named keeps the pipeline's default."""
    steps, *options = system.split("@", 1)[1].split("-")
    names = {"g": "guidance_scale", "n": "noise_scale"}
    return {"num_inference_steps": int(steps), **{names[o[0]]: float(o[1:]) for o in options}}


def load_pipeline(model: Path):
    """Load the FUSE pipeline from a ``save_pretrained`` folder, progress bars off."""
    if not Path(model).is_dir():
        raise ValueError(f"--model {model}: no such pipeline folder. Train fuse-small first or pass --model DIR.")
    from fuse_hf import FUSEPipeline
    import fuse_hf.models.beats  # noqa: F401  (diffusers resolves the conditioner class only if imported)

    pipe = FUSEPipeline.from_pretrained(str(model))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_enhancer(system: str, pipe=None) -> Callable[[np.ndarray, int, int], np.ndarray]:
    """``enhance(noisy, sr, seed) -> enhanced`` for ``system`` (same length and rate)."""
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


def time_system(system: str, enhance, clips: Sequence[np.ndarray], repeats: int) -> Dict[str, float]:
    """Real-time factor (wall seconds / audio seconds) of ``system``: one warm-up call, then
    ``repeats`` timed calls per clip; median over all timed calls. DeepFilterNet3's per-stream
    processor (~0.1 s to create) is made outside the timer, like a loaded model."""
    rtfs, setup = [], []
    enhance(clips[0], SR, 0)  # warm-up: lazy imports, ONNX/torch initialisation
    for clip in clips:
        for r in range(repeats):
            if system == "deepfilternet3":
                t0 = time.perf_counter()
                proc = peers.new_deepfilternet3_processor()
                setup.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                peers.deepfilternet3(clip, SR, processor=proc)
            else:
                t0 = time.perf_counter()
                enhance(clip, SR, r)
            rtfs.append((time.perf_counter() - t0) / (clip.size / SR))
    result = {"rtf": statistics.median(rtfs), "rtf_min": min(rtfs), "rtf_max": max(rtfs), "runs": len(rtfs)}
    if setup:
        result["setup_s"] = statistics.median(setup)
    return result


# ================================================================================================
# summaries
# ================================================================================================
def nanmean(values) -> float:
    v = [x for x in values if x is not None and not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


def summarise(scores: Dict[str, List[Dict]], pairs: List[Dict]) -> Dict:
    """Mean of each metric per system, overall (in-domain) and by SNR, noise, source, subset."""
    def mean_over(system, keep):
        rows = [s for s, p in zip(scores[system], pairs) if keep(p)]
        out = {k: nanmean([r.get(k, math.nan) for r in rows]) for k in METRIC_KEYS}
        out["n"] = len(rows)
        return out

    summary = {}
    for system in scores:
        summary[system] = {
            "overall": mean_over(system, lambda p: p["subset"] == "in-domain"),
            "out_of_domain": mean_over(system, lambda p: p["subset"] == "out-of-domain"),
            "by_snr": {str(s): mean_over(system, lambda p, s=s: p["subset"] == "in-domain" and p["snr_db"] == s) for s in SNRS_DB},
            "by_noise": {n: mean_over(system, lambda p, n=n: p["subset"] == "in-domain" and p["noise_type"] == n) for n in NOISE_TYPES},
            "by_source": {src: mean_over(system, lambda p, src=src: p["subset"] == "in-domain" and p["source"] == src)
                          for src in ("hedgewars", "fillets-nl")},
        }
    return summary


def _fmt(value, fmt="{:.2f}") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _ratio(value, ref) -> str:
    if any(v is None or math.isnan(v) for v in (value, ref)) or ref == 0:
        return ""
    return f" ({value / ref:.2f}×)"


def table(summary: Dict, part: str, systems: Sequence[str], timing: Optional[Dict] = None, clean_dnsmos: Optional[Dict] = None) -> str:
    """Markdown table of one summary part; fuse rows carry their ratio to DeepFilterNet3."""
    headers = ["system"] + [c[1] for c in COLUMNS] + (["RTF"] if timing else [])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for system in systems:
        row, ref = summary[system][part], summary.get(REFERENCE, {}).get(part)
        cells = [system]
        for key, _, fmt in COLUMNS:
            cell = _fmt(row[key], fmt)
            if system.startswith("fuse") and ref:
                cell += _ratio(row[key], ref[key])
            cells.append(cell)
        if timing:
            t = timing.get(system, {}).get("rtf", math.nan)
            cell = _fmt(t, "{:.3f}")
            if system.startswith("fuse") and REFERENCE in timing:
                cell += _ratio(t, timing[REFERENCE]["rtf"])
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    if clean_dnsmos:
        cells = ["clean reference"] + ["–"] * 3 + [_fmt(clean_dnsmos[k]) for k in ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")]
        lines.append("| " + " | ".join(cells + (["–"] if timing else [])) + " |")
    return "\n".join(lines)


def group_table(summary: Dict, part: str, groups: Sequence[str], key: str, systems: Sequence[str], fmt: str) -> str:
    """Markdown table of one metric: systems as rows, groups (SNRs, noise types, ...) as columns."""
    lines = ["| system | " + " | ".join(groups) + " |", "|" + "---|" * (len(groups) + 1)]
    for system in systems:
        lines.append("| " + system + " | " + " | ".join(_fmt(summary[system][part][g][key], fmt) for g in groups) + " |")
    return "\n".join(lines)


def acceptance(summary: Dict, timing: Dict) -> List[str]:
    """Issue 6's acceptance checks as markdown bullet lines (only when fuse@6 ran)."""
    if MAIN_FUSE not in summary:
        return ["- fuse@6 was not run: no acceptance check."]
    lines = []
    for part, label in (("overall", "in-domain"), ("out_of_domain", "out-of-domain")):
        for other in ("identity", "noisereduce"):
            if other not in summary:
                continue
            for key in ("pesq", "estoi", "si_sdr", "dnsmos_ovrl"):
                a, b = summary[MAIN_FUSE][part][key], summary[other][part][key]
                ok = not math.isnan(a) and not math.isnan(b) and a > b
                lines.append(f"- [{'x' if ok else ' '}] {label}: fuse@6 {key} {_fmt(a)} > {other} {_fmt(b)}")
    if MAIN_FUSE in timing and REFERENCE in timing:
        ratio = timing[MAIN_FUSE]["rtf"] / timing[REFERENCE]["rtf"]
        lines.append(f"- [{'x' if ratio <= 3.0 else ' '}] RTF fuse@6 {timing[MAIN_FUSE]['rtf']:.3f} <= 3 x DeepFilterNet3 "
                     f"{timing[REFERENCE]['rtf']:.3f} (ratio {ratio:.2f})")
    if "fuse@6-g0" in summary:
        a, b = summary[MAIN_FUSE]["overall"]["pesq"], summary["fuse@6-g0"]["overall"]["pesq"]
        # Differences below ~0.05 PESQ are within what 60 pairs can resolve: do not call them a win.
        verdict = "no measurable difference" if abs(a - b) < 0.05 else ("guidance helps" if a > b else "guidance hurts")
        lines.append(f"- guidance on vs off (in-domain PESQ-WB): {_fmt(a)} vs {_fmt(b)}: {verdict} (reported as measured)")
    if "fuse@6-n1" in summary:
        for part, label in (("overall", "in-domain"), ("out_of_domain", "out-of-domain")):
            main, full = summary[MAIN_FUSE][part], summary["fuse@6-n1"][part]
            lines.append(f"- default noise scale vs noise scale 1 ({label}): PESQ-WB {_fmt(main['pesq'])} vs {_fmt(full['pesq'])}, "
                         f"ESTOI {_fmt(main['estoi'], '{:.3f}')} vs {_fmt(full['estoi'], '{:.3f}')}, "
                         f"OVRL {_fmt(main['dnsmos_ovrl'])} vs {_fmt(full['dnsmos_ovrl'])} (reported as measured)")
    return lines


def weaknesses(summary: Dict) -> List[str]:
    """What fuse@6 does badly, as markdown bullets computed from the summary (issue 6 asks to show it)."""
    if MAIN_FUSE not in summary or "identity" not in summary:
        return []
    fuse, noisy = summary[MAIN_FUSE], summary["identity"]
    lines = []
    if REFERENCE in summary:
        behind = [f"{label} {_fmt(fuse['out_of_domain'][key], fmt)} vs {_fmt(summary[REFERENCE]['out_of_domain'][key], fmt)}"
                  for key, label, fmt in COLUMNS if fuse["out_of_domain"][key] < summary[REFERENCE]["out_of_domain"][key]]
        if behind:
            lines.append("- Out-of-domain (other language, narrowband speech) it trails DeepFilterNet3 on " + ", ".join(behind) + ".")
    gains = {snr: fuse["by_snr"][snr]["estoi"] - noisy["by_snr"][snr]["estoi"] for snr in fuse["by_snr"]}
    worst = min(gains, key=gains.get)
    lines.append(f"- Intelligibility gains are small and smallest at {float(worst):g} dB input SNR: ESTOI {gains[worst]:+.3f} "
                 "over the noisy input there (by SNR: " + ", ".join(f"{float(k):g} dB {v:+.3f}" for k, v in gains.items()) + ").")
    if "hedgewars" in fuse["by_source"] and "fillets-nl" in fuse["by_source"]:
        wide, narrow = fuse["by_source"]["hedgewars"]["pesq"], fuse["by_source"]["fillets-nl"]["pesq"]
        lines.append(f"- Wideband voices gain less than band-limited ones (PESQ-WB {_fmt(wide)} on hedgewars vs {_fmt(narrow)} on "
                     "fillets-nl); likely causes, not measured apart: the noisy phase the magnitude VAE reuses, and training voices "
                     "that are mostly band-limited.")
    if "fuse@6-n1" in summary:
        full = summary["fuse@6-n1"]["overall"]["estoi"]
        lines.append(f"- Sampled at full temperature (`noise_scale=1`) it loses intelligibility: ESTOI {full:.3f} against the noisy "
                     f"input's {noisy['overall']['estoi']:.3f}; the default noise scale keeps it above.")
    return lines


def write_markdown(path: Path, result: Dict, plots: Dict[str, str]) -> None:
    """``results.md``: the tables, the acceptance checks and links to the plots."""
    summary, timing, systems = result["summary"], result["timing"], result["systems"]
    cfg = result["config"]
    n_in = sum(p["subset"] == "in-domain" for p in result["pairs"])
    n_ood = len(result["pairs"]) - n_in
    md = [
        "# Quality benchmark: fuse-small vs noisy input, noisereduce and DeepFilterNet3",
        "",
        f"Generated by `benchmarks/bench_quality.py` on {cfg['date']} ({cfg['machine']}, torch threads {cfg['threads']}). "
        f"Seed {cfg['seed']}; {n_in} in-domain pairs from the corpus valid splits (speech: hedgewars wideband voices and "
        f"Dutch fillets lines; noise: recorded valid noise, white, pink, 4-talker babble; SNR {', '.join(f'{s:g}' for s in SNRS_DB)} dB), "
        f"{n_ood} out-of-domain pairs with narrowband French prompts as speech. Whole run: {result['runtime_s']['total']:.0f} s.",
        "",
        "PESQ-WB (1.04-4.64), ESTOI (0-1), SI-SDR (dB) against the clean reference; DNSMOS P.835 SIG/BAK/OVRL (1-5) "
        "of the output alone. RTF = wall time / audio duration on 4 s clips (median of "
        f"{cfg['timing_repeats']} repeats x {cfg['timing_clips']} clips; lower is faster). "
        "fuse-small figures carry their ratio to DeepFilterNet3's in brackets (for SI-SDR, a ratio of dB values; for RTF, "
        "below 1 is faster).",
        "",
        "## Overall (in-domain)",
        "",
        table(summary, "overall", systems, timing, result.get("clean_dnsmos", {}).get("overall")),
        "",
        "## Out-of-domain (narrowband French prompts)",
        "",
        table(summary, "out_of_domain", systems, None, result.get("clean_dnsmos", {}).get("out_of_domain")),
        "",
        "## By SNR (in-domain)",
        "",
    ]
    snr_groups = [str(s) for s in SNRS_DB]
    for key, label, fmt in COLUMNS[:3] + COLUMNS[5:]:
        md += [f"{label} by input SNR (dB):", "", group_table(summary, "by_snr", snr_groups, key, systems, fmt), ""]
    md += ["## By noise type (in-domain)", ""]
    for key, label, fmt in (COLUMNS[0], COLUMNS[2]):
        md += [f"{label}:", "", group_table(summary, "by_noise", NOISE_TYPES, key, systems, fmt), ""]
    md += ["## By speech source (in-domain)", "",
           "hedgewars voices are wideband; the Dutch fillets lines are band-limited near 4 kHz (see the corpus README).", ""]
    for key, label, fmt in (COLUMNS[0], COLUMNS[5]):
        md += [f"{label}:", "", group_table(summary, "by_source", ("hedgewars", "fillets-nl"), key, systems, fmt), ""]
    bad = weaknesses(summary)
    if bad:
        md += ["## What fuse-small does badly", ""] + bad + ["", "Listen for yourself: `--save-audio DIR` writes every "
               "clean, noisy and enhanced file of the run.", ""]
    md += ["## Acceptance (issue 6)", ""] + acceptance(summary, timing) + [""]
    if timing.get(REFERENCE, {}).get("setup_s") is not None:
        md += [f"DeepFilterNet3's RTF excludes creating its streaming processor ({timing[REFERENCE]['setup_s'] * 1000:.0f} ms "
               "per file, the model being unpacked), as fuse-small's excludes loading the pipeline.", ""]
    if plots:
        md += ["## Plots", ""] + [f"![{title}]({name})" for title, name in plots.items()] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(md))


# ================================================================================================
# plots
# ================================================================================================
PLOT_FILES = {
    "metrics vs steps": "quality_vs_steps.png",
    "guidance on vs off (6 steps)": "quality_guidance.png",
    "PESQ-WB vs input SNR (in-domain)": "quality_pesq_vs_snr.png",
    "spectrograms of two examples": "quality_spectrograms.png",
}


def make_plots(out_dir: Path, result: Dict, examples: Dict[str, Dict[str, np.ndarray]]) -> Dict[str, str]:
    """Write the PNGs that the available systems allow; returns {title: file name}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, systems = result["summary"], result["systems"]
    plots = {}
    panels = (("pesq", "PESQ-WB"), ("estoi", "ESTOI"), ("si_sdr", "SI-SDR (dB)"), ("dnsmos_ovrl", "DNSMOS OVRL"))
    out_dir.mkdir(parents=True, exist_ok=True)

    steps = [s for s in FUSE_STEPS if f"fuse@{s}" in summary]
    if len(steps) >= 2:
        fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
        for ax, (key, label) in zip(axes, panels):
            ax.plot(steps, [summary[f"fuse@{s}"]["overall"][key] for s in steps], "o-", label="fuse-small")
            for peer, style in zip(PEER_SYSTEMS, (":", "--", "-.")):
                if peer in summary:
                    ax.axhline(summary[peer]["overall"][key], ls=style, color="gray", label=peer)
            ax.set_xlabel("DDIM steps"), ax.set_title(label), ax.set_xticks(steps), ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout(), fig.savefig(out_dir / "quality_vs_steps.png", dpi=110), plt.close(fig)
        plots["metrics vs steps"] = "quality_vs_steps.png"

    if MAIN_FUSE in summary and "fuse@6-g0" in summary:
        fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
        for ax, (key, label) in zip(axes, panels):
            for i, part in enumerate(("overall", "out_of_domain")):
                vals = [summary[MAIN_FUSE][part][key], summary["fuse@6-g0"][part][key]]
                ax.bar([i - 0.2, i + 0.2], vals, width=0.38, color=["C0", "C1"])
            ax.set_xticks([0, 1], ["in-domain", "out-of-domain"]), ax.set_title(label), ax.grid(axis="y", alpha=0.3)
        axes[0].legend(handles=[plt.Rectangle((0, 0), 1, 1, color="C0"), plt.Rectangle((0, 0), 1, 1, color="C1")],
                       labels=["guidance on (1.0)", "guidance off (0.0)"], fontsize=7)
        fig.tight_layout(), fig.savefig(out_dir / "quality_guidance.png", dpi=110), plt.close(fig)
        plots["guidance on vs off (6 steps)"] = "quality_guidance.png"

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for system in systems:
        ax.plot(SNRS_DB, [summary[system]["by_snr"][str(s)]["pesq"] for s in SNRS_DB], "o-", label=system)
    ax.set_xlabel("input SNR (dB)"), ax.set_ylabel("PESQ-WB"), ax.grid(alpha=0.3), ax.legend(fontsize=7)
    fig.tight_layout(), fig.savefig(out_dir / "quality_pesq_vs_snr.png", dpi=110), plt.close(fig)
    plots["PESQ-WB vs input SNR (in-domain)"] = "quality_pesq_vs_snr.png"

    if examples:
        rows = [r for r in ("noisy", REFERENCE, MAIN_FUSE, "clean") if any(r in ex for ex in examples.values())]
        fig, axes = plt.subplots(len(rows), len(examples), figsize=(5.5 * len(examples), 2.2 * len(rows)), squeeze=False)
        for col, (title, ex) in enumerate(examples.items()):
            for row, name in enumerate(rows):
                ax = axes[row][col]
                if name in ex:
                    ax.specgram(ex[name] + 1e-7, NFFT=512, Fs=SR, noverlap=384, cmap="magma", vmin=-130, vmax=-30)
                ax.set_title(f"{title}: {name}", fontsize=8), ax.set_ylabel("Hz", fontsize=7), ax.tick_params(labelsize=6)
        fig.tight_layout(), fig.savefig(out_dir / "quality_spectrograms.png", dpi=100), plt.close(fig)
        plots["spectrograms of two examples"] = "quality_spectrograms.png"
    return plots


# ================================================================================================
# main
# ================================================================================================
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path(os.environ.get("FUSE_CORPUS", "~/.cache/fuse-corpus")).expanduser())
    parser.add_argument("--model", type=Path, default=REPO / "pipelines" / "fuse-small", help="FUSE pipeline folder")
    parser.add_argument("--systems", default="all", help=f"comma list of {', '.join(ALL_SYSTEMS)} or peers, fuse, all")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs of each subset (quick runs)")
    parser.add_argument("--num-pairs", type=int, default=60, help="in-domain pairs")
    parser.add_argument("--num-ood", type=int, default=20, help="out-of-domain pairs (narrowband French prompts)")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="longer speech files are cropped to this")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (timings are for 2 cores)")
    parser.add_argument("--timing-clips", type=int, default=3, help="4 s clips timed per system")
    parser.add_argument("--timing-repeats", type=int, default=3)
    parser.add_argument("--metrics", default=",".join(M.METRICS))
    parser.add_argument("--out-dir", type=Path, default=REPO / "docs", help="results.md and plots go here")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: <out-dir>/bench_quality.json)")
    parser.add_argument("--save-audio", type=Path, default=None, help="also write clean/noisy/enhanced WAVs under this folder")
    parser.add_argument("--render-only", action="store_true",
                        help="enhance nothing: rewrite results.md from the JSON of the last run (and its plots)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render_only:
        result = json.loads((args.out or args.out_dir / "bench_quality.json").read_text())
        plots = {title: name for title, name in PLOT_FILES.items() if (args.out_dir / name).is_file()}
        write_markdown(args.out_dir / "results.md", result, plots)
        print(f"Wrote {args.out_dir / 'results.md'} from the JSON of the run of {result['config']['date']}.")
        return 0
    t_start = time.perf_counter()
    try:
        systems = parse_systems(args.systems)
        rows = read_manifest(args.corpus)
        pairs = plan_pairs(rows, args.seed, args.num_pairs, args.num_ood, args.max_seconds)
        pipe = load_pipeline(args.model) if any(s.startswith("fuse") for s in systems) else None
    except ValueError as err:
        print(f"bench_quality: error: {err}", file=sys.stderr)
        return 1
    if args.limit is not None:
        pairs = [p for sub in ("in-domain", "out-of-domain") for p in [q for q in pairs if q["subset"] == sub][: args.limit]]
    import torch

    torch.set_num_threads(args.threads)
    metrics = M.available_metrics(args.metrics)
    enhancers = {s: make_enhancer(s, pipe) for s in systems}
    from tqdm.auto import tqdm

    # Two fixed spectrogram examples: a low-SNR babble pair and a recorded-noise pair.
    example_ids = []
    for noise_type, snr in (("babble", 0.0), ("recorded", 5.0)):
        match = [p["id"] for p in pairs if p["subset"] == "in-domain" and p["noise_type"] == noise_type and p["snr_db"] == snr]
        if match:
            example_ids.append(match[0])
    if len(example_ids) < 2:  # a --limit run may lack those cells: take the first in-domain pairs
        example_ids += [p["id"] for p in pairs if p["subset"] == "in-domain" and p["id"] not in example_ids][: 2 - len(example_ids)]

    scores = {s: [] for s in systems}
    clean_scores, enhance_wall, examples, audio_seconds = [], {s: 0.0 for s in systems}, {}, 0.0
    t_scores = time.perf_counter()
    for spec in tqdm(pairs, desc="pairs", unit="pair"):
        clean, noisy = render_pair(spec, args.corpus)
        spec["seconds"] = clean.size / SR
        audio_seconds += spec["seconds"]
        seed = spec["seed"] % (2**31)
        if "dnsmos" in metrics:  # DNSMOS of the clean reference: the ceiling of the non-intrusive scores
            mos = M.dnsmos(clean, SR)
            clean_scores.append({"dnsmos_sig": mos["SIG"], "dnsmos_bak": mos["BAK"], "dnsmos_ovrl": mos["OVRL"]})
        if spec["id"] in example_ids:
            examples[f"{spec['id']} ({spec['noise_type']}, {spec['snr_db']:g} dB)"] = {"noisy": noisy, "clean": clean}
        for system in systems:
            t0 = time.perf_counter()
            enhanced = enhancers[system](noisy, SR, seed)
            enhance_wall[system] += time.perf_counter() - t0
            if enhanced.shape != noisy.shape:
                raise RuntimeError(f"{system}: output shape {enhanced.shape} != input shape {noisy.shape}")
            scores[system].append(M.compute_metrics(clean, enhanced, SR, metrics))
            if spec["id"] in example_ids and system in (REFERENCE, MAIN_FUSE):
                examples[next(k for k in examples if k.startswith(spec["id"]))][system] = enhanced
            if args.save_audio is not None:
                save_wav(args.save_audio / system / f"{spec['id']}.wav", enhanced)
        if args.save_audio is not None:
            save_wav(args.save_audio / "clean" / f"{spec['id']}.wav", clean)
            save_wav(args.save_audio / "noisy" / f"{spec['id']}.wav", noisy)
    t_scores = time.perf_counter() - t_scores

    # Timing on fixed 4 s clips cut from the first pairs (tiled when shorter), after scoring so that
    # every system is warm and nothing else of this script runs in parallel.
    t_timing = time.perf_counter()
    clip_rng = np.random.default_rng(args.seed)
    timing_clips = [D.tile_to(render_pair(p, args.corpus)[1], 4 * SR, clip_rng)
                    for p in pairs[: args.timing_clips]]
    timing = {}
    for system in tqdm(systems, desc="timing", unit="system"):
        timing[system] = time_system(system, enhancers[system], timing_clips, args.timing_repeats)
        timing[system]["rtf_whole_set"] = enhance_wall[system] / audio_seconds
    t_timing = time.perf_counter() - t_timing

    summary = summarise(scores, pairs)
    result = {
        "config": {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
            "seed": args.seed, "threads": args.threads, "limit": args.limit, "model": str(args.model) if pipe else None,
            "metrics": list(metrics), "timing_clips": len(timing_clips), "timing_repeats": args.timing_repeats,
            "max_seconds": args.max_seconds, "corpus": str(args.corpus),
        },
        "systems": systems,
        "pairs": pairs,
        "scores": scores,
        "summary": summary,
        "timing": timing,
    }
    if clean_scores:
        result["clean_dnsmos"] = {
            part: {k: nanmean([c[k] for c, p in zip(clean_scores, pairs) if p["subset"] == sub]) for k in clean_scores[0]}
            for part, sub in (("overall", "in-domain"), ("out_of_domain", "out-of-domain"))
        }
    result["runtime_s"] = {"enhance_and_score": t_scores, "timing": t_timing, "audio_seconds": audio_seconds,
                           "total": time.perf_counter() - t_start}

    plots = make_plots(args.out_dir, result, examples)
    write_markdown(args.out_dir / "results.md", result, plots)
    out = args.out or args.out_dir / "bench_quality.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        json.dump(json.loads(json.dumps(result), parse_constant=lambda c: None), f, indent=1)  # NaN -> null

    print(table(summary, "overall", systems, timing, result.get("clean_dnsmos", {}).get("overall")))
    print("\nout-of-domain:")
    print(table(summary, "out_of_domain", systems, None, result.get("clean_dnsmos", {}).get("out_of_domain")))
    print(f"\n{len(pairs)} pairs, {audio_seconds:.0f} s of audio; run {result['runtime_s']['total']:.0f} s "
          f"(enhance+score {t_scores:.0f} s, timing {t_timing:.0f} s). Wrote {out}, {args.out_dir / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
