"""Converts an official BEATs checkpoint (microsoft/unilm, ``beats/``) to a transformers folder.

The official ``.pt`` files (``BEATs_iter3.pt``, ``BEATs_iter3_plus_AS2M.pt``, ...) are published on the BEATs page
of microsoft/unilm (https://github.com/microsoft/unilm/tree/master/beats), outside the Hugging Face Hub. Each
holds ``{'cfg': dict, 'model': state_dict}``. The state-dict keys of :class:`~fuse_hf.models.beats.BEATsModel`
are the official ones, so conversion is a check of every key and shape, a strict load, and ``save_pretrained``
(``config.json``, ``model.safetensors`` in the checkpoint's own precision, and the feature extractor's
``preprocessor_config.json``)::

    fuse-hf convert-beats BEATs_iter3.pt beats-iter3/
    >>> BEATsModel.from_pretrained("beats-iter3/")  # or AutoModel / AutoFeatureExtractor after importing fuse_hf.models

The file is read with ``torch.load(..., weights_only=True)``: tensors and plain containers only, no code runs.
A conditioner folder written by fuse-hf 0.1 in the diffusers layout (``config.json`` with ``_class_name`` and
``diffusion_pytorch_model.safetensors``, the same keys) converts the same way.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from .audio import first_line
from .models.beats import OFFICIAL_DEFAULTS, BEATsConfig, BEATsFeatureExtractor, BEATsModel

logger = logging.getLogger(__name__)

OFFICIAL_CHECKPOINTS_URL = "https://github.com/microsoft/unilm/tree/master/beats"


def load_official_checkpoint(checkpoint_path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Reads an official checkpoint safely.

    Returns:
        `(cfg, state_dict)`: the checkpoint's configuration dict and its ``'model'`` state dict.

    Raises:
        ValueError: the file is missing, does not load with ``weights_only=True``, or is not
            ``{'cfg': dict, 'model': dict of tensors}``.
    """
    path = os.fspath(checkpoint_path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file. Pass the path of an official BEATs .pt checkpoint.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        raise ValueError(
            f"{path}: not a PyTorch checkpoint that loads with weights_only=True ({first_line(error)}). Pass an "
            f"official BEATs checkpoint from {OFFICIAL_CHECKPOINTS_URL}."
        ) from None
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            f"{path}: holds a {type(checkpoint).__name__}, not the official {{'cfg': ..., 'model': ...}} dict."
        )
    for key in ("cfg", "model"):
        if key not in checkpoint:
            raise ValueError(
                f"{path}: no '{key}' entry (found {sorted(map(str, checkpoint))}); official BEATs checkpoints "
                "hold {'cfg': ..., 'model': ...}."
            )
    cfg, state_dict = checkpoint["cfg"], checkpoint["model"]
    if not isinstance(cfg, Mapping):
        raise ValueError(f"{path}: 'cfg' is a {type(cfg).__name__}, expected a dict of BEATsConfig fields.")
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{path}: 'model' is a {type(state_dict).__name__}, expected a state dict.")
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: 'model' entry '{key}' is a {type(value).__name__}, not a tensor.")
    return dict(cfg), dict(state_dict)


def config_from_official(cfg: Mapping) -> dict:
    """The `BEATsModel` config of an official 'cfg' dict: the official defaults updated with `cfg`.

    Fields that `BEATsConfig` does not define are ignored with a warning (the official code ignores them too).
    """
    unknown = sorted(set(cfg) - set(OFFICIAL_DEFAULTS))
    if unknown:
        logger.warning("Ignoring checkpoint config fields that BEATs does not use: %s", ", ".join(unknown))
    return {**OFFICIAL_DEFAULTS, **{key: cfg[key] for key in cfg if key in OFFICIAL_DEFAULTS}}


def check_state_dict(model: BEATsModel, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Checks that `state_dict` has exactly the model's keys and shapes.

    Raises:
        ValueError: naming the first missing key, shape mismatch, or unexpected key, in that order of checks.
    """
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state_dict:
            raise ValueError(f"checkpoint: missing key '{key}' for this configuration. Is 'cfg' the model's own?")
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise ValueError(
                f"checkpoint: '{key}' has shape {tuple(state_dict[key].shape)}, the configuration needs "
                f"{tuple(tensor.shape)}. Is 'cfg' the model's own?"
            )
    for key in state_dict:
        if key not in expected:
            raise ValueError(f"checkpoint: unexpected key '{key}' for this configuration. Is 'cfg' the model's own?")
    # The reference shares one relative-position table between all layers, so the copies must agree.
    first = "encoder.layers.0.self_attn.relative_attention_bias.weight"
    for key in state_dict:
        if not key.endswith("self_attn.relative_attention_bias.weight"):
            continue
        if not torch.equal(state_dict[key], state_dict[first]):
            raise ValueError(
                f"checkpoint: '{key}' differs from '{first}'; BEATs shares one relative position table between "
                "all layers, so the checkpoint is not an official one."
            )


def load_diffusers_folder(folder: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Reads a BEATs conditioner saved by fuse-hf 0.1 in the diffusers layout: `(cfg, state_dict)`.

    Raises:
        ValueError: the folder lacks ``config.json`` or ``diffusion_pytorch_model.safetensors``.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    config_file, weights_file = folder / "config.json", folder / "diffusion_pytorch_model.safetensors"
    for path in (config_file, weights_file):
        if not path.is_file():
            raise ValueError(
                f"{folder}: no {path.name}; pass an official BEATs .pt checkpoint or a conditioner folder of fuse-hf "
                "0.1 (config.json and diffusion_pytorch_model.safetensors)."
            )
    # Keys with a leading underscore are diffusers' bookkeeping (_class_name, _diffusers_version, ...).
    cfg = {key: value for key, value in json.loads(config_file.read_text()).items() if not key.startswith("_")}
    return cfg, load_file(str(weights_file))


def convert_beats_checkpoint(checkpoint_path: str | os.PathLike, output_dir: str | os.PathLike) -> BEATsModel:
    """Converts an official BEATs checkpoint (or a fuse-hf 0.1 conditioner folder) to a transformers folder.

    Writes ``config.json``, ``model.safetensors`` (the checkpoint's tensors in their own precision: fp16 stays
    fp16; the configuration's ``dtype`` stays float32, the precision the model computes in) and the
    ``preprocessor_config.json`` of [`BEATsFeatureExtractor`].

    Args:
        checkpoint_path: an official ``.pt`` file (``{'cfg': dict, 'model': state_dict}``), or a folder with
            ``config.json`` and ``diffusion_pytorch_model.safetensors``.
        output_dir: folder for ``save_pretrained``; created if needed.

    Returns:
        The converted model (float32), in eval mode.

    Raises:
        ValueError: unreadable file, wrong format, or a key/shape that does not match the configuration.
    """
    if Path(checkpoint_path).is_dir():
        cfg, state_dict = load_diffusers_folder(checkpoint_path)
    else:
        cfg, state_dict = load_official_checkpoint(checkpoint_path)
    model = BEATsModel(BEATsConfig(**config_from_official(cfg)))
    check_state_dict(model, state_dict)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    save_beats_folder(model, output_dir, state_dict)
    return model


def save_beats_folder(
    model: BEATsModel, output_dir: str | os.PathLike, state_dict: Mapping[str, torch.Tensor] | None = None
) -> Path:
    """`model.save_pretrained(output_dir)` plus the feature extractor; with `state_dict` (the model's own keys, as
    checked by :func:`check_state_dict`), the weights file holds those tensors, in their precision."""
    from safetensors.torch import save_file

    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    BEATsFeatureExtractor().save_pretrained(output_dir)
    if state_dict is not None and any(tensor.dtype != torch.float32 for tensor in state_dict.values()):
        tensors = {key: tensor.detach().contiguous() for key, tensor in state_dict.items()}
        save_file(tensors, str(output_dir / "model.safetensors"), metadata={"format": "pt"})
    return output_dir
