"""The fixed noisy/clean pairs of the stranger dev split: `dev_stranger/mixtures/{clean,noisy}/*.wav` + mixtures.csv.

:data:`PAIRS_PER_CONDITION` pairs for each SNR of :data:`CONDITIONS` (-5 to 20 dB in 5 dB steps) and for clean
input (the noisy file is the clean speech, no noise). Speech clips are taken round-robin over the stranger
(language, package) groups, noises round-robin over the stranger noise kinds (then recordings), the conditions
shuffled once with :data:`SEED`: the same corpus always gives the same pairs.

Mixing calls `fuse_hf.data`: `set_level` (speech to a level drawn from :data:`SPEECH_LEVELS_DBFS`), `tile_to`
(noise looped and cropped to the speech), `mix_at_snr`, and `apply_lowpass` for narrowband speech (its noise is
band-limited at the speech's measured cutoff, as a recording through the same narrow channel would be); then
`fuse_hf.audio.avoid_clipping` scales clean and noisy by one gain if either would clip.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fuse_hf import audio, data

CONDITIONS: tuple[str, ...] = ("-5", "0", "5", "10", "15", "20", "clean")
PAIRS_PER_CONDITION = 40
SEED = 20261128
SPEECH_LEVELS_DBFS = (-35.0, -20.0)
MIN_SPEECH_S = 1.0
SAMPLE_RATE = 16000
COLUMNS = (
    "name",
    "snr_db",
    "clean",
    "noisy",
    "seconds",
    "language",
    "speaker",
    "package",
    "bandwidth",
    "cutoff_hz",
    "speech_level_dbfs",
    "noise",
    "noise_package",
    "noise_kind",
    "noise_lowpass_hz",
    "speech_origin",
    "noise_origin",
)


def _rank(text: str) -> str:
    return hashlib.sha1(f"mixtures:{text}".encode()).hexdigest()


def round_robin(groups: dict[str, list[dict]], count: int) -> list[dict]:
    """Takes one row of each group in turn (groups in sorted order, rows in the given order) until `count`.

    Groups that run out drop out; fewer than `count` rows come back when all run out.
    """
    queues = {name: list(rows) for name, rows in sorted(groups.items())}
    out: list[dict] = []
    while len(out) < count and any(queues.values()):
        for name in list(queues):
            if queues[name] and len(out) < count:
                out.append(queues[name].pop(0))
    return out


def noise_rotation(noise: Sequence[dict], count: int) -> list[dict]:
    """`count` noise segments in the order the pairs use them: kinds in turn, recordings of a kind in turn.

    Each noise kind (typing, babble, music, traffic, ...) comes up equally often whatever its number of recordings;
    within a kind, recordings come in sha1 order, then each recording's next segment, cycling when all are used.
    """
    kinds: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in sorted(noise, key=lambda r: r["path"]):
        kinds[row["noise_kind"]][row["unit"]].append(row)
    cycles = {}
    for kind, recordings in kinds.items():
        order = sorted(recordings, key=_rank)
        longest = max(len(v) for v in recordings.values())
        cycles[kind] = [recordings[u][i % len(recordings[u])] for i in range(longest) for u in order]
    names = sorted(cycles)
    return (
        [cycles[names[n % len(names)]][(n // len(names)) % len(cycles[names[n % len(names)]])] for n in range(count)]
        if names
        else []
    )


def plan(
    speech: Sequence[dict], noise: Sequence[dict], per_condition: int = PAIRS_PER_CONDITION, seed: int = SEED
) -> list[dict]:
    """Which speech, noise, condition and speech level each pair gets (pure; deterministic).

    Args:
        speech: manifest rows of the stranger speech (needs path, seconds, language, package, origin).
        noise: manifest rows of the stranger noise (needs path, unit, origin).
    Returns:
        One dict per pair: `name`, `condition`, `speech` row, `noise` row (None for clean), `level_dbfs`, `seed`.
    """
    usable = [r for r in speech if float(r["seconds"]) >= MIN_SPEECH_S]
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in sorted(usable, key=lambda r: _rank(r["origin"])):
        groups[f"{row['language']}/{row['package']}"].append(row)
    total = per_condition * len(CONDITIONS)
    chosen = round_robin(groups, total)
    if len(chosen) < total:
        raise ValueError(f"the stranger split holds {len(chosen)} usable speech clips; {total} are needed.")
    rng = np.random.default_rng(seed)
    conditions = [c for c in CONDITIONS for _ in range(per_condition)]
    conditions = [conditions[i] for i in rng.permutation(len(conditions))]
    noise_order = noise_rotation(noise, total)
    if not noise_order:
        raise ValueError("the stranger split holds no noise.")
    pairs, next_noise = [], 0
    for index, (row, condition) in enumerate(zip(chosen, conditions)):
        noise_row = None
        if condition != "clean":
            noise_row = noise_order[next_noise % len(noise_order)]
            next_noise += 1
        pairs.append(
            {
                "name": f"pair{index:04d}",
                "condition": condition,
                "speech": row,
                "noise": noise_row,
                "level_dbfs": float(rng.uniform(*SPEECH_LEVELS_DBFS)),
                "seed": int(rng.integers(2**31)),
            }
        )
    return pairs


def render(
    clean: np.ndarray,
    noise: np.ndarray | None,
    condition: str,
    level_dbfs: float,
    seed: int,
    lowpass_hz: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One pair -> `(clean, noisy)`, both `(samples,)` float32 at 16 kHz, scaled by one gain if either would clip.

    `noise` is looped/cropped to the speech (`tile_to`), band-limited at `lowpass_hz` when given, and scaled to the
    condition's SNR over the whole clip (`mix_at_snr`). For "clean" the noisy signal is the clean one.
    """
    rng = np.random.default_rng(seed)
    clean = (clean * np.float32(data.set_level(clean, level_dbfs))).astype(np.float32)
    if condition == "clean" or noise is None:
        noisy = clean.copy()
    else:
        noise = data.tile_to(noise, len(clean), rng)
        if lowpass_hz is not None:
            noise = data.apply_lowpass(noise, lowpass_hz, SAMPLE_RATE)
        noisy, _ = data.mix_at_snr(clean, noise, float(condition))
    clean, noisy = audio.avoid_clipping(clean, noisy)
    return np.asarray(clean, dtype=np.float32), np.asarray(noisy, dtype=np.float32)


def write(pairs: list[dict], root: Path, folder: Path, wideband_min_hz: float) -> list[dict]:
    """Renders and writes the pairs under `folder` (`clean/`, `noisy/`) -> the mixtures.csv rows.

    Paths in the rows are relative to `root` (the corpus folder); speech rows' `cutoff_hz` below `wideband_min_hz`
    band-limit the noise.
    """
    rows = []
    for pair in pairs:
        speech, noise_row = pair["speech"], pair["noise"]
        clean, _ = audio.load_audio(root / speech["path"])
        noise = audio.load_audio(root / noise_row["path"])[0][0] if noise_row else None
        cutoff = float(speech["cutoff_hz"])
        lowpass = cutoff if cutoff < wideband_min_hz and noise is not None else None
        clean_out, noisy_out = render(clean[0], noise, pair["condition"], pair["level_dbfs"], pair["seed"], lowpass)
        clean_path, noisy_path = folder / "clean" / f"{pair['name']}.wav", folder / "noisy" / f"{pair['name']}.wav"
        audio.save_audio(clean_path, clean_out, SAMPLE_RATE, subtype="PCM_16")
        audio.save_audio(noisy_path, noisy_out, SAMPLE_RATE, subtype="PCM_16")
        rows.append(
            {
                "name": pair["name"],
                "snr_db": pair["condition"],
                "clean": clean_path.relative_to(root).as_posix(),
                "noisy": noisy_path.relative_to(root).as_posix(),
                "seconds": f"{len(clean_out) / SAMPLE_RATE:.3f}",
                "language": speech["language"],
                "speaker": speech["speaker"],
                "package": speech["package"],
                "bandwidth": speech["bandwidth"],
                "cutoff_hz": speech["cutoff_hz"],
                "speech_level_dbfs": f"{pair['level_dbfs']:.1f}",
                "noise": noise_row["path"] if noise_row else "",
                "noise_package": noise_row["package"] if noise_row else "",
                "noise_kind": noise_row["noise_kind"] if noise_row else "",
                "noise_lowpass_hz": f"{lowpass:.0f}" if lowpass else "",
                "speech_origin": speech["origin"],
                "noise_origin": noise_row["origin"] if noise_row else "",
            }
        )
    return rows
