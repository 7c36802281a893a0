"""Converts an official BEATs checkpoint (microsoft/unilm, ``beats/``) to a diffusers folder.

The official ``.pt`` files (``BEATs_iter3.pt``, ``BEATs_iter3_plus_AS2M.pt``, ...) are published on the BEATs page
of microsoft/unilm (https://github.com/microsoft/unilm/tree/master/beats), outside the Hugging Face Hub. Each
holds ``{'cfg': dict, 'model': state_dict}``. The state-dict keys of :class:`~fuse_hf.models.beats.BEATsModel`
are the official ones, so conversion is a check of every key and shape, a strict load, and ``save_pretrained``::

    fuse-hf convert-beats BEATs_iter3.pt beats-iter3/
    >>> BEATsModel.from_pretrained("beats-iter3/")

The file is read with ``torch.load(..., weights_only=True)``: tensors and plain containers only, no code runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import sys
from typing import Dict, Mapping, Tuple

import torch

from .models.beats import OFFICIAL_DEFAULTS, BEATsModel

logger = logging.getLogger(__name__)

OFFICIAL_CHECKPOINTS_URL = "https://github.com/microsoft/unilm/tree/master/beats"


def load_official_checkpoint(checkpoint_path: str | os.PathLike) -> Tuple[dict, Dict[str, torch.Tensor]]:
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
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path}: not a PyTorch checkpoint that loads with weights_only=True ({reason}). Pass an official "
            f"BEATs checkpoint from {OFFICIAL_CHECKPOINTS_URL}."
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


def convert_beats_checkpoint(checkpoint_path: str | os.PathLike, output_dir: str | os.PathLike) -> BEATsModel:
    """Converts an official BEATs checkpoint and writes ``config.json`` + ``diffusion_pytorch_model.safetensors``.

    Args:
        checkpoint_path: an official ``.pt`` file (``{'cfg': dict, 'model': state_dict}``).
        output_dir: folder for ``save_pretrained``; created if needed.

    Returns:
        The converted model, in eval mode.

    Raises:
        ValueError: unreadable file, wrong format, or a key/shape that does not match the configuration.
    """
    cfg, state_dict = load_official_checkpoint(checkpoint_path)
    model = BEATsModel(**config_from_official(cfg))
    check_state_dict(model, state_dict)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    model.save_pretrained(os.fspath(output_dir))
    return model


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers ``convert-beats CHECKPOINT OUTPUT_DIR`` on the ``fuse-hf`` command line."""
    parser = subparsers.add_parser(
        "convert-beats",
        help="convert an official BEATs .pt checkpoint to a diffusers folder",
        description=(
            "Convert an official BEATs checkpoint (microsoft/unilm) to a folder that "
            "fuse_hf.models.beats.BEATsModel.from_pretrained() loads: config.json and "
            "diffusion_pytorch_model.safetensors. Every key and shape is checked; the file is read with "
            "torch.load(weights_only=True), so no code in it runs."
        ),
        epilog=(
            f"Official checkpoints: {OFFICIAL_CHECKPOINTS_URL} (e.g. BEATs_iter3.pt for features, "
            "BEATs_iter3_plus_AS2M.pt for AudioSet class scores).\n"
            "Example: fuse-hf convert-beats BEATs_iter3.pt checkpoints/beats-iter3"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="official BEATs .pt file ({'cfg', 'model'})")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="folder to write (created if missing)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """CLI handler: converts, prints one line, returns the exit code (1 on a bad checkpoint)."""
    try:
        model = convert_beats_checkpoint(args.checkpoint, args.output_dir)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    config = model.config
    head = f", fine-tuned head with {config.predictor_class} classes" if config.finetuned_model else ""
    print(
        f"Converted {args.checkpoint}: BEATs {config.encoder_layers} layers x {config.encoder_embed_dim} dims"
        f"{head} -> {args.output_dir}"
    )
    return 0
