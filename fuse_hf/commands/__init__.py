"""The `fuse-hf` command line: enhance files, folders and live streams, evaluate results, convert BEATs, share models.

Each subcommand is a module of this package with `add_parser(subparsers)` and `run(args) -> exit code`; this file
wires them together. The modules import only argparse at the top, so that `fuse-hf --help` answers without
loading torch. Errors from bad input are printed as one line and give exit code 1.

```bash
fuse-hf enhance noisy/ -o enhanced/
python -m fuse_hf enhance noisy/ -o enhanced/   # the same, e.g. under `accelerate launch -m fuse_hf`
```
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["SUBCOMMANDS", "build_parser", "error", "main"]

# Modules of this package, in the order `fuse-hf --help` lists their subcommands.
SUBCOMMANDS = ("enhance", "stream", "evaluate", "convert_beats", "export_onnx", "push")


def error(message: str, command: str | None = None) -> int:
    """Prints `fuse-hf[ COMMAND]: error: MESSAGE` on stderr and returns the exit code 1."""
    prefix = "fuse-hf" if command is None else f"fuse-hf {command}"
    print(f"{prefix}: error: {message}", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    """The `fuse-hf` parser with every subcommand of :data:`SUBCOMMANDS` registered."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="fuse-hf",
        description="FUSE speech enhancement: latent diffusion guided by BEATs features (diffusers pipeline).",
    )
    parser.add_argument("--version", action="version", version=f"fuse-hf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `fuse-hf ARGV` (default: `sys.argv[1:]`) and returns its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ValueError as err:
        return error(str(err))
    except KeyboardInterrupt:
        return error("interrupted.")
