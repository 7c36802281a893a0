#!/usr/bin/env python
"""Builds corpus v2: real speech and noise from Debian packages, 16 kHz mono PCM16, measured, split by whole units.

    .venv/bin/python scripts/corpus/build_corpus.py ~/.cache/fuse-corpus-v2            # build (or print summary)
    .venv/bin/python scripts/corpus/build_corpus.py ~/.cache/fuse-corpus-v2 --force    # rebuild from the caches

Needs Debian's apt-get and dpkg-deb (run as root, or where `apt-get download` works), ffmpeg for G.722 and GSM,
and the project's venv. Downloads (~3.5 GB of .debs), extractions and per-file results are cached under
OUT/.cache, so an interrupted build continues and a rebuild takes minutes. manifest.csv is written last: it marks a
complete build. See scripts/corpus/README.md for the layout, the measured contents and the licences.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuse_corpus import debian, licences, mixtures, process, quality, sources, splits  # noqa: E402

MANIFEST_COLUMNS = (
    "path",
    "kind",
    "split",
    "package",
    "licence",
    "language",
    "speaker",
    "unit",
    "seconds",
    "rms_dbfs",
    "peak",
    "clip_fraction",
    "noise_floor_dbfs",
    "snr_db",
    "hf4k_db",
    "hf7k_db",
    "cutoff_hz",
    "bandwidth",
    "noise_kind",
    "origin",
)
DROPPED_COLUMNS = (
    "origin",
    "package",
    "kind",
    "reason",
    "seconds",
    "rms_dbfs",
    "clip_fraction",
    "snr_db",
    "cutoff_hz",
    "duplicate_of",
)
# Near-duplicate noise recordings (re-encodes under another name): same length within 0.25 s and a 50 ms energy
# envelope correlated above 0.98.
NEAR_DUPLICATE_SECONDS = 0.25
NEAR_DUPLICATE_R = 0.98
OUTPUTS = (
    "speech",
    "speech_narrowband",
    "noise",
    "dev_stranger",
    "licenses",
    "LICENSES.md",
    "sources.json",
    "dropped.csv",
    "SUMMARY.md",
)


def log(message: str) -> None:
    print(f"[build_corpus] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- packages


def prepare_packages(table, cache: Path, only: set[str] | None) -> tuple[dict, list[sources.Source]]:
    """Downloads and extracts every package of the table -> (`{package: info}`, sources sorted by origin)."""
    sources.check_table(table)
    info, found = {}, []
    for package in table:
        if only and package.name not in only:
            continue
        started = time.time()
        try:
            deb = debian.fetch(package.name, cache)
            root = debian.extract(deb, package.members, cache, package.inner)
            listed = [s for lister in package.listers for s in lister(package, root)]
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as err:
            if package.priority == 0:
                raise
            log(f"WARNING: {package.name} left out: {str(err).splitlines()[0]}")
            continue
        copyright_path = debian.copyright_file(root, package.name)
        text = copyright_path.read_text(errors="replace") if copyright_path else ""
        info[package.name] = {
            "version": deb.version,
            "deb": deb.path.name,
            "sha256": deb.sha256,
            "size": deb.size,
            "licence": package.licence,
            "description": package.description,
            "copyright": copyright_path,
            "stanzas": licences.dep5_stanzas(text),
            "root": root,
        }
        found += listed
        log(f"{package.name} {deb.version}: {len(listed)} files ({time.time() - started:.0f} s)")
    names = Counter(s.name for s in found)
    clashes = sorted(n for n, c in names.items() if c > 1)
    if clashes:
        raise ValueError(f"two sources share an output name: {clashes[:5]}")
    return info, sorted(found, key=lambda s: s.origin)


def run_processing(found: list[sources.Source], cache: Path, jobs: int) -> dict[str, dict]:
    """Processes every source (cached per file) in a pool of `jobs` workers -> `{origin: record}`."""
    work = functools.partial(process.process, cache=cache)
    records = {}
    bar = tqdm(total=len(found), desc="files", unit="file", dynamic_ncols=True, mininterval=2.0)
    if jobs <= 1:
        for source in found:
            records[source.origin] = work(source)
            bar.update()
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for source, record in zip(found, pool.imap(work, found, chunksize=8)):
                records[source.origin] = record
                bar.update()
    bar.close()
    return records


# ----------------------------------------------------------------------------------------------- selection


def near_duplicate_noise(candidates: list[tuple[str, float, list[float]]]) -> dict[str, str]:
    """`{origin: origin it duplicates}` among `(origin, seconds, envelope)` noise recordings (first one kept)."""
    dropped: dict[str, str] = {}
    for a, (origin_a, seconds_a, env_a) in enumerate(candidates):
        if origin_a in dropped:
            continue
        for origin_b, seconds_b, env_b in candidates[a + 1 :]:
            if origin_b in dropped or abs(seconds_a - seconds_b) > NEAR_DUPLICATE_SECONDS:
                continue
            n = min(len(env_a), len(env_b))
            if n >= 10 and np.std(env_a[:n]) > 0 and np.std(env_b[:n]) > 0:
                if np.corrcoef(env_a[:n], env_b[:n])[0, 1] > NEAR_DUPLICATE_R:
                    dropped[origin_b] = origin_a
    return dropped


def select(found: list[sources.Source], records: dict[str, dict], info: dict) -> tuple[list[dict], list[dict]]:
    """Applies duplicates and quality thresholds -> (kept output rows without split/path, dropped rows)."""
    kept, dropped = [], []
    first_by_hash: dict[tuple[str, str], str] = {}
    noise_candidates = []

    def drop(source, reason, q=None, duplicate_of="", origin=None):
        dropped.append(
            {
                "origin": origin or source.origin,
                "package": source.package,
                "kind": source.kind,
                "reason": reason,
                "seconds": f"{q.seconds:.3f}" if q else "",
                "rms_dbfs": f"{q.rms_dbfs:.1f}" if q else "",
                "clip_fraction": f"{q.clip_fraction:.6f}" if q else "",
                "snr_db": f"{q.snr_db:.1f}" if q else "",
                "cutoff_hz": f"{q.cutoff_hz:.0f}" if q else "",
                "duplicate_of": duplicate_of,
            }
        )

    for source in found:
        record = records[source.origin]
        if record["error"]:
            log(f"WARNING {source.origin}: {record['error']}")
            drop(source, "decode-error")
            continue
        key = (source.kind, record["sha1"])
        if key in first_by_hash:
            drop(source, "duplicate", duplicate_of=first_by_hash[key])
            continue
        first_by_hash[key] = source.origin
        if source.kind == "noise" and record["outputs"] and record["outputs"][0]["envelope"]:
            noise_candidates.append((source.origin, record["seconds"], record["outputs"][0]["envelope"]))
        stanzas = info[source.package]["stanzas"]
        licence = licences.file_licence(stanzas, source.origin.split(":/", 1)[1], info[source.package]["licence"])
        for output in record["outputs"]:
            q = process.quality_of(output)
            origin = source.origin + (f"#seg{output['segment']}" if output["segment"] is not None else "")
            reason = quality.drop_reason(q, source.kind)
            if reason:
                drop(source, reason, q, origin=origin)
                continue
            kept.append({"source": source, "file": output["file"], "quality": q, "licence": licence, "origin": origin})
    near = near_duplicate_noise(sorted(noise_candidates))
    if near:
        by_origin = {s.origin: s for s in found}
        for origin, first in sorted(near.items()):
            log(f"near-duplicate noise: {origin} ~ {first}; dropped")
            drop(by_origin[origin], "near-duplicate", duplicate_of=first)
        kept = [row for row in kept if row["source"].origin not in near]
    return kept, dropped


def place(kept: list[dict]) -> list[dict]:
    """Assigns splits and output paths -> manifest rows (sorted by path)."""
    items = [
        splits.Item(
            package=r["source"].package,
            pool=r["source"].pool,
            unit=r["source"].unit,
            language=r["source"].language,
            speaker=r["source"].speaker,
            seconds=r["quality"].seconds,
        )
        for r in kept
    ]
    assignment = splits.assign_splits(items)
    splits.check_disjoint(items, assignment)
    rows = []
    for row, item in zip(kept, items):
        source, q = row["source"], row["quality"]
        split = assignment[item.unit_id]
        top = source.kind if source.kind == "noise" or q.bandwidth == "wideband" else "speech_narrowband"
        rows.append(
            {
                "path": f"{top}/{split}/{row['file']}",
                "kind": source.kind,
                "split": split,
                "package": source.package,
                "licence": row["licence"],
                "language": source.language,
                "speaker": source.speaker,
                "unit": f"{source.pool}:{source.unit}",
                **{k: v for k, v in q.as_row().items() if k in MANIFEST_COLUMNS},
                "noise_kind": source.noise_kind,
                "origin": row["origin"],
                "_cache": source.package + "/" + row["file"],
            }
        )
    paths = Counter(r["path"] for r in rows)
    clashes = [p for p, c in paths.items() if c > 1]
    if clashes:
        raise ValueError(f"two outputs share a path: {clashes[:5]}")
    return sorted(rows, key=lambda r: r["path"])


# ----------------------------------------------------------------------------------------------- writing


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_csv(path: Path, columns, rows) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def summary_markdown(rows: list[dict], dropped: list[dict], mixture_rows: list[dict]) -> str:
    """The tables of SUMMARY.md (and of the README): minutes by folder, package, language, noise kind; drops."""

    def minutes(selected):
        return sum(float(r["seconds"]) for r in selected) / 60

    out = ["# Corpus v2 contents (generated by build_corpus.py)", ""]
    out += ["## Folders", "", "| folder | files | minutes |", "|---|---:|---:|"]
    folders = defaultdict(list)
    for r in rows:
        folders[r["path"].rsplit("/", 1)[0]].append(r)
    for folder in sorted(folders):
        out.append(f"| {folder} | {len(folders[folder])} | {minutes(folders[folder]):.1f} |")
    out.append(f"| **total** | {len(rows)} | {minutes(rows):.1f} |")

    def table(title, key, kind):
        groups = defaultdict(lambda: defaultdict(list))
        for r in rows:
            if r["kind"] == kind:
                groups[key(r)][r["split"]].append(r)
        lines = [
            "",
            f"## {title} (minutes; files)",
            "",
            "| | train | valid | dev_stranger | total |",
            "|---|---:|---:|---:|---:|",
        ]
        for name in sorted(groups):
            cells = [
                f"{minutes(groups[name][s]):.1f} ({len(groups[name][s])})" if groups[name][s] else "-"
                for s in splits.SPLITS
            ]
            everything = [r for s in splits.SPLITS for r in groups[name][s]]
            lines.append(f"| {name} | {' | '.join(cells)} | {minutes(everything):.1f} ({len(everything)}) |")
        return lines

    out += table("Speech by package and bandwidth", lambda r: f"{r['package']} ({r['bandwidth']})", "speech")
    out += table("Speech by language", lambda r: r["language"], "speech")
    out += table("Noise by package", lambda r: r["package"], "noise")
    out += table("Noise by kind", lambda r: r["noise_kind"], "noise")
    speech = [r for r in rows if r["kind"] == "speech"]
    out += [
        "",
        "## Measured quality of the kept speech (medians)",
        "",
        "| package | files | wideband | narrowband | cutoff Hz | hf4k dB | hf7k dB | SNR dB | RMS dBFS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for package in sorted({r["package"] for r in speech}):
        sel = [r for r in speech if r["package"] == package]
        med = {
            k: float(np.median([float(r[k]) for r in sel]))
            for k in ("cutoff_hz", "hf4k_db", "hf7k_db", "snr_db", "rms_dbfs")
        }
        wide = sum(r["bandwidth"] == "wideband" for r in sel)
        out.append(
            f"| {package} | {len(sel)} | {wide} | {len(sel) - wide} | {med['cutoff_hz']:.0f} | "
            f"{med['hf4k_db']:.1f} | {med['hf7k_db']:.1f} | {med['snr_db']:.1f} | {med['rms_dbfs']:.1f} |"
        )
    reasons = sorted({d["reason"] for d in dropped})
    counts = defaultdict(Counter)
    for d in dropped:
        counts[d["package"]][d["reason"]] += 1
    out += [
        "",
        "## Dropped files (or noise segments) by reason",
        "",
        "| package | " + " | ".join(reasons) + " |",
        "|---|" + "---:|" * len(reasons),
    ]
    for package in sorted(counts):
        out.append(f"| {package} | " + " | ".join(str(counts[package][r] or "-") for r in reasons) + " |")
    totals = Counter(d["reason"] for d in dropped)
    out.append("| **total** | " + " | ".join(str(totals[r]) for r in reasons) + " |")
    if mixture_rows:
        out += ["", "## dev_stranger mixtures", "", "| snr_db | pairs | minutes |", "|---|---:|---:|"]
        for condition in mixtures.CONDITIONS:
            sel = [m for m in mixture_rows if m["snr_db"] == condition]
            out.append(f"| {condition} | {len(sel)} | {minutes(sel):.1f} |")
        for field in ("language", "package", "bandwidth", "noise_package", "noise_kind"):
            values = Counter(m[field] or "(clean)" for m in mixture_rows)
            out.append(f"\n{field}: " + ", ".join(f"{k} {v}" for k, v in sorted(values.items())))
    return "\n".join(out) + "\n"


def write_corpus(out: Path, cache: Path, info: dict, rows: list[dict], dropped: list[dict]) -> str:
    """Writes everything into OUT/.staging, then moves it into place; manifest.csv last. Returns the summary."""
    stage = out / ".staging"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for row in tqdm(rows, desc="layout", unit="file", dynamic_ncols=True, mininterval=2.0):
        link_or_copy(cache / "files" / row["_cache"], stage / row["path"])
    for top in ("speech", "speech_narrowband", "noise"):
        for split in splits.SPLITS:
            (stage / top / split).mkdir(parents=True, exist_ok=True)
    stranger_speech = [r for r in rows if r["split"] == "dev_stranger" and r["kind"] == "speech"]
    stranger_noise = [r for r in rows if r["split"] == "dev_stranger" and r["kind"] == "noise"]
    pairs = mixtures.plan(stranger_speech, stranger_noise)
    mixture_rows = mixtures.write(pairs, stage, stage / "dev_stranger" / "mixtures", quality.WIDEBAND_MIN_CUTOFF_HZ)
    write_csv(stage / "dev_stranger" / "mixtures.csv", mixtures.COLUMNS, mixture_rows)
    licences.write_licences(stage, info, rows)
    used = {r["package"] for r in rows}
    meta = {
        name: {k: v for k, v in entry.items() if k in ("version", "deb", "sha256", "size", "licence", "description")}
        | {"used": name in used}
        for name, entry in sorted(info.items())
    }
    (stage / "sources.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    write_csv(stage / "dropped.csv", DROPPED_COLUMNS, sorted(dropped, key=lambda d: (d["origin"], d["reason"])))
    text = summary_markdown(rows, dropped, mixture_rows)
    (stage / "SUMMARY.md").write_text(text)
    write_csv(stage / "manifest.csv", MANIFEST_COLUMNS, rows)
    # Move into place: the old manifest goes first, the new one comes last.
    (out / "manifest.csv").unlink(missing_ok=True)
    for name in OUTPUTS:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if (stage / name).exists():
            os.replace(stage / name, target)
    os.replace(stage / "manifest.csv", out / "manifest.csv")
    shutil.rmtree(stage)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="corpus folder (e.g. ~/.cache/fuse-corpus-v2)")
    parser.add_argument("--jobs", "-j", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--force", action="store_true", help="rebuild although OUT/manifest.csv exists")
    parser.add_argument("--cache", type=Path, default=None, help="download/extract/file cache (default OUT/.cache)")
    parser.add_argument(
        "--packages",
        nargs="+",
        default=None,
        help="build from these packages only (for trying the builder; the splits change)",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}.")
    for name in args.packages or ():
        if sources.is_reserved(name):
            parser.error(f"--packages: {name} is reserved for independent evaluation and never used.")
    unknown = sorted(set(args.packages or ()) - {p.name for p in sources.PACKAGES})
    if unknown:
        parser.error(f"--packages: {', '.join(unknown)} not in the source table (fuse_corpus/sources.py).")
    out = args.out.expanduser().resolve()
    cache = (args.cache or out / ".cache").expanduser().resolve()
    if (out / "manifest.csv").is_file() and not args.force:
        log(f"{out / 'manifest.csv'} exists; nothing to do (use --force to rebuild)")
        summary = out / "SUMMARY.md"
        print(summary.read_text() if summary.is_file() else "")
        return 0
    if shutil.which("ffmpeg") is None:
        parser.error("ffmpeg is needed for the G.722 and GSM prompts: apt-get install -y ffmpeg")
    for tool in ("apt-get", "dpkg-deb", "tar"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} not found: the corpus is built from Debian packages (Debian or Ubuntu needed).")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    info, found = prepare_packages(sources.PACKAGES, cache, set(args.packages) if args.packages else None)
    log(f"{len(found)} source files in {len(info)} packages; processing with {args.jobs} workers")
    records = run_processing(found, cache, args.jobs)
    kept, dropped = select(found, records, info)
    rows = place(kept)
    text = write_corpus(out, cache, info, rows, dropped)
    print(text)
    log(f"done in {time.time() - started:.0f} s: {len(rows)} files, {len(dropped)} dropped -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
