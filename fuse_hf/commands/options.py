"""Options that every enhancing subcommand (`enhance`, `stream`) shares: the model and how it samples."""

from __future__ import annotations

import argparse


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds --model, --steps, --guidance-scale, --noise-scale, --seed and --atten-lim-db (`__call__`'s arguments)."""
    parser.add_argument(
        "--model", default=None, help="pipeline folder or Hub repo id (default: the bundled fuse-small model)"
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
