"""Licences of the corpus files: per file from the package's machine-readable (DEP-5) copyright file where it
names the file, else the package's licence of the source table; LICENSES.md and licenses/<package>.copyright.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

# Stanzas that say nothing about one file in particular: the package default (checked by hand) wins over them.
GENERIC_PATTERNS = {"*", "debian/*"}


def dep5_stanzas(text: str) -> list[tuple[tuple[str, ...], str]]:
    """`[(file patterns, licence name)]` of a DEP-5 copyright file, in order; [] for a free-form file."""
    if not text.lstrip().startswith("Format:"):
        return []
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t]+.*)*)", paragraph, re.M)
        licence = re.search(r"^License:[ \t]*(.*)$", paragraph, re.M)
        if files and licence:
            out.append((tuple(files.group(1).split()), licence.group(1).strip()))
    return out


def match_score(pattern: str, path: str) -> int:
    """How specifically a DEP-5 pattern (relative to the upstream source) names an installed path: 0 = not at all.

    Packages install files elsewhere than the source tree has them (`share/hedgewars/Data/Sounds/*` ends up in
    `usr/share/games/hedgewars/Data/Sounds/`, `etc/samples/x.flac` in `usr/share/sonic-pi/samples/`), so the
    pattern matches when it, or a tail of it of at least two components (`Data/Sounds/*`, `samples/x.flac`),
    matches the end of the installed path; a one-component pattern matches the file name. The score is the number
    of components of the longest matching tail, a final bare `*` not counted.
    """
    parts = pattern.split("/")
    name = path.rsplit("/", 1)[-1]
    if len(parts) == 1:
        return int(pattern != "*" and fnmatch.fnmatchcase(name, pattern))
    for start in range(len(parts) - 1):
        tail = "/".join(parts[start:])
        if fnmatch.fnmatchcase(path, tail) or fnmatch.fnmatchcase(path, f"*/{tail}"):
            return len(parts) - start - (parts[-1] == "*")
    return 0


def file_licence(stanzas: Sequence[tuple[tuple[str, ...], str]], path: str, default: str) -> str:
    """The licence of the stanza that names `path` most specifically (the later one on a tie), else `default`.

    Stanzas that only match as `*` or `debian/*` leave the package default of the source table (checked by hand).
    """
    best, found = 0, default
    for patterns, licence in stanzas:
        score = max((match_score(p, path) for p in patterns if p not in GENERIC_PATTERNS), default=0)
        if score and score >= best:
            best, found = score, licence
    return found


def write_licences(out: Path, packages: dict[str, dict], rows: Sequence[dict]) -> None:
    """LICENSES.md (per package: version, licences of the files used, files, minutes) and licenses/*.copyright.

    `packages` maps a package to `{"version", "licence", "copyright": Path | None}`.
    """
    folder = out / "licenses"
    folder.mkdir(parents=True, exist_ok=True)
    used: dict[str, dict] = defaultdict(lambda: {"files": 0, "seconds": 0.0, "licences": defaultdict(int)})
    for row in rows:
        entry = used[row["package"]]
        entry["files"] += 1
        entry["seconds"] += float(row["seconds"])
        entry["licences"][row["licence"]] += 1
    lines = [
        "# Licences of the audio in this corpus",
        "",
        "Every file comes from a Debian package; `manifest.csv` names each file's package, licence and original path",
        "(`origin`). The licence is the one the package's copyright file gives that file where it names it, else the",
        "package's. Full copyright files are in `licenses/`. The corpus is for training and evaluating models: do not",
        "redistribute it without honouring these licences (CC-BY needs attribution, -SA and GPL share-alike).",
        "",
        "| package | version | licence (files) | files | minutes |",
        "|---|---|---|---:|---:|",
    ]
    for name in sorted(used):
        entry, info = used[name], packages[name]
        licences = ", ".join(f"{lic} ({n})" for lic, n in sorted(entry["licences"].items()))
        lines.append(f"| {name} | {info['version']} | {licences} | {entry['files']} | {entry['seconds'] / 60:.1f} |")
        if info.get("copyright"):
            shutil.copyfile(info["copyright"], folder / f"{name}.copyright")
    lines += ["", "Packages whose files were all left out are not listed. Full texts: `licenses/<package>.copyright`."]
    (out / "LICENSES.md").write_text("\n".join(lines) + "\n")
