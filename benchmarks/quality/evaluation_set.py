"""The quality benchmark's evaluation set: the stranger split of corpus v2 and seeded pairs from the v1 corpus.

* **stranger** (the headline): `plan_stranger` picks a fixed, seeded subset of corpus v2's stranger mixtures
  (``dev_stranger/mixtures.csv``: languages, voices and noise recordings that no training split contains, mixed at
  -5..20 dB plus clean inputs), stratified by SNR bucket and balanced over languages and noise kinds;
  `load_stranger_pair` reads a pair's two WAVs.
* **in-domain / out-of-domain** (v1 corpus): `plan_pairs` turns the corpus manifest into pair specifications (which
  speech file, noise, SNR, level and seed), fully determined by one seed; `render_pair` turns a specification into
  audio with the training mixer's own functions (`fuse_hf.data`).

Planning and loading are apart so that the JSON of a run records exactly what was scored, and other scripts
(`bench_noise_scale`) can plan their own sets the same way. `pair_audio` loads any pair from its corpus.
"""

from __future__ import annotations

import csv
import zlib
from collections import Counter
from collections.abc import Mapping
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
# Subsets in the order of a run (and of `limit_pairs`): the stranger split first, the v1 pairs second.
SUBSETS = ("stranger", "in-domain", "out-of-domain")
# The stranger mixtures' SNR buckets (mixtures.csv ``snr_db``, a number or "clean": the noisy file is the clean one).
STRANGER_BUCKETS = ("-5", "0", "5", "10", "15", "20", "clean")
NOISY_BUCKETS = STRANGER_BUCKETS[:-1]
STRANGER_MIXTURES = "dev_stranger/mixtures.csv"
_STRANGER_COLUMNS = ("name", "snr_db", "clean", "noisy", "language", "bandwidth", "noise_kind")


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
    """The first ``limit`` pairs of each subset (stranger, in-domain, out-of-domain); all of them when None. The
    stranger pairs are planned round-robin over the SNR buckets, so that their first 7 cover every bucket."""
    if limit is None:
        return pairs
    return [p for sub in SUBSETS for p in [q for q in pairs if q["subset"] == sub][:limit]]


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
    """Two fixed spectrogram examples. With stranger pairs: a 0 dB babble pair (else any 0 dB pair) and a wideband
    clean input (is the high band kept?); else a low-SNR babble pair and a recorded-noise pair of the in-domain set.
    Missing cells (a --limit run) are filled with the subset's first pairs."""
    subset = "stranger" if any(p["subset"] == "stranger" for p in pairs) else "in-domain"
    candidates = [p for p in pairs if p["subset"] == subset]
    if subset == "stranger":
        slots = (
            (lambda p: p["snr_bucket"] == "0" and p["noise_kind"] == "babble", lambda p: p["snr_bucket"] == "0"),
            (lambda p: p["snr_bucket"] == "clean" and p["bandwidth"] == "wideband",),
        )
    else:
        slots = (
            (lambda p: p["noise_type"] == "babble" and p["snr_db"] == 0.0,),
            (lambda p: p["noise_type"] == "recorded" and p["snr_db"] == 5.0,),
        )
    example_ids = []
    for choices in slots:  # each slot: its first choice that some pair meets
        match = next((p["id"] for keep in choices for p in candidates if keep(p) and p["id"] not in example_ids), None)
        if match is not None:
            example_ids.append(match)
    example_ids += [p["id"] for p in candidates if p["id"] not in example_ids][: max(0, 2 - len(example_ids))]
    return example_ids[:2]


# ================================================================================================
# the stranger split (corpus v2)
# ================================================================================================
def read_stranger_mixtures(corpus_v2: Path) -> list[dict[str, str]]:
    """Rows of corpus v2's ``dev_stranger/mixtures.csv`` (name, snr_db, clean, noisy, seconds, language, speaker,
    package, bandwidth, cutoff_hz, noise_kind, ...) in file order."""
    path = corpus_v2 / STRANGER_MIXTURES
    if not path.is_file():
        raise ValueError(
            f"{path}: not found. Build corpus v2 with `python scripts/corpus/build_corpus.py {corpus_v2}` or pass "
            "--corpus-v2 DIR."
        )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in _STRANGER_COLUMNS if not rows or c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: no mixtures, or columns missing: {', '.join(missing)}. Rebuild corpus v2.")
    return rows


def snr_bucket(snr_db: str) -> str:
    """mixtures.csv's ``snr_db`` as a bucket name: ``"-5.0"`` -> ``"-5"``, ``"clean"`` stays."""
    return "clean" if snr_db.strip() == "clean" else f"{float(snr_db):g}"


def _rank(seed: int, name: str) -> int:
    """A mixture's seeded rank (and its FUSE seed): a function of the seed and its name alone, so that a pair's
    place and sampling noise do not depend on the order of mixtures.csv or on how many pairs are drawn."""
    return zlib.crc32(f"{seed}:{name}".encode())


def plan_stranger(rows: list[dict[str, str]], seed: int, num: int, max_seconds: float) -> list[dict]:
    """A fixed, seeded subset of ``num`` stranger mixtures as pair specifications, stratified by SNR bucket.

    The buckets -5, 0, 5, 10, 15, 20 dB and clean get ``num // 7`` pairs each (the first ``num % 7`` buckets one
    more). Within a bucket, pairs are drawn one at a time: the least used language in the bucket first, then the
    least used noise kind in the bucket, then the noise kind and the language least used over the buckets drawn so
    far, then the seeded rank. The result is ordered round-robin over the buckets (-5, 0, ..., clean, -5, ...), so
    that any prefix (`limit_pairs`) stays stratified. Pairs longer than ``max_seconds`` are scored on their first
    ``max_seconds``.
    """
    if num > len(rows):
        raise ValueError(f"corpus v2: only {len(rows)} stranger mixtures, {num} requested. Lower --num-stranger.")
    buckets: dict[str, list[dict[str, str]]] = {b: [] for b in STRANGER_BUCKETS}
    for row in sorted(rows, key=lambda r: (_rank(seed, r["name"]), r["name"])):
        bucket = snr_bucket(row["snr_db"])
        if bucket not in buckets:
            raise ValueError(f"mixtures.csv: {row['name']} has SNR {row['snr_db']}, not one of {STRANGER_BUCKETS}.")
        buckets[bucket].append(row)
    lang_total, kind_total = Counter(), Counter()
    drawn = {}
    for i, bucket in enumerate(STRANGER_BUCKETS):
        quota = num // len(STRANGER_BUCKETS) + (i < num % len(STRANGER_BUCKETS))
        candidates, chosen, lang, kind = list(buckets[bucket]), [], Counter(), Counter()
        while candidates and len(chosen) < quota:
            row = min(  # min keeps the first of equals: the seeded rank breaks ties
                candidates,
                key=lambda r: (
                    lang[r["language"]],
                    kind[r["noise_kind"]],
                    kind_total[r["noise_kind"]],
                    lang_total[r["language"]],
                ),
            )
            candidates.remove(row)
            chosen.append(row)
            for counter in (lang, lang_total):
                counter[row["language"]] += 1
            for counter in (kind, kind_total):
                counter[row["noise_kind"]] += 1
        drawn[bucket] = chosen
    ordered = [drawn[b][k] for k in range(max(map(len, drawn.values()))) for b in STRANGER_BUCKETS if k < len(drawn[b])]
    return [
        {
            "id": row["name"],
            "subset": "stranger",
            "clean": row["clean"],
            "noisy": row["noisy"],
            "snr_bucket": snr_bucket(row["snr_db"]),
            "snr_db": None if row["snr_db"] == "clean" else float(row["snr_db"]),
            "language": row["language"],
            "speaker": row.get("speaker", ""),
            "bandwidth": row["bandwidth"],
            "cutoff_hz": float(row["cutoff_hz"]) if row.get("cutoff_hz") else None,
            "noise_kind": row["noise_kind"] or "none",
            "noise": row.get("noise") or None,
            "max_seconds": max_seconds,
            "seed": _rank(seed, row["name"]),
        }
        for row in ordered
    ]


def load_stranger_pair(spec: dict, corpus_v2: Path) -> tuple[np.ndarray, np.ndarray]:
    """A stranger pair's float32 ``(clean, noisy)`` at 16 kHz, cut to its first ``max_seconds``."""
    clean = load_mono(corpus_v2 / spec["clean"], SAMPLE_RATE)
    noisy = load_mono(corpus_v2 / spec["noisy"], SAMPLE_RATE)
    if clean.shape != noisy.shape:
        raise ValueError(f"{spec['id']}: clean has {clean.size} samples, noisy {noisy.size}. Rebuild corpus v2.")
    n = min(clean.size, int(spec["max_seconds"] * SAMPLE_RATE))
    return clean[:n], noisy[:n]


def pair_audio(spec: dict, corpora: Mapping[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    """Any pair's float32 ``(clean, noisy)``: stranger pairs from ``corpora["v2"]``, the others from
    ``corpora["v1"]``."""
    if spec["subset"] == "stranger":
        return load_stranger_pair(spec, corpora["v2"])
    return render_pair(spec, corpora["v1"])


def pair_title(spec: dict) -> str:
    """A pair's short title for plots: ``"pair0003 (babble, -5 dB)"``, ``"pair0010 (clean input)"``."""
    if spec["subset"] == "stranger":
        what = "clean input" if spec["snr_bucket"] == "clean" else f"{spec['noise_kind']}, {spec['snr_bucket']} dB"
        return f"{spec['id']} ({spec['language']}, {what})"
    return f"{spec['id']} ({spec['noise_type']}, {spec['snr_db']:g} dB)"
