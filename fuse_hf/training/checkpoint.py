"""Atomic, rotating training checkpoints on top of `accelerator.save_state`.

A checkpoint is written to a hidden temporary folder and renamed into place only when complete, so a run killed
mid-write never leaves a `checkpoint-N` that `--resume_from_checkpoint latest` would pick.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

CHECKPOINT_DIR = "checkpoints"
_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under `output_dir/checkpoints`, oldest first."""
    folder = Path(output_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _PATTERN.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(output_dir: str | os.PathLike, which: str | None) -> Path | None:
    """`latest` -> the newest complete checkpoint (None if there is none yet); a path -> that checkpoint."""
    if not which:
        return None
    if which == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(which)
    if not (path / STATE_FILE).is_file():
        raise ValueError(f"--resume_from_checkpoint {which}: not a complete checkpoint folder (no {STATE_FILE}).")
    return path


def save_checkpoint(
    accelerator, output_dir: str | os.PathLike, step: int, state: dict[str, Any], total_limit: int | None = None
) -> Path:
    """Saves the accelerator state plus `state` (JSON) as `checkpoint-<step>`, atomically; keeps the last
    `total_limit` checkpoints. Must be called on every process."""
    folder = Path(output_dir) / CHECKPOINT_DIR
    final = folder / f"checkpoint-{step}"
    tmp = folder / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps({**state, "global_step": step}, indent=2))
        _fsync_tree(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if total_limit is not None and total_limit > 0:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((Path(checkpoint) / STATE_FILE).read_text())


def _fsync_tree(folder: Path) -> None:
    """Flushes every file so that the rename publishes data that is on disk, not only in the page cache."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
