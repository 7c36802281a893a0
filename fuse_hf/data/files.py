# Copyright 2026 The fuse-hf authors. Licensed under the Apache License, Version 2.0.
"""Which files a dataset reads: a folder or a list of audio files, and the corpus manifest that weights them."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..audio import list_audio_files

PathLike = str | os.PathLike


def check_folder(path: PathLike, what: str) -> Path:
    """`path` as a Path (``~`` expanded); ValueError naming `what` when it is not a folder."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ValueError(f"{what} `{path}`: folder not found. Pass an existing folder of audio files.")
    return path


def as_file_list(source: PathLike | Sequence[PathLike] | None, what: str) -> list[Path]:
    """A folder (listed recursively, non-audio files skipped with an `AudioDataWarning`), or a sequence of folders
    and/or files (each folder listed, in the order given) -> list of paths; None -> [].

    Raises:
        ValueError: a folder or some of the files do not exist.
    """
    if source is None:
        return []
    if isinstance(source, (str, os.PathLike)):
        return list_audio_files(source, warn_skipped=True)
    entries = [Path(p).expanduser() for p in source]
    missing = [str(p) for p in entries if not p.exists()]
    if missing:
        raise ValueError(f"{what}: {len(missing)} path(s) not found, e.g. {missing[:3]}. Check the paths.")
    return [f for p in entries for f in (list_audio_files(p, warn_skipped=True) if p.is_dir() else [p])]


def first_folder(source: PathLike | Sequence[PathLike]) -> Path:
    """The folder `source` names, or the first of a sequence (a file stands for its folder): where a corpus manifest
    is looked for."""
    first = Path(source if isinstance(source, (str, os.PathLike)) else next(iter(source))).expanduser()
    return first.parent if first.is_file() else first


def read_manifest(manifest: PathLike) -> dict[str, dict[str, str]]:
    """The corpus ``manifest.csv`` (``path,...,split,rms_dbfs,hf4k_db,...``) as ``{absolute path: row}``.

    Paths in the manifest are relative to its folder.
    """
    manifest = Path(manifest).expanduser()
    if not manifest.is_file():
        raise ValueError(f"Manifest `{manifest}`: file not found. Pass the corpus' manifest.csv.")
    root = os.path.abspath(manifest.parent)  # abspath, not resolve: keep symlinked folders as the user wrote them
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "path" not in rows[0]:
        raise ValueError(f"Manifest `{manifest}`: no `path` column (found {sorted(rows[0])}).")
    return {os.path.join(root, os.path.normpath(row["path"])): row for row in rows}


def find_manifest(folder: PathLike, max_up: int = 2) -> Path | None:
    """``manifest.csv`` in `folder` or up to `max_up` parents (``corpus/speech/train`` -> ``corpus``), else None."""
    folder = Path(os.path.abspath(Path(folder).expanduser()))
    for candidate in [folder, *folder.parents][: max_up + 1]:
        if (candidate / "manifest.csv").is_file():
            return candidate / "manifest.csv"
    return None


def wideband_weights(
    files: Sequence[PathLike], manifest: PathLike, factor: float = 4.0, min_hf4k_db: float = -30.0
) -> np.ndarray:
    """Sampling weights that favour wideband speech: `factor` for files whose ``hf4k_db`` > `min_hf4k_db`, else 1.

    ``hf4k_db`` is the energy above 4 kHz relative to the total (dB); band-limited audio sits below -40 dB. Files
    missing from the manifest get weight 1.

    Returns:
        float64 array (len(files),), normalised to sum to 1.
    """
    rows = read_manifest(manifest)
    weights = np.ones(len(files))
    for k, path in enumerate(files):
        row = rows.get(os.path.abspath(Path(path).expanduser()))
        if row is not None and row.get("hf4k_db") not in (None, "") and float(row["hf4k_db"]) > min_hf4k_db:
            weights[k] = factor
    return weights / weights.sum()


def manifest_cutoffs(files: Sequence[PathLike], manifest: PathLike) -> list[float | None]:
    """Measured bandwidth of each file in Hz from the manifest's ``cutoff_hz`` column (corpus v2), else None.

    Returns:
        one entry per file: the cutoff, or None where the file or the column is missing or empty.
    """
    rows = read_manifest(manifest)
    out: list[float | None] = []
    for f in files:
        value = rows.get(os.path.abspath(Path(f).expanduser()), {}).get("cutoff_hz")
        out.append(float(value) if value not in (None, "") else None)
    return out
