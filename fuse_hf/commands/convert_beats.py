"""`fuse-hf convert-beats CHECKPOINT OUTPUT_DIR`: an official BEATs `.pt` checkpoint (or a fuse-hf 0.1 conditioner
folder) to a transformers `from_pretrained` folder.

The conversion itself (safe loading, key and shape checks, saving) is `fuse_hf.convert_beats`.
"""

from __future__ import annotations

import argparse
import sys

# As in `fuse_hf.convert_beats` (not imported here: it loads torch, and `--help` must not).
OFFICIAL_CHECKPOINTS_URL = "https://github.com/microsoft/unilm/tree/master/beats"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers `convert-beats CHECKPOINT OUTPUT_DIR` on `subparsers` (from `ArgumentParser.add_subparsers`)."""
    parser = subparsers.add_parser(
        "convert-beats",
        help="convert an official BEATs .pt checkpoint to a transformers folder",
        description=(
            "Convert an official BEATs checkpoint (microsoft/unilm) to a folder that "
            "BEATsModel.from_pretrained() and, after importing fuse_hf.models, transformers' AutoModel and "
            "AutoFeatureExtractor load: config.json, model.safetensors (in the checkpoint's precision) and "
            "preprocessor_config.json. Every key and shape is checked; the file is read with "
            "torch.load(weights_only=True), so no code in it runs. A fuse-hf 0.1 conditioner folder (diffusers "
            "layout) converts the same way."
        ),
        epilog=(
            f"Official checkpoints: {OFFICIAL_CHECKPOINTS_URL} (e.g. BEATs_iter3.pt for features, "
            "BEATs_iter3_plus_AS2M.pt for AudioSet class scores).\n"
            "Example: fuse-hf convert-beats BEATs_iter3.pt checkpoints/beats-iter3"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="official BEATs .pt file ({'cfg', 'model'}) or a fuse-hf 0.1 conditioner folder",
    )
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="folder to write (created if missing)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Converts, prints one line, returns the exit code (1 on a bad checkpoint)."""
    from ..convert_beats import convert_beats_checkpoint

    try:
        model = convert_beats_checkpoint(args.checkpoint, args.output_dir)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    config = model.config
    head = f", fine-tuned head with {config.predictor_class} classes" if config.finetuned_model else ""
    print(
        f"Converted {args.checkpoint}: BEATs {config.encoder_layers} layers x {config.encoder_embed_dim} dims"
        f"{head} -> {args.output_dir}"
    )
    return 0
