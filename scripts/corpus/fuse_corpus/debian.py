"""Debian packages in, cached: `apt-get download`, extraction of the needed members only, versions and sha256.

Layout under the cache folder (default `OUT/.cache`):

    debs/<package>_<version>_<arch>.deb        downloaded once, reused by every later build
    debs/<deb>.sha256                          the .deb's sha256 (computed once)
    x/<package>/                               extracted members; `x/<package>/.from` names the .deb they came from

An extraction goes to `x/<package>.tmp` and is renamed when complete, so an interrupted run redoes only the
package it was extracting. Reserved packages are refused before anything is downloaded (`sources.check_allowed`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import sources

DOC_MEMBERS = ("./usr/share/doc/*",)


@dataclass(frozen=True)
class Deb:
    """A downloaded package: its file, version and sha256."""

    package: str
    path: Path
    version: str
    sha256: str

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def _apt_options() -> list[str]:
    # As root, apt drops privileges to _apt for downloads and warns when _apt cannot write to the folder.
    return ["-q", "-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else ["-q"]


def _cached_deb(folder: Path, package: str) -> Path | None:
    found = sorted(folder.glob(f"{package}_*.deb"))
    found = [p for p in found if p.name.split("_", 1)[0] == package]
    return found[-1] if found else None


def _valid_deb(path: Path) -> bool:
    return subprocess.run(["dpkg-deb", "--info", str(path)], capture_output=True).returncode == 0


def _download(folder: Path, package: str) -> None:
    tmp = folder / f".download-{package}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        result = subprocess.run(["apt-get", *_apt_options(), "download", package], cwd=tmp, capture_output=True)
        if result.returncode != 0:  # a stale package list: update once and retry
            subprocess.run(["apt-get", "-q", "update"], capture_output=True)
            result = subprocess.run(["apt-get", *_apt_options(), "download", package], cwd=tmp, capture_output=True)
        if result.returncode != 0:
            reason = result.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"apt-get download {package} failed: {reason[-1] if reason else 'no message'}")
        for deb in tmp.glob("*.deb"):
            os.replace(deb, folder / deb.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_of(path: Path) -> str:
    """sha256 of a file, cached next to it in `<file>.sha256` (keyed by size and mtime)."""
    stat = path.stat()
    stamp = f"{stat.st_size}:{int(stat.st_mtime)}"
    memo = path.with_name(path.name + ".sha256")
    if memo.is_file():
        cached_stamp, _, digest = memo.read_text().strip().partition(" ")
        if cached_stamp == stamp and digest:
            return digest
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    memo.write_text(f"{stamp} {hasher.hexdigest()}\n")
    return hasher.hexdigest()


def fetch(package: str, cache: Path) -> Deb:
    """The cached .deb of `package`, downloaded with `apt-get download` when missing or broken."""
    sources.check_allowed(package)
    folder = cache / "debs"
    folder.mkdir(parents=True, exist_ok=True)
    path = _cached_deb(folder, package)
    if path is None or not _valid_deb(path):
        if path is not None:
            path.unlink()
        _download(folder, package)
        path = _cached_deb(folder, package)
        if path is None:
            raise RuntimeError(f"apt-get download {package} left no .deb in {folder}.")
    version = subprocess.run(
        ["dpkg-deb", "-f", str(path), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Deb(package=package, path=path, version=version, sha256=sha256_of(path))


def unzip_members(archive: Path, patterns: tuple[str, ...], dest: Path) -> int:
    """Unpacks the members of a zip whose names match any of the fnmatch `patterns` into `dest` -> their count."""
    count = 0
    with zipfile.ZipFile(archive) as handle:
        for info in handle.infolist():
            name = info.filename
            if info.is_dir() or ".." in Path(name).parts or not any(fnmatch.fnmatchcase(name, p) for p in patterns):
                continue
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with handle.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            count += 1
    return count


def extract(deb: Deb, members: tuple[str, ...], cache: Path, inner: sources.Inner | None = None) -> Path:
    """Extracts the members (tar wildcards such as ``./usr/share/x/*``) and the package's docs -> the tree's root.

    With `inner`, the members of that zip matching its patterns are unpacked to `root/inner.dest` and the zip is
    deleted (0ad-data's public.zip is 3.3 GB; its audio is 0.2 GB). Skipped when `x/<package>/.from` already
    names this .deb, these members and this inner spec.
    """
    root = cache / "x" / deb.package
    stamp = f"{deb.path.name}\n" + "\n".join(members) + f"\n{inner}\n"
    marker = root / ".from"
    if marker.is_file() and marker.read_text() == stamp:
        return root
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    tmp.mkdir(parents=True)
    unpack = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb.path)], stdout=subprocess.PIPE)
    untar = subprocess.run(
        ["tar", "-x", "-C", str(tmp), "--wildcards", *DOC_MEMBERS, *members], stdin=unpack.stdout, capture_output=True
    )
    unpack.stdout.close()
    if unpack.wait() != 0 or untar.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = untar.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"extracting {deb.path.name} failed: {reason[-1] if reason else 'dpkg-deb failed'}")
    if inner is not None:
        archive = tmp / inner.path
        if unzip_members(archive, inner.patterns, tmp / inner.dest) == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"{inner.path} in {deb.path.name} holds no member matching {inner.patterns}.")
        archive.unlink()
    (tmp / ".from").write_text(stamp)
    os.replace(tmp, root)
    return root


def copyright_file(root: Path, package: str) -> Path | None:
    """`usr/share/doc/<package>/copyright` in an extracted tree (it may be a link to another package's docs)."""
    path = root / "usr/share/doc" / package / "copyright"
    return path if path.is_file() else None
