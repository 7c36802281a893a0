"""Finding and sharing pipelines: the bundled default model, local folders, Hub repo ids, and pushing to the Hub.

A pushed repo holds the `save_pretrained` folder plus Hub remote code (see `fuse_hf.remote_code`), so its
`model_index.json` names the uploaded modules. Loading it with `fuse_hf` installed never runs that code:
:func:`resolve_pipeline_folder` hands diffusers a *native view* of the folder, whose `model_index.json` names the
installed `fuse_hf` classes and whose other files link to the originals.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .audio import first_line

DEFAULT_MODEL_NAME = "fuse-small"
_PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_model_path() -> Path | None:
    """The bundled `fuse-small` pipeline: inside an installed wheel (`fuse_hf/_bundled/`) or, in a source
    checkout, the repository's `pipelines/` folder. `None` when neither holds a complete pipeline."""
    for candidate in (
        _PACKAGE_DIR / "_bundled" / DEFAULT_MODEL_NAME,
        _PACKAGE_DIR.parent / "pipelines" / DEFAULT_MODEL_NAME,
    ):
        if (candidate / "model_index.json").is_file():
            return candidate
    return None


class RandomWeightsWarning(UserWarning):
    """`load_pipeline` found no trained model and returned a tiny pipeline with random weights."""


def load_pipeline(
    model: str | os.PathLike | None = None,
    device: str | None = None,
    *,
    random_fallback: bool = False,
    backend: str | None = None,
):
    """The one way from a model name to a pipeline ready to enhance (the CLI, the Space and the benchmarks use it).

    Args:
        model: a `save_pretrained` folder or a Hub repo id; None: the bundled `fuse-small` (:func:`bundled_model_path`).
        device: a torch device such as ``"cpu"``, ``"cuda"`` or ``"cuda:1"``; None: CUDA when available, else CPU.
        random_fallback: when `model` is None and no model is bundled, return a tiny pipeline with RANDOM weights
            (its output is not speech; a :class:`RandomWeightsWarning` says so) instead of raising. For development
            pages and timing runs only.
        backend: ``"torch"``, ``"onnx"`` (onnxruntime, on the CPU; a folder without graphs is exported once into
            a cache) or ``"auto"`` (onnx on the CPU where onnxruntime is installed, else torch; what the commands
            use); None: onnx for a folder written by `fuse-hf export-onnx`, else torch.

    Returns:
        The `FUSEPipeline` on `device`, progress bars off.

    Raises:
        ValueError: one line naming the problem: no model installed, an incomplete folder, weights that do not load,
            a failed Hub download, or a device that is not usable here.
    """
    import torch

    from .pipelines.pipeline_fuse import FUSEPipeline

    if model is None:
        model = bundled_model_path()
    if backend == "auto" and torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")).type != "cpu":
        backend = "torch"  # onnxruntime runs here on the CPU only
    if model is not None:
        pipe = FUSEPipeline.from_pretrained(model, backend=backend)
    elif backend == "onnx":
        raise ValueError("backend 'onnx' needs a folder exported by `fuse-hf export-onnx`: pass --model OUT_DIR.")
    elif random_fallback:
        from .factory import make_pipeline

        warnings.warn(
            "no trained model is installed; using a tiny pipeline with RANDOM weights. Its output is NOT enhanced "
            "speech.",
            RandomWeightsWarning,
            stacklevel=2,
        )
        pipe = make_pipeline(seed=0)
    else:
        raise ValueError(
            "no trained model is installed (no bundled fuse-small): pass a pipeline folder or a Hub repo id."
        )
    onnx = getattr(pipe.unet, "backend", "torch") == "onnx"
    device = device or ("cuda" if torch.cuda.is_available() and not onnx else "cpu")
    if onnx and torch.device(device).type != "cpu":
        raise ValueError(f"device {device}: the onnx back end runs on the CPU; pass --device cpu or --backend torch.")
    try:
        pipe.to(device)
    except (RuntimeError, AssertionError) as err:
        raise ValueError(f"device {device}: not usable here ({first_line(err)}).") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


_CONFIG_FILES = {"scheduler": "scheduler_config.json", "feature_extractor": "preprocessor_config.json"}


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
        # Schedulers and feature extractors are a config file alone; models are a config and safetensors weights.
        config_file = _CONFIG_FILES.get(name, "config.json")
        if not (component / config_file).is_file():
            raise ValueError(f"{folder}: missing {name}/{config_file}.")
        if config_file == "config.json" and not any(component.glob("*.safetensors")):
            # transformers configs name a model_type, diffusers ones a _class_name.
            is_transformers = "model_type" in json.loads((component / config_file).read_text())
            weights = "model" if is_transformers else "diffusion_pytorch_model"
            raise ValueError(f"{folder}: missing weights {name}/{weights}.safetensors (only safetensors are loaded).")
    return folder


def resolve_pipeline_folder(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | None = None,
    token: str | None = None,
    local_files_only: bool | None = None,
) -> Path:
    """A local folder as is, or a Hub repo id downloaded (or found in the cache when offline) as a folder.

    diffusers cannot resolve custom component classes for a repo id, so the snapshot is fetched first and
    loaded as a folder. A folder in the remote-code layout (anything pushed by :func:`push_pipeline_folder`) comes
    back as its native view (:func:`native_pipeline_folder`), so that the installed classes load it.
    """
    path = Path(os.fspath(name_or_path)).expanduser()
    if path.is_dir():
        return native_pipeline_folder(check_pipeline_folder(path))
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
        raise ValueError(f"{name}: not a local folder, and the Hub download failed ({first_line(err)}).") from None
    return native_pipeline_folder(check_pipeline_folder(folder))


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload FUSE pipeline",
) -> str:
    """Creates `repo_id` if needed and uploads a pipeline folder (weights, configs, model card); returns the URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    info = api.upload_folder(repo_id=repo_id, folder_path=os.fspath(folder), commit_message=commit_message)
    return str(getattr(info, "commit_url", info))


# --------------------------------------------------------------------------------------- native views


def _views_root() -> Path:
    """Where native views live: ``$FUSE_HF_CACHE/native`` or ``$HF_HOME/fuse_hf/native``."""
    if os.environ.get("FUSE_HF_CACHE"):
        return Path(os.environ["FUSE_HF_CACHE"]).expanduser() / "native"
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "fuse_hf" / "native"


def _link(source: Path, target: Path) -> None:
    """A symlink where the system allows one (no copy of the weights), else a hard link, else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for make in (os.symlink, os.link, shutil.copy2):
        try:
            make(os.path.abspath(source), target)
            return
        except OSError:
            continue
    raise ValueError(f"{target}: cannot link or copy {source} here.")


def _data_files(folder: Path) -> Iterable[Path]:
    """Files of a pipeline folder other than Python code, `model_index.json` and hidden files (`.cache`, ...)."""
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.suffix == ".py":
            continue
        if path.is_file() and relative.as_posix() != "model_index.json":
            yield path


def native_pipeline_folder(folder: str | os.PathLike) -> Path:
    """`folder` itself when its `model_index.json` names `fuse_hf` classes; for the remote-code layout, a view of
    it whose `model_index.json` names them instead, with every other data file linked (never the `.py` files).

    diffusers runs a folder's `pipeline_fuse.py` and component modules as soon as `model_index.json` names them,
    and only with `trust_remote_code=True`; the view makes `FUSEPipeline.from_pretrained` load the installed
    package's classes, offline too. Views are keyed by the folder's path and index, and rebuilt when missing.
    """
    from .remote_code import is_remote_code_index, native_index

    folder = Path(folder)
    raw = (folder / "model_index.json").read_bytes()
    index = json.loads(raw)
    if not is_remote_code_index(index):
        return folder
    native = json.dumps(native_index(index), indent=2, sort_keys=True) + "\n"
    key = hashlib.sha256(os.path.realpath(folder).encode() + b"\0" + raw).hexdigest()[:24]
    view = _views_root() / key
    files = list(_data_files(folder))
    if _view_is_current(view, folder, files, native):
        return view
    staging = view.parent / f".{key}.{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        (staging / "model_index.json").write_text(native)
        for path in files:
            _link(path, staging / path.relative_to(folder))
        if view.exists():
            shutil.rmtree(view, ignore_errors=True)
        os.replace(staging, view)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not _view_is_current(view, folder, files, native):  # lost a race to another process: use its view
            raise
    return view


def _view_is_current(view: Path, folder: Path, files: Iterable[Path], native: str) -> bool:
    index = view / "model_index.json"
    if not index.is_file() or index.read_text() != native:
        return False
    return all((view / path.relative_to(folder)).is_file() for path in files)


# ------------------------------------------------------------------------------------------- pushing


def stage_pipeline_folder(
    source: str | os.PathLike,
    target: str | os.PathLike,
    repo_id: str,
    metrics: dict[str, float] | None = None,
    remote_code: bool = True,
    **card_kwargs: Any,
) -> Path:
    """Lays out what gets uploaded for `repo_id` in `target`: the pipeline's data files (linked), Hub remote code
    and a model card rendered for `repo_id`.

    The card keeps what a card already in `source` records (its measured results, datasets, license) unless
    `metrics` or `card_kwargs` say otherwise. `source` may itself be a pushed (remote-code) folder.

    Raises:
        ValueError: an incomplete pipeline folder, or remote code that would import more than torch, numpy,
            diffusers and transformers.
    """
    from .model_card import card_settings, render_model_card
    from .remote_code import check_remote_code, export_remote_code, native_index

    source, target = check_pipeline_folder(source), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for path in _data_files(source):
        if path.relative_to(source).as_posix() != "README.md":
            _link(path, target / path.relative_to(source))
    native = native_index(json.loads((source / "model_index.json").read_text()))
    (target / "model_index.json").write_text(json.dumps(native, indent=2, sort_keys=True) + "\n")
    if remote_code:
        export_remote_code(target)
        check_remote_code(target)
    settings = card_settings(source / "README.md") if (source / "README.md").is_file() else {}
    if metrics is not None:
        settings["metrics"] = metrics
    settings.update(card_kwargs)
    card = render_model_card(target, repo_id=repo_id, **settings)
    card.save(str(target / "README.md"))
    return target


def _hub_error(repo_id: str, err: Exception) -> ValueError:
    status = getattr(getattr(err, "response", None), "status_code", None)
    hint = (
        " Log in with `hf auth login`, set HF_TOKEN or pass a token with write access." if status in (401, 403) else ""
    )
    return ValueError(f"{repo_id}: pushing to the Hub failed ({first_line(err)}).{hint}")


def push_pipeline_folder(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    metrics: dict[str, float] | None = None,
    remote_code: bool = True,
    create_pr: bool = False,
    **card_kwargs: Any,
) -> str:
    """Uploads a pipeline folder to `repo_id` (created if needed) as one commit: the weights and configs, Hub
    remote code and a model card rendered for the repo. Files of an earlier push that the folder no longer has
    (weights, configs, code) are deleted in the same commit. Returns the commit URL.

    Raises:
        ValueError: an incomplete folder, or the Hub refused (with a hint when the token is missing or read-only).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HfHubHTTPError

    folder = check_pipeline_folder(folder)
    api = HfApi(token=token)
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    except HfHubHTTPError as err:
        raise _hub_error(repo_id, err) from None
    with tempfile.TemporaryDirectory(prefix="fuse-hf-push-") as staging:
        stage_pipeline_folder(folder, staging, repo_id, metrics=metrics, remote_code=remote_code, **card_kwargs)
        try:
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=staging,
                create_pr=create_pr,
                commit_message=commit_message or "Upload FUSE pipeline",
                delete_patterns=["*.safetensors", "*.json", "*.py", "*.bin"],
            )
        except HfHubHTTPError as err:
            raise _hub_error(repo_id, err) from None
    return str(getattr(info, "pr_url", None) or getattr(info, "commit_url", info))


def push_pipeline_to_hub(
    pipeline,
    repo_id: str,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    create_pr: bool = False,
    metrics: dict[str, float] | None = None,
    safe_serialization: bool = True,
    variant: str | None = None,
    **card_kwargs: Any,
) -> str:
    """`FUSEPipeline.push_to_hub`: `save_pretrained` into a temporary folder, then :func:`push_pipeline_folder`.

    Unlike `DiffusionPipeline.push_to_hub` (which writes an empty card and no code), the repo gets a model card with
    `pipeline_tag: audio-to-audio` and the `metrics`, and the remote code that `trust_remote_code=True` loads.
    """
    if not safe_serialization:
        raise ValueError("safe_serialization=False: fuse-hf only writes and loads safetensors weights.")
    with tempfile.TemporaryDirectory(prefix="fuse-hf-save-") as folder:
        pipeline.save_pretrained(folder, safe_serialization=True, variant=variant)
        return push_pipeline_folder(
            folder,
            repo_id,
            token=token,
            private=private,
            commit_message=commit_message,
            metrics=metrics,
            create_pr=create_pr,
            **card_kwargs,
        )
