"""Finding pipelines: the bundled default model, local folders and Hub repo ids."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

DEFAULT_MODEL_NAME = "fuse-small"
_PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_model_path() -> Optional[Path]:
    """The bundled `fuse-small` pipeline: inside an installed wheel (`fuse_hf/_bundled/`) or, in a source
    checkout, the repository's `pipelines/` folder. `None` when neither holds a complete pipeline."""
    for candidate in (
        _PACKAGE_DIR / "_bundled" / DEFAULT_MODEL_NAME,
        _PACKAGE_DIR.parent / "pipelines" / DEFAULT_MODEL_NAME,
    ):
        if (candidate / "model_index.json").is_file():
            return candidate
    return None


def check_pipeline_folder(folder: str | os.PathLike) -> Path:
    """Checks that a `save_pretrained` folder has every component's config and safetensors weights.

    Raises:
        ValueError: naming the first missing file.
    """
    folder = Path(folder)
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ValueError(f"{folder}: missing model_index.json; not a pipeline folder saved by save_pretrained.")
    try:
        index = json.loads(index_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{index_file}: not valid JSON ({err.msg}).") from None
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        component = folder / name
        if name == "scheduler":
            required = [component / "scheduler_config.json"]
        else:
            required = [component / "config.json"]
        for path in required:
            if not path.is_file():
                raise ValueError(f"{folder}: missing {path.relative_to(folder)}.")
        if name != "scheduler" and not any(component.glob("*.safetensors")):
            raise ValueError(
                f"{folder}: missing weights {name}/diffusion_pytorch_model.safetensors (only safetensors are loaded)."
            )
    return folder


def resolve_pipeline_folder(
    name_or_path: str | os.PathLike,
    revision: Optional[str] = None,
    cache_dir: Optional[str] = None,
    token: Optional[str] = None,
    local_files_only: Optional[bool] = None,
) -> Path:
    """A local folder as is, or a Hub repo id downloaded (or found in the cache when offline) as a folder.

    diffusers cannot resolve custom component classes for a repo id, so the snapshot is fetched first and
    loaded as a folder.
    """
    path = Path(os.fspath(name_or_path)).expanduser()
    if path.is_dir():
        return check_pipeline_folder(path)
    name = os.fspath(name_or_path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ValueError(f"{name}: no such pipeline folder.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            name,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=bool(local_files_only),
            allow_patterns=["*.json", "*.safetensors", "*.py", "*.md"],
        )
    except LocalEntryNotFoundError:
        raise ValueError(
            f"{name}: not a local folder and not in the Hugging Face cache (offline or local_files_only)."
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{name}: not a local folder, and the Hub download failed ({first}).") from None
    return check_pipeline_folder(folder)


def push_folder_to_hub(folder: str | os.PathLike, repo_id: str, token: Optional[str] = None, private: bool = False,
                       commit_message: str = "Upload FUSE pipeline") -> str:
    """Creates `repo_id` if needed and uploads a pipeline folder (weights, configs, model card); returns the URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=os.fspath(folder), commit_message=commit_message)
    return str(getattr(info, "commit_url", info))
