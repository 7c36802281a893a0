"""Scoring a folder of enhanced files against a folder of clean references (the library of ``fuse-hf evaluate``).

Files (any of `fuse_hf.audio.AUDIO_EXTENSIONS`, so also the ``.aiff``/``.oga`` that ``fuse-hf enhance`` writes)
are paired by their path relative to each folder with the extension ignored
(``clean/a/b.wav`` <-> ``enhanced/a/b.flac``); a file left over is then paired by its bare file
name when that name is unique on both sides. Every pair gets PESQ-WB, ESTOI, SI-SDR and DNSMOS
SIG/BAK/OVRL (see `fuse_hf.metrics`); with a noisy folder the noisy input is scored too and the
improvement (enhanced minus noisy) is reported. The command line is `fuse_hf.commands.evaluate`, the box plot
`fuse_hf.plotting.plot_boxes`.

```bash
fuse-hf evaluate --clean data/clean --enhanced out/ --noisy data/noisy --out r.json --csv r.csv --plot box.png
```

```py
>>> from fuse_hf.evaluate import evaluate_folders
>>> report = evaluate_folders("data/clean", "out/", noisy_dir="data/noisy")  # doctest: +SKIP
>>> report["mean"]["pesq"], report["mean"]["delta_pesq"]  # doctest: +SKIP
```
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from . import metrics as M
from .audio import audio_info, list_audio_files, load_mono

__all__ = ["METRIC_LABELS", "find_pairs", "evaluate_folders", "format_table", "json_safe", "write_csv", "write_json"]

# Column headers of the printed table and titles of the box plot's panels.
METRIC_LABELS = {
    "pesq": "PESQ-WB",
    "estoi": "ESTOI",
    "si_sdr": "SI-SDR dB",
    "dnsmos_sig": "SIG",
    "dnsmos_bak": "BAK",
    "dnsmos_ovrl": "OVRL",
}
# Print per-file rows only up to this many files; the CSV and JSON always hold all of them.
_MAX_TABLE_ROWS = 40


# ----------------------------------------------------------------------------------------------
# pairing
# ----------------------------------------------------------------------------------------------
def _list_audio(folder: Path) -> dict[str, Path]:
    """Map ``relative/path/without/extension`` -> file for every audio file under ``folder``."""
    files: dict[str, Path] = {}
    for path in list_audio_files(folder):
        key = path.relative_to(folder).with_suffix("").as_posix()
        files.setdefault(key, path)  # a.wav and a.flac side by side: the first (sorted) wins
    return files


def _match(keys: Sequence[str], other: dict[str, Path]) -> dict[str, str]:
    """Match each key to a key of ``other``: same relative path, else a unique same file name."""
    matched = {k: k for k in keys if k in other}
    left = [k for k in keys if k not in matched]
    if left:
        by_name: dict[str, list[str]] = {}
        for k in other:
            by_name.setdefault(k.rsplit("/", 1)[-1], []).append(k)
        taken = set(matched.values())
        names_left = [k.rsplit("/", 1)[-1] for k in left]
        name_counts = Counter(names_left)
        for k, name in zip(left, names_left):
            candidates = [c for c in by_name.get(name, []) if c not in taken]
            # A name shared by several files on either side is ambiguous: never guess.
            if len(candidates) == 1 and name_counts[name] == 1:
                matched[k] = candidates[0]
                taken.add(candidates[0])
    return matched


def find_pairs(clean_dir, enhanced_dir, noisy_dir=None) -> tuple[list[dict[str, object]], dict[str, list[str]]]:
    """Pair audio files of the clean, enhanced (and noisy) folders, searched recursively.

    Args:
        clean_dir: folder of clean references.
        enhanced_dir: folder of enhanced files.
        noisy_dir: optional folder of the noisy inputs.

    Returns:
        ``(pairs, unpaired)``: ``pairs`` is a list of ``{"name", "clean", "enhanced", "noisy"}``
        (paths; ``noisy`` is None without a noisy folder), sorted by name; ``unpaired`` maps
        ``"clean"``/``"enhanced"``/``"noisy"`` to the relative paths left without a partner.

    Raises:
        ValueError: a folder is missing or holds no audio files, or no file pairs up.
    """
    folders = {"clean": clean_dir, "enhanced": enhanced_dir}
    if noisy_dir is not None:
        folders["noisy"] = noisy_dir
    listings: dict[str, dict[str, Path]] = {}
    for role, folder in folders.items():
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"--{role} {folder}: no such folder.")
        listings[role] = _list_audio(folder)
        if not listings[role]:
            raise ValueError(
                f"--{role} {folder}: no audio files found (looked for .wav, .flac, .ogg, .oga, .opus, .mp3, .aiff "
                "and the other suffixes of fuse_hf.audio.AUDIO_EXTENSIONS, recursively)."
            )
    clean = listings["clean"]
    to_enhanced = _match(list(clean), listings["enhanced"])
    to_noisy = _match(list(to_enhanced), listings["noisy"]) if "noisy" in listings else None

    pairs = []
    for key in sorted(to_enhanced):
        if to_noisy is not None and key not in to_noisy:
            continue  # with --noisy, a pair needs all three files
        pairs.append(
            {
                "name": key,
                "clean": clean[key],
                "enhanced": listings["enhanced"][to_enhanced[key]],
                "noisy": listings["noisy"][to_noisy[key]] if to_noisy is not None else None,
            }
        )
    used = {
        "clean": {p["name"] for p in pairs},
        "enhanced": {to_enhanced[p["name"]] for p in pairs},
        "noisy": {to_noisy[p["name"]] for p in pairs} if to_noisy is not None else set(),
    }
    unpaired = {role: sorted(set(listing) - used[role]) for role, listing in listings.items()}
    if not pairs:
        raise ValueError(
            f"no file pairs: none of the {len(clean)} clean file(s) in {clean_dir} has a partner with the same "
            f"relative path or file name (extension ignored) in {enhanced_dir}"
            + (f" and {noisy_dir}" if noisy_dir is not None else "")
            + f". Example clean file: {next(iter(clean))}; "
            f"example enhanced file: {next(iter(listings['enhanced']))}."
        )
    return pairs, unpaired


# ----------------------------------------------------------------------------------------------
# scoring
# ----------------------------------------------------------------------------------------------
def evaluate_folders(
    clean_dir,
    enhanced_dir,
    noisy_dir=None,
    metrics: Sequence[str] = M.METRICS,
    progress: bool = True,
) -> dict[str, object]:
    """Score every enhanced file against its clean reference (and the noisy input, if given).

    Enhanced and noisy files at another sample rate than their clean file are resampled to the
    clean rate (soxr); multi-channel files are averaged to mono.

    Args:
        clean_dir: folder of clean references (searched recursively).
        enhanced_dir: folder of enhanced files with the same relative paths or file names.
        noisy_dir: optional folder of noisy inputs; adds ``noisy_<metric>`` and ``delta_<metric>``.
        metrics: metric names from `fuse_hf.metrics.METRICS`; missing packages are skipped.
        progress: show a tqdm bar over files.

    Returns:
        ``{"clean_dir", "enhanced_dir", "noisy_dir", "metrics": [keys], "num_files",
        "files": [{"file", <key>, ...}], "mean": {<key>: value}, "unpaired": {role: [names]}}``.
        Keys are ``pesq``, ``estoi``, ``si_sdr`` (dB), ``dnsmos_sig``, ``dnsmos_bak``,
        ``dnsmos_ovrl``; with a noisy folder also ``noisy_<key>`` and ``delta_<key>``.
        Means skip ``nan`` values (unscorable files; `fuse_hf.metrics.nanmean`).
    """
    from tqdm.auto import tqdm

    pairs, unpaired = find_pairs(clean_dir, enhanced_dir, noisy_dir)
    for role, names in unpaired.items():
        if names:
            shown = ", ".join(names[:10]) + (f", ... ({len(names) - 10} more)" if len(names) > 10 else "")
            warnings.warn(
                f"{len(names)} {role} file(s) without a partner, not scored: {shown}", UserWarning, stacklevel=2
            )
    usable = M.available_metrics(metrics)
    keys = [k for m in usable for k in M.METRIC_KEYS[m]]

    rows = []
    for pair in tqdm(pairs, desc="evaluate", unit="file", disable=not progress):
        sr = audio_info(pair["clean"]).sampling_rate
        clean = load_mono(pair["clean"])
        enhanced = load_mono(pair["enhanced"], sr)
        row: dict[str, object] = {"file": pair["name"]}
        row.update(M.compute_metrics(clean, enhanced, sr, usable))
        if pair["noisy"] is not None:
            noisy = load_mono(pair["noisy"], sr)
            noisy_scores = M.compute_metrics(clean, noisy, sr, usable)
            for k in keys:
                row[f"noisy_{k}"] = noisy_scores[k]
            for k in keys:
                row[f"delta_{k}"] = row[k] - noisy_scores[k]
        rows.append(row)

    columns = list(keys)
    if noisy_dir is not None:
        columns += [f"noisy_{k}" for k in keys] + [f"delta_{k}" for k in keys]
    return {
        "clean_dir": str(clean_dir),
        "enhanced_dir": str(enhanced_dir),
        "noisy_dir": None if noisy_dir is None else str(noisy_dir),
        "metrics": columns,
        "num_files": len(rows),
        "files": rows,
        "mean": {c: M.nanmean([r[c] for r in rows]) for c in columns},
        "unpaired": unpaired,
    }


# ----------------------------------------------------------------------------------------------
# reporting
# ----------------------------------------------------------------------------------------------
def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def format_table(report: dict[str, object], max_rows: int = _MAX_TABLE_ROWS) -> str:
    """Plain-text table (aligned columns): per-file rows (up to ``max_rows``) and the mean row.

    With a noisy folder the table shows enhanced scores, then the improvements (``d`` columns).
    """
    base = [k for k in report["metrics"] if not k.startswith(("noisy_", "delta_"))]
    columns = base + [f"delta_{k}" for k in base if f"delta_{k}" in report["metrics"]]
    headers = ["file"] + [
        ("d " if c.startswith("delta_") else "") + METRIC_LABELS[c.replace("delta_", "")] for c in columns
    ]
    files = report["files"]
    body = [[r["file"]] + [_fmt(r[c]) for c in columns] for r in files[:max_rows]] if len(files) <= max_rows else []
    mean_row = [f"mean ({report['num_files']} files)"] + [_fmt(report["mean"][c]) for c in columns]
    widths = [max(len(str(row[i])) for row in [headers, mean_row] + body) for i in range(len(headers))]

    def line(cells):
        return "  ".join([str(cells[0]).ljust(widths[0])] + [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:])])

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in body]
    if body:
        out.append("  ".join("-" * w for w in widths))
    out.append(line(mean_row))
    if not body:
        out.append(f"(per-file scores of the {len(files)} files are in the CSV/JSON output)")
    return "\n".join(out)


def write_csv(report: dict[str, object], path) -> None:
    """One row per file: ``file`` then every metric column of the report (nan as empty)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file"] + report["metrics"])
        for row in report["files"]:
            writer.writerow([row["file"]] + ["" if math.isnan(row[c]) else f"{row[c]:.6g}" for c in report["metrics"]])


def json_safe(value):
    """`value` with every NaN or +-Inf float inside it (in dicts, lists, tuples) replaced by None: strict JSON has
    no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(report: dict[str, object], path) -> None:
    """The whole report as strict JSON (nan written as null, `json_safe`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(json_safe(report), f, indent=2)
        f.write("\n")
