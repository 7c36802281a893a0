"""``fuse-hf evaluate``: score a folder of enhanced files against a folder of clean references.

Files are paired by their path relative to each folder with the extension ignored
(``clean/a/b.wav`` <-> ``enhanced/a/b.flac``); a file left over is then paired by its bare file
name when that name is unique on both sides. Every pair gets PESQ-WB, ESTOI, SI-SDR and DNSMOS
SIG/BAK/OVRL (see `fuse_hf.metrics`); with a noisy folder the noisy input is scored too and the
improvement (enhanced minus noisy) is reported.

```bash
fuse-hf evaluate --clean data/clean --enhanced out/ --noisy data/noisy --out results.json --csv results.csv --plot box.png
```

```py
>>> from fuse_hf.evaluate import evaluate_folders
>>> report = evaluate_folders("data/clean", "out/", noisy_dir="data/noisy")  # doctest: +SKIP
>>> report["mean"]["pesq"], report["mean"]["delta_pesq"]  # doctest: +SKIP
```
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import metrics as M

__all__ = ["AUDIO_EXTENSIONS", "find_pairs", "evaluate_folders", "format_table", "write_csv", "write_json", "plot_boxes", "add_parser", "run"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")
# Column headers for the printed table.
_LABELS = {
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
def _list_audio(folder: Path) -> Dict[str, Path]:
    """Map ``relative/path/without/extension`` -> file for every audio file under ``folder``."""
    files: Dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
            key = path.relative_to(folder).with_suffix("").as_posix()
            files.setdefault(key, path)  # a.wav and a.flac side by side: the first (sorted) wins
    return files


def _match(keys: Sequence[str], other: Dict[str, Path]) -> Dict[str, str]:
    """Match each key to a key of ``other``: same relative path, else a unique same file name."""
    matched = {k: k for k in keys if k in other}
    left = [k for k in keys if k not in matched]
    if left:
        by_name: Dict[str, List[str]] = {}
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


def find_pairs(
    clean_dir, enhanced_dir, noisy_dir=None
) -> Tuple[List[Dict[str, object]], Dict[str, List[str]]]:
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
    listings: Dict[str, Dict[str, Path]] = {}
    for role, folder in folders.items():
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"--{role} {folder}: no such folder.")
        listings[role] = _list_audio(folder)
        if not listings[role]:
            raise ValueError(
                f"--{role} {folder}: no audio files found (looked for {', '.join(AUDIO_EXTENSIONS)}, recursively)."
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
            + f". Example clean file: {next(iter(clean))}; example enhanced file: {next(iter(listings['enhanced']))}."
        )
    return pairs, unpaired


# ----------------------------------------------------------------------------------------------
# scoring
# ----------------------------------------------------------------------------------------------
def _load_mono(path: Path, target_sr: Optional[int] = None) -> Tuple[np.ndarray, int]:
    """Load a file as mono float32 (channels averaged), resampled to ``target_sr`` Hz if given."""
    from .audio import load_audio, resample

    audio, sr = load_audio(path)
    mono = audio.mean(axis=0)
    if target_sr is not None and sr != target_sr:
        mono, sr = resample(mono, sr, target_sr), target_sr
    return mono, sr


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def evaluate_folders(
    clean_dir,
    enhanced_dir,
    noisy_dir=None,
    metrics: Sequence[str] = M.METRICS,
    progress: bool = True,
) -> Dict[str, object]:
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
        Means skip ``nan`` values (unscorable files).
    """
    from tqdm.auto import tqdm

    pairs, unpaired = find_pairs(clean_dir, enhanced_dir, noisy_dir)
    for role, names in unpaired.items():
        if names:
            shown = ", ".join(names[:10]) + (f", ... ({len(names) - 10} more)" if len(names) > 10 else "")
            warnings.warn(f"{len(names)} {role} file(s) without a partner, not scored: {shown}", UserWarning, stacklevel=2)
    usable = M.available_metrics(metrics)
    keys = [k for m in usable for k in M.METRIC_KEYS[m]]

    rows = []
    for pair in tqdm(pairs, desc="evaluate", unit="file", disable=not progress):
        clean, sr = _load_mono(pair["clean"])
        enhanced, _ = _load_mono(pair["enhanced"], sr)
        row: Dict[str, object] = {"file": pair["name"]}
        row.update(M.compute_metrics(clean, enhanced, sr, usable))
        if pair["noisy"] is not None:
            noisy, _ = _load_mono(pair["noisy"], sr)
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
        "mean": {c: _mean([r[c] for r in rows]) for c in columns},
        "unpaired": unpaired,
    }


# ----------------------------------------------------------------------------------------------
# reporting
# ----------------------------------------------------------------------------------------------
def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def format_table(report: Dict[str, object], max_rows: int = _MAX_TABLE_ROWS) -> str:
    """Plain-text table (aligned columns): per-file rows (up to ``max_rows``) and the mean row.

    With a noisy folder the table shows enhanced scores, then the improvements (``d`` columns).
    """
    base = [k for k in report["metrics"] if not k.startswith(("noisy_", "delta_"))]
    columns = base + [f"delta_{k}" for k in base if f"delta_{k}" in report["metrics"]]
    headers = ["file"] + [("d " if c.startswith("delta_") else "") + _LABELS[c.replace("delta_", "")] for c in columns]
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


def write_csv(report: Dict[str, object], path) -> None:
    """One row per file: ``file`` then every metric column of the report (nan as empty)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file"] + report["metrics"])
        for row in report["files"]:
            writer.writerow([row["file"]] + ["" if math.isnan(row[c]) else f"{row[c]:.6g}" for c in report["metrics"]])


def _json_safe(value):
    """Replace nan by None so that the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(report: Dict[str, object], path) -> None:
    """The whole report as strict JSON (nan written as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(_json_safe(report), f, indent=2)
        f.write("\n")


def plot_boxes(report: Dict[str, object], path) -> None:
    """Box plot PNG: one panel per metric, enhanced (and noisy) distributions side by side."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    base = [k for k in report["metrics"] if not k.startswith(("noisy_", "delta_"))]
    has_noisy = any(k.startswith("noisy_") for k in report["metrics"])
    fig, axes = plt.subplots(1, len(base), figsize=(2.3 * len(base), 3.6), squeeze=False)
    for ax, key in zip(axes[0], base):
        series, labels = [], []
        if has_noisy:
            series.append([r[f"noisy_{key}"] for r in report["files"]])
            labels.append("noisy")
        series.append([r[key] for r in report["files"]])
        labels.append("enhanced")
        series = [[v for v in s if not math.isnan(v)] for s in series]
        ax.boxplot(series, showmeans=True)
        ax.set_xticks(range(1, len(labels) + 1), labels)
        ax.set_title(_LABELS[key])
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{report['num_files']} files: {report['enhanced_dir']}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand on ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score enhanced files against clean references (PESQ-WB, ESTOI, SI-SDR, DNSMOS)",
        description=(
            "Score a folder of enhanced files against a folder of clean references. Files are paired by "
            "their path relative to each folder, extension ignored (clean/a/b.wav <-> enhanced/a/b.flac), "
            "then by a unique file name; unpaired files are listed in a warning. Metrics: PESQ-WB "
            "(ITU-T P.862.2, 1.04-4.64), ESTOI (0-1), SI-SDR (dB), and the non-intrusive DNSMOS P.835 "
            "SIG/BAK/OVRL (1-5) of the enhanced audio. With --noisy the noisy inputs are scored as well "
            "and the improvement (enhanced minus noisy) is reported. Enhanced/noisy files at another "
            "sample rate are resampled to the clean file's rate; stereo is averaged to mono. "
            "The metric packages come with `pip install fuse-hf[metrics]`; a missing one is skipped "
            "with a warning."
        ),
        epilog="example: fuse-hf evaluate --clean data/clean --enhanced out --noisy data/noisy --csv scores.csv --plot box.png",
    )
    parser.add_argument("--clean", required=True, metavar="DIR", help="folder of clean reference files (searched recursively)")
    parser.add_argument("--enhanced", required=True, metavar="DIR", help="folder of enhanced files to score")
    parser.add_argument("--noisy", metavar="DIR", default=None, help="folder of the noisy inputs: adds their scores and the improvement")
    parser.add_argument("--out", metavar="JSON", default=None, help="write per-file and mean scores to this JSON file")
    parser.add_argument("--csv", metavar="CSV", default=None, help="write per-file scores to this CSV file")
    parser.add_argument("--plot", metavar="PNG", default=None, help="write a box plot of the per-file scores to this PNG file")
    parser.add_argument(
        "--metrics",
        default=",".join(M.METRICS),
        help=f"comma-separated subset of: {', '.join(M.METRICS)} (default: all; dnsmos is the slowest, about 0.5-1 s per file)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``fuse-hf evaluate``; returns the exit code (1 with a one-line error on bad input)."""
    try:
        report = evaluate_folders(args.clean, args.enhanced, args.noisy, metrics=args.metrics, progress=not args.no_progress)
    except (ValueError, ImportError) as err:
        print(f"fuse-hf evaluate: error: {err}", file=sys.stderr)
        return 1
    print(format_table(report))
    try:
        if args.out:
            write_json(report, args.out)
            print(f"wrote {args.out}")
        if args.csv:
            write_csv(report, args.csv)
            print(f"wrote {args.csv}")
        if args.plot:
            plot_boxes(report, args.plot)
            print(f"wrote {args.plot}")
    except OSError as err:
        print(f"fuse-hf evaluate: error: cannot write output: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Standalone entry (``python -m fuse_hf.evaluate``), equal to ``fuse-hf evaluate``."""
    parser = argparse.ArgumentParser(prog="fuse-hf")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evaluate", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
