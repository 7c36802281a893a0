"""The quality benchmark's evaluation set: seeded (clean, noisy) pairs from the corpus *valid* splits.

`plan_pairs` turns the corpus manifest into pair specifications (which speech file, noise, SNR, level and seed),
fully determined by one seed; `render_pair` turns a specification into audio with the training mixer's own
functions (`fuse_hf.data`). Planning and rendering are apart so that the JSON of a run records exactly what was
scored, and other scripts (`bench_noise_scale`) can plan their own sets the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fuse_hf import data as D
from fuse_hf.audio import SAMPLE_RATE, load_mono

SNRS_DB = (-5.0, 0.0, 5.0, 10.0, 15.0)
NOISE_TYPES = ("recorded", "white", "pink", "babble")
# Speech sources of the in-domain pairs: wideband hedgewars voices and band-limited Dutch fillets lines.
SOURCES = ("hedgewars", "fillets-nl")
# Hedgewars "Laugh" takes are laughter, not speech: a speech benchmark should not score them.
EXCLUDE_NAME_PARTS = ("Laugh",)


def read_manifest(corpus: Path) -> list[dict[str, str]]:
    """Rows of ``corpus/manifest.csv`` (path, source_package, seconds, split, hf4k_db, ...) in file order."""
    manifest = corpus / "manifest.csv"
    if not manifest.is_file():
        raise ValueError(
            f"{manifest}: not found. Build the corpus with `bash ../shared/corpus/build_corpus.sh` or pass "
            "--corpus DIR."
        )
    return list(D.read_manifest(manifest).values())


def load_corpus_audio(corpus: Path, relative_path: str) -> np.ndarray:
    """A corpus file as float64 mono at 16 kHz (the corpus is 16 kHz mono; resampled just in case). float64, as
    the pairs were first rendered: float32 would round the level and SNR gains differently."""
    return load_mono(corpus / relative_path, SAMPLE_RATE, dtype=np.float64)


def crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n``-sample excerpt of ``x`` (all of it when shorter)."""
    start = D.random_crop_offset(x.size, n, rng)
    return x[start : start + n]


def mix(clean: np.ndarray, noise: np.ndarray, snr_db: float, level_dbfs: float) -> tuple[np.ndarray, np.ndarray]:
    """Mix at ``snr_db`` (power over the clip) with the clean RMS at ``level_dbfs``, with the training mixer's own
    functions (`fuse_hf.data`). Returns float32 ``(clean, noisy)``; both are scaled down together if the mixture
    would clip, so that the clean reference stays the exact speech component of the noisy input."""
    clean = (clean * D.set_level(clean, level_dbfs)).astype(np.float32)
    noisy, _ = D.mix_at_snr(clean, noise.astype(np.float32), snr_db)
    clean, noisy = D.avoid_clipping(clean, noisy)
    return clean.astype(np.float32), noisy.astype(np.float32)


def plan_pairs(rows: list[dict[str, str]], seed: int, num_pairs: int, num_ood: int, max_seconds: float) -> list[dict]:
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
        raise ValueError(
            "corpus: the valid speech, valid noise or speech_narrowband folder is empty. Rebuild the corpus."
        )
    wide = [r for r in speech if r["source_package"].startswith("hedgewars")]
    dutch = [r for r in speech if not r["source_package"].startswith("hedgewars")]
    n_wide = min(len(wide), num_pairs // 3)
    chosen = [wide[i] for i in rng.permutation(len(wide))[:n_wide]]
    chosen += [dutch[i] for i in rng.permutation(len(dutch))[: num_pairs - n_wide]]
    chosen = [chosen[i] for i in rng.permutation(len(chosen))]
    if len(chosen) < num_pairs:
        raise ValueError(
            f"corpus: only {len(chosen)} valid speech files, {num_pairs} pairs requested. Lower --num-pairs."
        )
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
                    "source": "hedgewars"
                    if row["source_package"].startswith("hedgewars")
                    else "asterisk-fr"
                    if subset == "out-of-domain"
                    else "fillets-nl",
                    "hf4k_db": float(row["hf4k_db"]),
                    "noise_type": noise_type,
                    "noise": noise[i % len(noise)]["path"] if noise_type == "recorded" else None,
                    "babble": [others[j] for j in rng.choice(len(others), 4, replace=False)]
                    if noise_type == "babble"
                    else None,
                    "snr_db": snr,
                    "level_dbfs": float(rng.uniform(-32.0, -20.0)),
                    "max_seconds": max_seconds,
                    "seed": int(rng.integers(0, 2**31 - 1)),
                }
            )
    return pairs


def limit_pairs(pairs: list[dict], limit: int | None) -> list[dict]:
    """The first ``limit`` pairs of each subset (in-domain, then out-of-domain); all of them when None."""
    if limit is None:
        return pairs
    return [p for sub in ("in-domain", "out-of-domain") for p in [q for q in pairs if q["subset"] == sub][:limit]]


def render_pair(spec: dict, corpus: Path) -> tuple[np.ndarray, np.ndarray]:
    """Audio of one pair specification: float32 ``(clean, noisy)`` at 16 kHz."""
    rng = np.random.default_rng(spec["seed"])
    speech = load_corpus_audio(corpus, spec["speech"])
    n_max = int(spec["max_seconds"] * SAMPLE_RATE)
    if speech.size > n_max:
        speech = crop(speech, n_max, rng)
    n = speech.size
    if spec["noise_type"] == "recorded":
        noise = D.tile_to(load_corpus_audio(corpus, spec["noise"]), n, rng)
    elif spec["noise_type"] == "white":
        noise = D.white_noise(n, rng)
    elif spec["noise_type"] == "pink":
        noise = D.pink_noise(n, rng)
    else:
        noise = D.babble([D.tile_to(load_corpus_audio(corpus, p), n, rng) for p in spec["babble"]])
    return mix(speech, noise, spec["snr_db"], spec["level_dbfs"])


def example_pair_ids(pairs: list[dict]) -> list[str]:
    """Two fixed spectrogram examples: a low-SNR babble pair and a recorded-noise pair (else the first in-domain)."""
    example_ids = []
    for noise_type, snr in (("babble", 0.0), ("recorded", 5.0)):
        match = [
            p["id"]
            for p in pairs
            if p["subset"] == "in-domain" and p["noise_type"] == noise_type and p["snr_db"] == snr
        ]
        if match:
            example_ids.append(match[0])
    if len(example_ids) < 2:  # a --limit run may lack those cells: take the first in-domain pairs
        example_ids += [p["id"] for p in pairs if p["subset"] == "in-domain" and p["id"] not in example_ids][
            : 2 - len(example_ids)
        ]
    return example_ids
