"""Options that every enhancing subcommand (`enhance`, `stream`) shares: the model and how it samples."""

from __future__ import annotations

import argparse


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds --model, --backend, --steps, --guidance-scale, --noise-scale, --seed, --atten-lim-db, --max-gain-db and
    --full-band/--no-full-band (`__call__`'s arguments)."""
    parser.add_argument(
        "--model", default=None, help="pipeline folder or Hub repo id (default: the bundled fuse-small model)"
    )
    parser.add_argument(
        "--backend",
        choices=["auto", "torch", "onnx"],
        default="auto",
        help="run the networks in torch, or in onnxruntime on the CPU (faster on CPUs without bf16; a model "
        "folder without ONNX graphs is exported once into ~/.cache/fuse-hf/onnx); auto: onnx on the CPU when "
        "onnxruntime is installed (pip install 'fuse-hf[onnx]'), else torch",
    )
    parser.add_argument("--steps", type=int, default=6, help="DDIM steps (num_inference_steps)")
    parser.add_argument(
        "--guidance-scale",
        type=float,
        default=1.0,
        help="1: BEATs guidance as trained; 0: without BEATs; >1: classifier-free guidance",
    )
    parser.add_argument(
        "--noise-scale",
        type=float,
        default=None,
        help="initial noise std (sampling temperature; default: the pipeline's, 0.25): 1 samples "
        "the model's distribution, lower stays closer to the input's words, 0 ignores --seed",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same output")
    parser.add_argument(
        "--atten-lim-db",
        type=float,
        default=None,
        help="remove at most this many dB of noise by mixing the input back (default: no limit)",
    )
    parser.add_argument(
        "--max-gain-db",
        type=gain_db,
        default=0.0,
        help="cap each time-frequency bin of the output at this gain over the input's (default 0: only remove; "
        "digital silence stays silent); 'none' for no cap",
    )
    parser.add_argument(
        "--full-band",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the band above 8 kHz of input above 16 kHz (44.1/48 kHz), under the model's gain: on by default "
        "for such input; --no-full-band gives it back resampled from 16 kHz",
    )


def gain_db(text: str) -> float | None:
    """`--max-gain-db` values: a number of dB, or "none" for no cap."""
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of dB or 'none', got {text!r}") from None
